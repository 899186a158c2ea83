# bastion-stdio config-ssh: one Host block per VM a visible Bastion
# reaches (by id, so the connection needs no lookup), a pattern block per
# uniform scale set, a comment for the unreachable, and blocks that ssh
# accepts and that connect.

net_ids
emu POST /_emu/config -H 'Content-Type: application/json' -d @- \
    >/dev/null <<JSON
{"vnets": {"$HUB": {"address_prefixes": ["10.0.0.0/16"], "peerings": ["$APP"]},
           "$APP": {"address_prefixes": ["10.1.0.0/16"], "peerings": ["$HUB"]},
           "$ISO": {"address_prefixes": ["10.2.0.0/16"]}},
 "bastions": {"$BH_HUB": {"sku": "Standard", "vnet": "$HUB"}},
 "vms": {"$WEB": {"ip": "127.0.0.1", "vnet": "$APP"},
         "$POOL/virtualMachines/0": {"ip": "127.0.0.1", "vnet": "$APP"},
         "$S/resourceGroups/rg-a/$CMP/virtualMachines/twin": {"ip": "127.0.0.1", "vnet": "$APP"},
         "$S/resourceGroups/rg-b/$CMP/virtualMachines/twin": {"ip": "127.0.0.1", "vnet": "$APP"},
         "$S/resourceGroups/iso/$CMP/virtualMachines/alone": {"ip": "127.0.0.1", "vnet": "$ISO"}}}
JSON
mkdir -p "$T/xdg/bastion-stdio"
zero_conf "$T/xdg/bastion-stdio/config"
export XDG_CONFIG_HOME=$T/xdg

"$BIN" config-ssh >"$T/out" 2>"$T/err"
expect_eq $? 0 "status"
expect_empty "$T/err" "stderr"
expect_match "$T/out" "^Host web$" "a block for web"
expect_match "$T/out" "^    ProxyCommand bastion-stdio -o 'Bastion=$BH_HUB' -o 'TargetResourceId=$WEB' %h %p$" \
    "web's ProxyCommand"
expect_match "$T/out" "^Host twin\\.rg-a$" "same names told apart (a)"
expect_match "$T/out" "^Host twin\\.rg-b$" "same names told apart (b)"
expect_match "$T/out" "^Host pool_\\*$" "a pattern for the scale set"
expect_match "$T/out" "^# $S/resourceGroups/iso/.*/alone: no Bastion reaches it$" \
    "the unreachable VM, as a comment"
expect_no_match "$T/out" "^Host alone" "no block for the unreachable VM"
expect_eq "$(grep -c '^Host ' "$T/out")" 4 "blocks"

# ssh reads the blocks as written.
HOME=$T ssh -G -F "$T/out" twin.rg-b >"$T/ssh-G" 2>&1 ||
    fail "ssh -G: $(cat "$T/ssh-G")"
expect_match "$T/ssh-G" "^proxycommand bastion-stdio -o 'Bastion=$BH_HUB' -o 'TargetResourceId=$S/resourceGroups/rg-b/" \
    "ssh's view of a block"

