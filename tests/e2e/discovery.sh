# Zero configuration: with no Bastion and no resource group set, HOST is
# found with Resource Graph (VM name, computer name, private IP, or
# SCALESET_N), and so is the Bastion in its network or a peered one.
# Warm caches make no ARM request; ambiguity and dead ends are errors
# that list what was found and say what to set.

net_ids
BH_APP=$S/resourceGroups/app/$NET/bastionHosts/bh-app

world() {	# $1: the bastions, as JSON members
	emu POST /_emu/config -H 'Content-Type: application/json' -d @- \
	    >/dev/null <<JSON
{"vnets": {"$HUB": {"address_prefixes": ["10.0.0.0/16"], "peerings": ["$APP"]},
           "$APP": {"address_prefixes": ["10.1.0.0/16"], "peerings": ["$HUB"]},
           "$ISO": {"address_prefixes": ["10.2.0.0/16"]}},
 "bastions": {$1},
 "vms": {"$WEB": {"ip": "127.0.0.1", "computer_name": "web01",
                  "private_ip": "10.1.0.4", "vnet": "$APP",
                  "secondary_ips": ["fd00::4"]},
         "$POOL/virtualMachines/3": {"ip": "127.0.0.1", "vnet": "$APP",
                                     "private_ip": "10.1.0.9"},
         "$S/resourceGroups/rg-a/$CMP/virtualMachines/twin": {"ip": "127.0.0.1", "vnet": "$APP"},
         "$S/resourceGroups/rg-b/$CMP/virtualMachines/twin": {"ip": "127.0.0.1", "vnet": "$APP"},
         "$S/resourceGroups/iso/$CMP/virtualMachines/alone": {"ip": "127.0.0.1", "vnet": "$ISO"}}}
JSON
}
hub_bastion="\"$BH_HUB\": {\"sku\": \"Standard\", \"vnet\": \"$HUB\"}"
world "$hub_bastion"

# Only where Azure is: no Bastion, no target settings.
zero_conf "$T/conf"
BS_CONF="-F $T/conf"
arm0=$(emu_counter arm)

target_start send 100
run_bs_held -v web "$TARGET_PORT"
expect_eq $RC 0 "status for a VM found by name"
expect_eq "$(wc -c <"$T/out")" 100 "bytes from web"
expect_match "$T/err" "through Bastion $BH_HUB" "the Bastion found"
expect_eq $(($(emu_counter arm) - arm0)) 3 "ARM requests, cold"
expect_eq "$(emu_counter resourcegraph)" 3 \
    "Resource Graph queries, cold: the VM, its NICs, the Bastions"
expect_eq "$(emu_counter arm_bastion_get)" 0 "Bastion GETs (Graph said)"
arm0=$(emu_counter arm)
entra0=$(emu_counter entra)
run_bs_held web "$TARGET_PORT"
expect_eq $RC 0 "status, warm"
expect_eq "$(wc -c <"$T/out")" 100 "bytes, warm"
expect_eq $(($(emu_counter arm) - arm0)) 0 "ARM requests, warm"
expect_eq $(($(emu_counter entra) - entra0)) 0 "Entra requests, warm"
expect_empty "$T/err" "stderr, warm"

# The computer name, private IPs (in any text form) and a scale-set
# instance (leading zeros or not).
for h in web01 WEB 10.1.0.4 FD00:0::4 pool_03 pool_3; do
	run_bs_held -v "$h" "$TARGET_PORT"
	expect_eq $RC 0 "status for $h"
	expect_eq "$(wc -c <"$T/out")" 100 "bytes for $h"
done
expect_match "$T/err" "pool_3 is $POOL/virtualMachines/3" "instance id"
expect_match "$T/err" "session for $POOL/virtualMachines/3 port" \
    "the instance the Bastion was asked for"

# Resource Graph throttles: its Retry-After is waited for, within
# ConnectTimeout.
rm -rf "$T/cache"
graph0=$(emu_counter resourcegraph)
emu_faults '{"resourcegraph_status": {"status": 429, "headers": {"Retry-After": "1"}, "body": {"error": {"code": "RateLimiting", "message": "slow down"}}, "count": 1}}'
run_bs_held web "$TARGET_PORT"
expect_eq $RC 0 "status after a 429 from Resource Graph"
expect_eq $(($(emu_counter resourcegraph) - graph0)) 4 \
    "Resource Graph queries with one 429"
