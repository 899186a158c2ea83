# stdin ends first: every byte read from it reaches the target, also when
# the writer exits while bastion-stdio had stopped reading (libwebsockets
# 4.1.6 closes a paused pipe on POLLHUP with data still in it).

target_start sink "$T/sink"
run_bs vm1 "$TARGET_PORT" < <($PY "$TOP/tests/lib/tcp_target.py" - pattern 300000)
expect_eq $RC 0 "exit status"
wait_for 50 test -s "$T/sink" || fail "target saw no EOF"
expected="300000 $($PY "$TOP/tests/lib/tcp_target.py" - pattern 300000 | sha256sum | cut -d' ' -f1)"
expect_eq "$(cat "$T/sink")" "$expected" "bytes at the target"
rm -f "$T/sink"

# Stall the relay, fill the pipe until bastion-stdio stops reading it,
# and let the writer exit; only then let the relay go on.
emu_faults '{"stall": true}'
(run_bs vm1 "$TARGET_PORT" < <($PY "$TOP/tests/lib/tcp_target.py" - fill \
    "$T/written"); echo $RC >"$T/rc") &
client=$!
wait_for 300 test -s "$T/written" || fail "the writer never saw a full pipe"
emu_faults '{"stall": null}'
wait $client
expect_eq "$(cat "$T/rc")" 0 "exit status after a stall"
wait_for 100 test -s "$T/sink" || fail "target saw no EOF after a stall"
expect_eq "$(cat "$T/sink")" "$(cat "$T/written")" \
    "bytes at the target after a stall"
expect_no_sessions
target_stop
