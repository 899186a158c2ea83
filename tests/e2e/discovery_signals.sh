# A signal while HOST is being found with Resource Graph ends the process
# promptly: while it asks itself, and while it waits for another process
# that is asking the same thing (the lookup's cache lock).

hub_world
zero_conf "$T/conf"
target_start send 100
mkfifo "$T/stdin"
sleep 60 >"$T/stdin" &
holder=$!

# Whether Resource Graph has had more than $1 queries (wait_for's test:
# a $(...) in its arguments would be read only once).
graph_above() { [ "$(emu_counter resourcegraph)" -gt "$1" ]; }

# Starts bastion-stdio for web in the background, stdin held; sets pid.
start_bs() {
	"$BIN" -F "$T/conf" web "$TARGET_PORT" <"$T/stdin" >"$T/out.$1" \
	    2>"$T/err.$1" &
	pid=$!
}

# Sends signal $1 to $pid; checks its status ($2) and that it took < 1 s.
signal_bs() {
	local t0 rc elapsed
	t0=$(now_ms)
	kill -"$1" $pid
	wait $pid
	rc=$?
	elapsed=$(($(now_ms) - t0))
	expect_eq $rc "$2" "status after SIG$1 ($3)"
	[ "$elapsed" -lt 1000 ] || fail "SIG$1 $3: exit took $elapsed ms"
}

# The token comes from the cache: only Resource Graph is slow.
"$BIN" -F "$T/conf" doctor >/dev/null 2>&1
emu_faults '{"resourcegraph_delay_ms": 4000}'

# Asking Resource Graph itself.
start_bs alone
wait_for 50 graph_above 0 ||
    fail "no Resource Graph query"
signal_bs TERM 143 "during its own query"
expect_empty "$T/err.alone" "stderr after SIGTERM during a query"

# Waiting for another process's answer: the first asks, the second waits.
graph0=$(emu_counter resourcegraph)
start_bs first
first=$pid
wait_for 50 graph_above "$graph0" ||
    fail "the first process asked nothing"
start_bs second
sleep 0.5
signal_bs HUP 0 "while waiting for another lookup"
expect_empty "$T/err.second" "stderr after SIGHUP while waiting"
kill -TERM $first 2>/dev/null
wait $first
emu_faults '{"resourcegraph_delay_ms": null}'
kill $holder 2>/dev/null
expect_no_sessions
target_stop