rm -rf "$T/cache"
emu_faults '{"resourcegraph_status": {"status": 429, "headers": {"Retry-After": "60"}, "body": {"error": {"code": "RateLimiting", "message": "slow down"}}, "count": 1}}'
run_bs web 22 </dev/null
expect_eq $RC 5 "status when Resource Graph asks to wait too long"
expect_match "$T/err" "cannot look up web with Resource Graph: 429 RateLimiting: slow down" \
    "throttling message"
emu_faults '{"resourcegraph_status": null}'

# Processes started together ask once.
rm -rf "$T/cache"
graph0=$(emu_counter resourcegraph)
pids=
for i in $(seq 1 10); do
	"$BIN" -F "$T/conf" web "$TARGET_PORT" </dev/null >/dev/null \
	    2>"$T/err.$i" &
	pids="$pids $!"
done
for p in $pids; do wait $p || fail "a process failed: $(cat "$T"/err.*)"; done
expect_eq $(($(emu_counter resourcegraph) - graph0)) 3 \
    "Resource Graph queries for ten processes"

# Answers a page at a time.
emu POST /_emu/config -H 'Content-Type: application/json' \
    -d '{"resourcegraph_page_size": 1}' >/dev/null
rm -rf "$T/cache"
run_bs_held web "$TARGET_PORT"
expect_eq $RC 0 "status with one row per page"
emu POST /_emu/config -H 'Content-Type: application/json' \
    -d '{"resourcegraph_page_size": 1000}' >/dev/null

# Dead ends: each a one-line reason (candidates indented below it).
run_bs twin 22 </dev/null
expect_eq $RC 2 "status for an ambiguous name"
expect_match "$T/err" "twin names 2 VMs; set TargetResourceGroup" \
    "ambiguity message"
expect_match "$T/err" "    $S/resourceGroups/rg-a/.*/twin" "first candidate"
expect_match "$T/err" "    $S/resourceGroups/rg-b/.*/twin" "second one"
run_bs_held -o TargetResourceGroup=rg-b twin "$TARGET_PORT"
expect_eq $RC 0 "status once the group is set"

# A VM's own name wins over an instance that SCALESET_N names.
emu POST /_emu/config -H 'Content-Type: application/json' -d \
    "{\"vms\": {\"$S/resourceGroups/app/$CMP/virtualMachines/pool_3\": {\"ip\": \"127.0.0.1\", \"vnet\": \"$APP\"}, \"$POOL/virtualMachines/3\": {\"ip\": \"127.0.0.1\", \"vnet\": \"$APP\"}, \"$WEB\": {\"ip\": \"127.0.0.1\", \"vnet\": \"$APP\", \"computer_name\": \"web01\"}}}" \
    >/dev/null
rm -rf "$T/cache"
run_bs_held -v pool_3 "$TARGET_PORT"
expect_eq $RC 0 "status for a VM called like an instance"
expect_match "$T/err" "pool_3 is $S/resourceGroups/app/$CMP/virtualMachines/pool_3" \
    "the VM, not the instance"
world "$hub_bastion"
run_bs nosuch 22 </dev/null
expect_eq $RC 2 "status for no such VM"
expect_match "$T/err" "no VM called nosuch is visible" "unknown name message"
run_bs 10.9.9.9 22 </dev/null
expect_eq $RC 2 "status for an unknown private IP"
expect_match "$T/err" "no VM .* has the private IP 10.9.9.9; .* set Bastion" \
    "unknown IP message"
run_bs alone 22 </dev/null
expect_eq $RC 3 "status when no Bastion reaches"
expect_match "$T/err" "no Bastion .* is in or peered with $ISO" \
    "unreachable message"
expect_eq "$(wc -c <"$T/out")" 0 "stdout in dead ends"

