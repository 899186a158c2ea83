# Pings: a Bastion that stops answering (a black hole: no FIN, no RST) is
# noticed within two PingIntervals; one that answers keeps an idle tunnel.

target_start send 100 hold
emu_faults '{"stall": true}'
t0=$(now_ms)
run_bs_held -o PingInterval=1 vm1 "$TARGET_PORT"
elapsed=$(($(now_ms) - t0))
expect_eq $RC 1 "status for a black hole"
expect_match "$T/err" 'no answer from Bastion localhost for [0-9]+ s \(PingInterval 1\)' \
    "black hole message"
[ "$elapsed" -lt 6000 ] || fail "a black hole took $elapsed ms to notice"
emu_faults '{"stall": null}'
expect_no_sessions

# Idle but alive: pings are answered, the tunnel stays until we end it.
mkfifo "$T/in"
sleep 30 >"$T/in" &
holder=$!
"$BIN" -F "$W/bastion.conf" -o PingInterval=1 vm1 "$TARGET_PORT" \
    <"$T/in" >"$T/out" 2>"$T/err" &
pid=$!
sleep 4
kill -0 $pid 2>/dev/null || fail "an idle tunnel ended"
kill -HUP $pid
wait $pid
expect_eq $? 0 "status of an idle tunnel ended by SIGHUP"
kill $holder
expect_eq "$(wc -c <"$T/out")" 100 "bytes of an idle tunnel"
expect_empty "$T/err" "stderr of an idle tunnel"
expect_no_sessions
target_stop
