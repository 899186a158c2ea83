# SIGHUP (what ssh sends its ProxyCommand), SIGTERM and SIGINT close the
# tunnel, delete the session and exit promptly, also before the tunnel is
# open.

target_start echo
mkfifo "$T/stdin"
for sig in HUP TERM INT; do
	sleep 30 >"$T/stdin" &
	holder=$!
	"$BIN" -F "$W/bastion.conf" vm1 "$TARGET_PORT" <"$T/stdin" \
	    >"$T/out" 2>"$T/err" &
	pid=$!
	wait_for 50 emu_has_open_session || fail "SIG$sig: no open tunnel"
	t0=$(now_ms)
	kill -$sig $pid
	wait $pid
	rc=$?
	elapsed=$(($(now_ms) - t0))
	kill $holder 2>/dev/null
	case $sig in
	HUP) expect_eq $rc 0 "exit status after SIGHUP" ;;
	TERM) expect_eq $rc 143 "exit status after SIGTERM" ;;
	INT) expect_eq $rc 130 "exit status after SIGINT" ;;
	esac
	[ "$elapsed" -lt 1000 ] || fail "SIG$sig: exit took $elapsed ms"
	expect_empty "$T/err" "stderr after SIG$sig"
	expect_no_sessions
done

# While the upgrade is still pending: the session is deleted all the same.
emu_faults '{"ws_delay_ms": 5000}'
sleep 30 >"$T/stdin" &
holder=$!
"$BIN" -F "$W/bastion.conf" vm1 "$TARGET_PORT" <"$T/stdin" >"$T/out" \
    2>"$T/err" &
pid=$!
wait_for 50 emu_has_session || fail "no session before the upgrade"
kill -TERM $pid
wait $pid
expect_eq $? 143 "exit status after SIGTERM before the upgrade"
kill $holder 2>/dev/null
expect_no_sessions
target_stop