# Two Bastions reach web: the user chooses, with the block shown.
world "$hub_bastion, \"$BH_APP\": {\"sku\": \"Premium\", \"vnet\": \"$APP\"}"
rm -rf "$T/cache"
run_bs web 22 </dev/null
expect_eq $RC 3 "status with two Bastions"
expect_match "$T/err" "2 Bastions reach $WEB; choose one" "choice message"
expect_match "$T/err" "  Host web.?$" "the Host block"
expect_match "$T/err" "      Bastion $S/resourceGroups/" "its Bastion line"
run_bs_held -o Bastion="$BH_APP" web "$TARGET_PORT"
expect_eq $RC 0 "status with the Bastion chosen"

# A Basic Bastion cannot tunnel: it is passed over, and named if alone.
world "\"$BH_HUB\": {\"sku\": \"Basic\", \"vnet\": \"$HUB\"}"
rm -rf "$T/cache"
run_bs web 22 </dev/null
expect_eq $RC 5 "status when only a Basic Bastion reaches"
expect_match "$T/err" "bh-hub has the Basic SKU" "Basic message"

# A Developer Bastion reaches its own network only, peered or not.
DEV=$S/resourceGroups/iso/$NET/bastionHosts/bh-dev
world "$hub_bastion, \"$DEV\": {\"sku\": \"Developer\", \"own_port\": true, \"vnet\": \"$ISO\"}"
rm -rf "$T/cache"
run_bs_held -v alone "$TARGET_PORT"
expect_eq $RC 0 "status through a Developer Bastion"
expect_eq "$(wc -c <"$T/out")" 100 "bytes through a Developer Bastion"
expect_match "$T/err" "through Bastion $DEV" "the Developer Bastion found"
world "\"$DEV\": {\"sku\": \"Developer\", \"own_port\": true, \"vnet\": \"$HUB\"}"
rm -rf "$T/cache"
run_bs web 22 </dev/null
expect_eq $RC 3 "status when only a peered Developer Bastion is there"

# A one-sided peering (Initiated) does not carry traffic.
emu POST /_emu/config -H 'Content-Type: application/json' -d \
    "{\"vnets\": {\"$HUB\": {\"peerings\": [\"$APP\"]}, \"$APP\": {}}}" \
    >/dev/null
emu POST /_emu/config -H 'Content-Type: application/json' -d \
    "{\"bastions\": {$hub_bastion}}" >/dev/null
rm -rf "$T/cache"
run_bs web 22 </dev/null
expect_eq $RC 3 "status with a one-sided peering"

# A cached id that went stale (the VM moved): looked up once more.
world "$hub_bastion"
rm -rf "$T/cache"
run_bs_held web "$TARGET_PORT"
expect_eq $RC 0 "status before the move"
emu POST /_emu/config -H 'Content-Type: application/json' -d @- \
    >/dev/null <<JSON
{"vms": {"$S/resourceGroups/moved/$CMP/virtualMachines/web": {"ip": "127.0.0.1",
          "vnet": "$APP"}}}