# The block's command connects, asking ARM only for the Bastion.
target_start send 100
cmd=$(sed -n "/^Host web\$/{n;s/^    ProxyCommand //p}" "$T/out")
cmd=${cmd//%h/web}
cmd=${cmd//%p/$TARGET_PORT}
rm -rf "$T/cache"
arm0=$(emu_counter arm)
rm -f "$T/held"
mkfifo "$T/held"
sleep 60 >"$T/held" &
holder=$!
PATH=$(dirname "$BIN"):$PATH sh -c "$cmd" <"$T/held" >"$T/bytes" 2>"$T/err"
expect_eq $? 0 "status of the block's command"
kill $holder 2>/dev/null
expect_eq "$(wc -c <"$T/bytes")" 100 "bytes through the block's command"
expect_eq $(($(emu_counter arm) - arm0)) 1 "ARM requests (the Bastion only)"
expect_eq "$(emu_counter resourcegraph)" 1 "Resource Graph queries (config-ssh's)"
target_stop

"$BIN" config-ssh >&- 2>"$T/err"
expect_eq $? 8 "status with stdout closed"
expect_match "$T/err" "standard output is closed" "message with stdout closed"

# The blocks read the file this run read; TargetSubscription narrows
# the VMs, not the Bastions (a hub's may be in another subscription).
S2=/subscriptions/00000000-0000-0000-0000-0000000000b2
emu POST /_emu/config -H 'Content-Type: application/json' -d @- \
    >/dev/null <<JSON
{"vms": {"$WEB": {"ip": "127.0.0.1", "vnet": "$APP"},
         "$S2/resourceGroups/spoke/$CMP/virtualMachines/far": {"ip": "127.0.0.1", "vnet": "$APP"},
         "$S/resourceGroups/rg-a/$CMP/virtualMachines/twin": {"ip": "127.0.0.1", "vnet": "$APP"},
         "$S/resourceGroups/rg-b/$CMP/virtualMachines/twin": {"ip": "127.0.0.1", "vnet": "$APP"},
         "$S/resourceGroups/rg-b/$CMP/virtualMachines/twin.rg-a": {"ip": "127.0.0.1", "vnet": "$APP"}},
 "bastions": {"$BH_HUB": {"sku": "Standard", "vnet": "$HUB"},
              "$S/resourceGroups/app/$NET/bastionHosts/bh-app": {"sku": "Standard", "vnet": "$APP"}}}
JSON
"$BIN" config-ssh -F "$T/xdg/bastion-stdio/config" \
    -o TargetSubscription="${S2#/subscriptions/}" >"$T/out" 2>"$T/err"
expect_eq $? 0 "status with TargetSubscription"
expect_match "$T/err" "do not carry what -o set" "a word on -o"
expect_eq "$(grep -c '^Host ' "$T/out")" 1 "blocks of that subscription"
expect_match "$T/out" "^    ProxyCommand bastion-stdio -F '$T/xdg/bastion-stdio/config' -o 'Bastion=$S/resourceGroups/app/.*/far' %h %p$" \
    "the file named in the block"
expect_match "$T/out" "^# $S2/.*/far \\(1 more Bastions reach it\\)$" \
    "the other Bastion, in a comment"
"$BIN" config-ssh >"$T/out" 2>"$T/err"
expect_eq "$(grep -c '^Host twin.rg-a$' "$T/out")" 1 "one block per name"
expect_match "$T/out" "twin.rg-a: its Host name twin.rg-a is taken" \
    "the VM whose name is taken"

# More pages than the bound: an error, not a partial list.
emu POST /_emu/config -H 'Content-Type: application/json' \
    -d '{"resourcegraph_page_size": 1}' >/dev/null
"$BIN" config-ssh >"$T/out" 2>"$T/err"
expect_eq $? 0 "status with one row per page"
expect_eq "$(grep -c '^Host ' "$T/out")" 4 "blocks with one row per page"
$PY - "$S" >"$T/many.json" <<'PY'
import json, sys
s = sys.argv[1]
print(json.dumps({"resourcegraph_page_size": 1, "vnets": {
    f"{s}/resourceGroups/many/providers/Microsoft.Network/"
    f"virtualNetworks/v{i}": {} for i in range(60)}}))
PY
emu POST /_emu/config -H 'Content-Type: application/json' \
    -d @"$T/many.json" >/dev/null
"$BIN" config-ssh >"$T/out" 2>"$T/err"
expect_eq $? 3 "status beyond the bound on pages"
expect_match "$T/err" "more than 50 pages of results; narrow it" \
    "message beyond the bound"
emu POST /_emu/config -H 'Content-Type: application/json' \
    -d '{"resourcegraph_page_size": 1000}' >/dev/null

# The Bastion setting limits the blocks to what that Bastion reaches.
"$BIN" config-ssh -o Bastion="$S/resourceGroups/x/$NET/bastionHosts/other" \
    >"$T/out" 2>"$T/err"
expect_eq $? 0 "status with another Bastion set"
expect_eq "$(grep -c '^Host ' "$T/out")" 0 "blocks with another Bastion set"
expect_match "$T/err" "no VM is reachable" "a note when nothing is"
expect_no_sessions
