# A target VM that is not running: without StartVm it is reported with
# the command that starts it, with StartVm yes it is started (ARM's 202
# and operation polling, or a 200 at once), with progress on stderr, and
# the bytes flow.  A running VM costs no power-state request at all.

VM1_ID=/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.Compute/virtualMachines/vm1

# Replaces vm1's emulated settings (which forgets its power state) and
# sets it to the state given.
vm1() {
	emu POST /_emu/config -H 'Content-Type: application/json' \
	    -d "{\"vms\": {\"$VM1_ID\": {\"ip\": \"127.0.0.1\"${2:+, $2}}},
	         \"asyncop_retry_after_s\": 1, \"start_delay_s\": 1}" \
	    >/dev/null
	emu POST /_emu/power -H 'Content-Type: application/json' \
	    -d "{\"vm\": \"$VM1_ID\", \"power\": \"$1\"}" >/dev/null
}

created() {
	emu GET /_emu/sessions | $PY -c 'import json,sys; print(json.load(sys.stdin)["created"])'
}

vm1_power() {
	emu GET /_emu/world | $PY -c 'import json,sys
w = json.load(sys.stdin)["vms"]
print([v["power"] for k, v in w.items() if k.lower() == sys.argv[1].lower()][0])' "$VM1_ID"
}

vm1_runs() { [ "$(vm1_power)" = running ]; }

# The power-state, start and operation requests since the last call.
last="0 0 0"
requests() {
	local now
	now="$(emu_counter arm_instance_view) $(emu_counter vm_start) $(emu_counter asyncop)"
	set -- $now $last
	last=$now
	echo "$(($1 - $4)) $(($2 - $5)) $(($3 - $6))"
}

target_start send 100
$PY "$TOP/tests/lib/tcp_target.py" - pattern 100 >"$T/expected"

# --- a running VM: no power-state request on the way ---
vm1 running
run_bs_held -o StartVm=yes vm1 "$TARGET_PORT"
expect_eq $RC 0 "status, running VM"
cmp -s "$T/out" "$T/expected" || fail "bytes from a running VM differ"
expect_empty "$T/err" "stderr, running VM"
expect_eq "$(requests)" "0 0 0" "instance view, start, operation requests for a running VM"

# --- stopped, StartVm no: one line naming the VM and how to start it ---
vm1 stopped
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 5 "status, stopped VM without StartVm"
expect_empty "$T/out" "stdout, stopped VM"
expect_match "$T/err" "^bastion-stdio: VM vm1 is stopped: start it with \`az vm start --ids $VM1_ID\` or set StartVm yes" \
    "message, stopped VM"
expect_eq "$(grep -c . "$T/err")" 1 "lines on stderr, stopped VM"
expect_eq "$(requests)" "1 0 0" "requests, stopped VM without StartVm"
expect_eq "$(vm1_power)" stopped "power after a refusal"
expect_no_sessions

# --- starting, StartVm no: try again later ---
vm1 starting
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 5 "status, starting VM without StartVm"
expect_match "$T/err" "VM vm1 is starting; try again in a moment" \
    "message, starting VM"
requests >/dev/null

# --- deallocated, StartVm yes: 202, Azure-AsyncOperation, then bytes ---
vm1 deallocated
t0=$(now_ms)
run_bs_held -o StartVm=yes vm1 "$TARGET_PORT"
expect_eq $RC 0 "status, deallocated VM started"
cmp -s "$T/out" "$T/expected" || fail "stdout after the start is not the target's 100 bytes"
expect_match "$T/err" '^bastion-stdio: starting VM vm1 \(deallocated\)\.\.\.' \
    "first progress line"
expect_match "$T/err" '^bastion-stdio: VM vm1 is running \([0-9]+ s\)' \
    "second progress line"
