# Throttling with zero configuration.  Resource Graph asking for a wait
# beyond ConnectTimeout fails at once with the wait named, as the
# Bastion's does.  A Bastion that throttles is neither unreachable nor
# ignorant of the VM: the route found with Resource Graph stays cached,
# and processes started together do not all ask Resource Graph again.

hub_world
zero_conf "$T/conf"
BS_CONF="-F $T/conf"
target_start send 100

emu_faults '{"resourcegraph_status": {"status": 429, "headers": {"Retry-After": "120"}, "body": {"error": {"code": "RateLimiting", "message": "slow down"}}}}'
t0=$(now_ms)
run_bs web "$TARGET_PORT" </dev/null
elapsed=$(($(now_ms) - t0))
expect_eq $RC 5 "status when Resource Graph asks to wait 120 s"
[ "$elapsed" -lt 3000 ] || fail "waited $elapsed ms for a wait it cannot make"
expect_match "$T/err" "429 RateLimiting: slow down.*120 s" \
    "the wait Resource Graph asked for"
emu_faults '{"resourcegraph_status": null}'

run_bs_held web "$TARGET_PORT"
expect_eq $RC 0 "status, cold"
emu_faults '{"token_status": {"status": 429, "body": {"message": "Too many requests"}, "headers": {"Retry-After": "120"}}}'
graph0=$(emu_counter resourcegraph)
pids=
for i in $(seq 1 10); do
	"$BIN" $BS_CONF web "$TARGET_PORT" </dev/null >/dev/null \
	    2>"$T/err.$i" &
	pids="$pids $!"
done
for p in $pids; do
	wait $p
	expect_eq $? 5 "status of a throttled process"
done
expect_eq $(($(emu_counter resourcegraph) - graph0)) 0 \
    "Resource Graph queries of ten throttled processes, warm cache"
expect_match "$T/err.1" "429 Too many requests \\(it asks to wait 120 s\\)" \
    "the Bastion's throttling"
emu_faults '{"token_status": null}'
expect_no_sessions
target_stop