JSON
run_bs_held -v web "$TARGET_PORT"
expect_eq $RC 0 "status after the move"
expect_eq "$(wc -c <"$T/out")" 100 "bytes after the move"
expect_match "$T/err" "asking ARM again" "the stale route looked up again"
move_web() {
	emu POST /_emu/config -H 'Content-Type: application/json' -d \
	    "{\"vms\": {\"$S/resourceGroups/$1/$CMP/virtualMachines/web\":
	    {\"ip\": \"127.0.0.1\", \"vnet\": \"$APP\"}}}" >/dev/null
}
move_web moved-again
run_bs_held web "$TARGET_PORT"
expect_eq $RC 0 "status after another move"
expect_empty "$T/err" "stderr when a stale route recovers"

# A deallocated VM, seen so by Resource Graph: ARM confirms before the
# Bastion is asked, and StartVm starts it.
rm -rf "$T/cache"
emu POST /_emu/power -H 'Content-Type: application/json' \
    -d "{\"vm\": \"$S/resourceGroups/moved-again/$CMP/virtualMachines/web\", \"power\": \"deallocated\"}" >/dev/null
posts0=$(emu_counter tokens_post)
run_bs web 22 </dev/null
expect_eq $RC 5 "status for a deallocated VM"
expect_match "$T/err" "VM web is deallocated: start it with" "deallocated message"
expect_eq $(($(emu_counter tokens_post) - posts0)) 0 "sessions asked for"
run_bs_held -o StartVm=yes web "$TARGET_PORT"
expect_eq $RC 0 "status once StartVm started it"
expect_eq "$(wc -c <"$T/out")" 100 "bytes once started"
expect_match "$T/err" "starting VM web \(deallocated\)" "start progress"

# Two credentials that see different subscriptions: what one found is
# not the other's answer.
S2=/subscriptions/00000000-0000-0000-0000-0000000000b2
S3=/subscriptions/00000000-0000-0000-0000-0000000000b3
emu POST /_emu/config -H 'Content-Type: application/json' -d @- \
    >/dev/null <<JSON
{"subscriptions": {"${S2#/subscriptions/}": {"principals": ["$CLIENT"]},
                   "${S3#/subscriptions/}": {"principals": ["$CERT_CLIENT"]},
                   "$SUB": {}},
 "vms": {"$S2/resourceGroups/r/$CMP/virtualMachines/mv": {"ip": "127.0.0.1", "vnet": "$APP"},
         "$S3/resourceGroups/r/$CMP/virtualMachines/mv": {"ip": "127.0.0.1", "vnet": "$APP"}}}
JSON
run_bs_held -v mv "$TARGET_PORT"
expect_match "$T/err" "mv is $S2/" "the first credential's mv"
(unset AZURE_CLIENT_SECRET
AZURE_CLIENT_ID=$CERT_CLIENT AZURE_CLIENT_CERTIFICATE_PATH=$W/pki/sp.pem \
    run_bs_held -v mv "$TARGET_PORT"
expect_eq $RC 0 "status for the second credential"
expect_match "$T/err" "mv is $S3/" "the second credential's mv"
exit $FAILED) || FAILED=1
emu POST /_emu/config -H 'Content-Type: application/json' \
    -d '{"subscriptions": {}}' >/dev/null
move_web moved

# The VM moves to a network the cached Bastion cannot reach: that
# connection fails (ssh's bytes went into it), the next looks up anew.
world "$hub_bastion, \"$S/resourceGroups/iso/$NET/bastionHosts/bh-iso\": {\"sku\": \"Standard\", \"own_port\": true, \"vnet\": \"$ISO\"}"
rm -rf "$T/cache"
run_bs_held web "$TARGET_PORT"
expect_eq $RC 0 "status before the move to another network"
emu POST /_emu/config -H 'Content-Type: application/json' -d \
    "{\"vms\": {\"$WEB\": {\"ip\": \"127.0.0.1\", \"vnet\": \"$ISO\"}}}" >/dev/null
run_bs_held web "$TARGET_PORT"
expect_eq $RC 1 "status of the connection on the stale route"
run_bs_held -v web "$TARGET_PORT"
expect_eq $RC 0 "status of the next connection"
expect_match "$T/err" "through Bastion $S/resourceGroups/iso/" "the new Bastion"

# The VM is deleted after it was cached: one line, as if never there.
emu POST /_emu/config -H 'Content-Type: application/json' \
    -d '{"vms": {}}' >/dev/null
run_bs web 22 </dev/null
expect_eq $RC 2 "status for a VM deleted since it was cached"
expect_eq "$(wc -l <"$T/err")" 1 "lines for a deleted VM"
expect_match "$T/err" "no VM called web" "message for a deleted VM"
world "$hub_bastion"
move_web moved

# doctor finds the same way, from ARM itself.
"$BIN" doctor -F "$T/conf" web >"$T/out" 2>"$T/err"
expect_eq $? 0 "doctor status"
expect_match "$T/out" "^\[ok\] +target +$S/resourceGroups/moved/.*/web port 22 \(found with Resource Graph\)" \
    "doctor's target line"
expect_match "$T/out" "^\[ok\] +arm +Bastion $BH_HUB: SKU Standard" \
    "doctor's Bastion line"
"$BIN" doctor -F "$T/conf" nosuch >"$T/out" 2>"$T/err"
expect_eq $? 2 "doctor status for no such VM"
expect_match "$T/out" "^\[FAIL\] target +cannot find what nosuch names" \
    "doctor's target failure"
"$BIN" doctor -F "$T/conf" >"$T/out" 2>"$T/err"
expect_eq $? 3 "doctor status without HOST or Bastion"
expect_match "$T/out" "^\[FAIL\] bastion +no Bastion" "doctor's advice"
expect_no_sessions
target_stop