expect_eq "$(grep -c . "$T/err")" 2 "lines on stderr after a start"
# one read before, the start, one poll (Retry-After 1, start 1 s), one
# read after; two polls if the emulator was slow
read -r iv st ao <<<"$(requests)"
expect_eq "$iv $st" "2 1" "instance view and start requests"
[ "$ao" -ge 1 ] && [ "$ao" -le 2 ] || fail "operation polls: $ao"
expect_eq "$(vm1_power)" running "power after the start"
[ $(($(now_ms) - t0)) -lt 8000 ] || fail "the start took $(($(now_ms) - t0)) ms"
expect_no_sessions

# --- -q: the same start without a word ---
vm1 stopped
run_bs_held -q -o StartVm=yes vm1 "$TARGET_PORT"
expect_eq $RC 0 "status, quiet start"
expect_empty "$T/err" "stderr of a quiet start"
requests >/dev/null

# --- start answers 200: no operation to poll ---
vm1 deallocated '"start_status": 200'
run_bs_held -o StartVm=yes vm1 "$TARGET_PORT"
expect_eq $RC 0 "status, start answered 200"
cmp -s "$T/out" "$T/expected" || fail "bytes after a start answered 200"
expect_eq "$(requests)" "2 1 0" "requests, start answered 200"

# --- the start fails: ARM's reason, status 5, nothing on stdout ---
vm1 deallocated '"start_error": {"code": "AllocationFailed", "message": "no capacity left"}'
run_bs_held -o StartVm=yes vm1 "$TARGET_PORT"
expect_eq $RC 5 "status, failed start"
expect_empty "$T/out" "stdout, failed start"
expect_match "$T/err" '^bastion-stdio: cannot start VM vm1: the start failed: AllocationFailed: no capacity left' \
    "message, failed start"
expect_no_match "$T/err" 'is running' "failed start said running"
expect_eq "$(vm1_power)" deallocated "power after a failed start"
requests >/dev/null

# --- a start slower than StartTimeout: status 6 ---
vm1 stopped '"start_delay_s": 60'
t0=$(now_ms)
run_bs_held -o StartVm=yes -o StartTimeout=10 vm1 "$TARGET_PORT"
expect_eq $RC 6 "status, start beyond StartTimeout"
expect_match "$T/err" 'VM vm1 is not running after 10 s \(StartTimeout\)' \
    "message, start beyond StartTimeout"
[ $(($(now_ms) - t0)) -lt 14000 ] || fail "StartTimeout 10 took $(($(now_ms) - t0)) ms"
requests >/dev/null

# --- running but its port is closed: the Bastion's word, one read ---
vm1 running
port=$(free_port)
run_bs_held -o StartVm=yes vm1 "$port"
expect_eq $RC 1 "status, running VM with a closed port"
expect_match "$T/err" 'closed the tunnel with code 1011' \
    "message, running VM with a closed port"
expect_eq "$(requests)" "1 0 0" "requests, running VM with a closed port"
expect_no_sessions

# --- started, but the guest needs a moment: sessions until it answers ---
# port 22 leads nowhere until a second after the VM runs
emu POST /_emu/config -H 'Content-Type: application/json' \
    -d "{\"port_map\": {\"22\": $port}}" >/dev/null
vm1 stopped
before=$(created)
(
	wait_for 100 vm1_runs
	sleep 1
	emu POST /_emu/config -H 'Content-Type: application/json' \
	    -d "{\"port_map\": {\"22\": $TARGET_PORT}}" >/dev/null
) &
waker=$!
run_bs_held -o StartVm=yes vm1 22
wait $waker
expect_eq $RC 0 "status, VM that boots after its start"
cmp -s "$T/out" "$T/expected" || fail "bytes from a VM that boots after its start"
expect_eq "$(grep -c . "$T/err")" 2 "lines on stderr, VM that boots"
# The closed-port failure above made the next connection look vm1 up
# anew, so Resource Graph's "stopped" starts it before any session.
expect_eq $(($(created) - before)) 2 "sessions: not yet up, up"
expect_no_sessions
emu POST /_emu/config -H 'Content-Type: application/json' \
    -d '{"port_map": {}}' >/dev/null

target_stop
