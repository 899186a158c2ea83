# Set-up failures before the target's first byte are retried on a fresh
# session, replaying what stdin had sent; every failed session is deleted;
# after the first byte nothing is retried.

sessions() {	# created|deleted
	emu GET /_emu/sessions | $PY -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
first_upgrade_answered() {
	emu GET /_emu/requests | grep -q '"path": *"/webtunnelv2/'
}
size=100000
expected="$size $($PY "$TOP/tests/lib/tcp_target.py" - pattern $size | sha256sum | cut -d' ' -f1)"

# 503 with Retry-After from /api/tokens, once.
target_start send 1000
emu_faults '{"token_status": {"status": 503, "body": {"message": "busy"}, "headers": {"Retry-After": "1"}, "count": 1}}'
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 0 "status after a 503"
expect_eq "$(wc -c <"$T/out")" 1000 "bytes after a 503"
expect_eq "$(sessions created) $(sessions deleted)" "1 1" "sessions after a 503"
emu_reset

# The upgrade answered 502, once: the first session is deleted too.
emu_faults '{"ws_status": [502]}'
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 0 "status after an upgrade 502"
expect_eq "$(wc -c <"$T/out")" 1000 "bytes after an upgrade 502"
expect_eq "$(sessions created) $(sessions deleted)" "2 2" "sessions after a 502"
target_stop
emu_reset

# 101, then an HTTP error page; and 101, then silence.  stdin has spoken
# already: the next session gets all of it.
for mode in http400 silence; do
	target_start greet "$T/sink.$mode"
	emu_faults "{\"ws_after_101\": \"$mode\"}"
	(run_bs -o ConnectTimeout=2 vm1 "$TARGET_PORT" \
	    < <($PY "$TOP/tests/lib/tcp_target.py" - pattern $size; sleep 5)
	    echo $RC >"$T/rc") &
	client=$!
	wait_for 50 first_upgrade_answered || fail "no upgrade ($mode)"
	emu_faults '{"ws_after_101": null}'
	wait $client
	expect_eq "$(cat "$T/rc")" 0 "status after $mode"
	expect_eq "$(cat "$T/out")" HELLO "what the target said after $mode"
	wait_for 50 test -s "$T/sink.$mode"
	expect_eq "$(cat "$T/sink.$mode")" "$expected" "bytes replayed after $mode"
	expect_eq "$(sessions created) $(sessions deleted)" "2 2" \
	    "sessions after $mode"
	target_stop
	emu_reset
done

# Every attempt fails: the last error names what the Bastion did.
target_start send 1000
emu_faults '{"ws_after_101": "http400"}'
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 7 "status when every attempt fails"
expect_match "$T/err" 'answered the upgrade with 101, then sent an HTTP response instead of WebSocket frames \(attempt 3 of 3\)' \
    "message when every attempt fails"
expect_eq "$(wc -l <"$T/err")" 1 "one line when every attempt fails"
expect_eq "$(sessions created) $(sessions deleted)" "3 3" "sessions when every attempt fails"
emu_reset

# After the first byte: never again.
emu_faults '{"close_after_bytes": 500, "close_code": 1011, "close_reason": "backend gone"}'
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 1 "status when the stream breaks"
expect_match "$T/err" 'closed the tunnel with code 1011: backend gone' \
    "message when the stream breaks"
expect_eq "$(sessions created)" 1 "sessions when the stream breaks"
expect_no_sessions
target_stop
