# Every session is deleted on every exit path: parallel scp, ssh killed
# outright, a ControlMaster that persists and then ends, and a DELETE
# that hangs does not hold the exit for long.

head -c 1048576 /dev/urandom >"$T/f"
pids=
for i in 1 2 3 4 5; do
	scp -q -F "$W/ssh_config" "$T/f" "vm1:$T/f.$i" 2>"$T/err.$i" &
	pids="$pids $!"
done
for p in $pids; do wait $p || fail "a parallel scp failed"; done
for i in 1 2 3 4 5; do cmp -s "$T/f" "$T/f.$i" || fail "scp $i differs"; done
expect_no_sessions

# ssh killed with SIGKILL: its ProxyCommand sees its pipes close.
ssh -F "$W/ssh_config" vm1 'sleep 30' &
ssh_pid=$!
wait_for 50 emu_has_open_session || fail "no tunnel for ssh"
kill -KILL $ssh_pid
wait $ssh_pid 2>/dev/null
expect_no_sessions
pgrep -f "bastion-stdio -F $W/bastion.conf" >/dev/null &&
    fail "bastion-stdio outlived ssh"

# ControlMaster with ControlPersist: one tunnel for several commands,
# gone when the master ends.
created() {
	emu GET /_emu/sessions | $PY -c 'import json,sys; print(json.load(sys.stdin)["created"])'
}
cm="-o ControlMaster=auto -o ControlPath=$T/cm -o ControlPersist=2"
before=$(created)
ssh -F "$W/ssh_config" $cm vm1 true || fail "first multiplexed ssh"
ssh -F "$W/ssh_config" $cm vm1 true || fail "second multiplexed ssh"
expect_eq "$(($(created) - before))" 1 "sessions for two multiplexed commands"
sleep 3
wait_for 30 test "$(emu_active_sessions)" = 0 ||
    fail "the master's session outlived ControlPersist"

# A DELETE that hangs: the exit waits at most a few seconds for it.
target_start send 100
emu_faults '{"delete_delay_ms": 30000}'
t0=$(now_ms)
run_bs_held vm1 "$TARGET_PORT"
elapsed=$(($(now_ms) - t0))
expect_eq $RC 0 "status with a hanging DELETE"
[ "$elapsed" -lt 4500 ] || fail "a hanging DELETE held the exit $elapsed ms"
target_stop
