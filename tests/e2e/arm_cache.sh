# What ARM said is cached: processes started together ask ARM once
# for each thing (Resource Graph for where vm1 is, a GET for the
# Bastion), a warm cache asks not at all, and a cached host that leads
# nowhere is looked up again.

target_start send 100
pids=
for i in $(seq 1 20); do
	"$BIN" -F "$W/bastion.conf" vm1 "$TARGET_PORT" </dev/null \
	    >/dev/null 2>"$T/err.$i" &
	pids="$pids $!"
done
for p in $pids; do wait $p || fail "a process failed"; done
expect_eq "$(emu_counter arm)" 2 "ARM requests for twenty processes"
expect_eq "$(emu_counter resourcegraph)" 1 "of which Resource Graph"
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq "$(emu_counter arm)" 2 "ARM requests with a warm cache"
run_bs -o ArmCacheTime=0 vm1 "$TARGET_PORT" </dev/null
expect_eq "$(emu_counter arm)" 4 "ARM requests with ArmCacheTime 0"

# The Bastion moves: the cache still names a port where nothing listens.
port=$(free_port)
emu_bastion "{\"dnsName\": \"localhost:$port\"}"
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 6 "status while the Bastion is away"
emu POST /_emu/config -H 'Content-Type: application/json' \
    -d @"$W/emu.json" >/dev/null	# back, behind the cache's back
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 0 "status once the stale entry is looked up again"
expect_empty "$T/err" "stderr once the stale entry is looked up again"
expect_eq "$(wc -c <"$T/out")" 100 "bytes after the new lookup"
expect_no_sessions
target_stop
