# A HOST that is an IP address uses the Bastion's IP-based connection:
# the bh-hostConnect id in the Bastion's subscription and group, and the
# address as hostname.  When ARM does not say whether IP connect is on
# and the Bastion refuses, its words come with the setting to change.

ssh -F "$W/ssh_config" 10.0.0.4 'echo via-ip' >"$T/out" 2>"$T/err"
expect_eq $? 0 "ssh to an IP address"
expect_eq "$(cat "$T/out")" via-ip "output through IP connect"
emu GET /_emu/requests | $PY -c '
import json, sys
p = [r for r in json.load(sys.stdin) if r["path"] == "/api/tokens"][0]
print(sorted(p["form"]))
print(p["form_values"].get("resourceId"), p["form_values"].get("hostname"))
' >"$T/form"
expect_match "$T/form" "'hostname'" "hostname field"
expect_match "$T/form" "^/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.Network/bh-hostConnect/10.0.0.4 10.0.0.4$" \
    "IP-connect id"
expect_no_sessions

emu_bastion '{"sku": "Standard", "enableTunneling": true, "absent": ["enableIpConnect"]}'
run_bs 10.0.0.4 22 </dev/null
expect_eq $RC 5 "status when the Bastion refuses IP connect"
expect_match "$T/err" "refused a session for 10.0.0.4 port 22: 403 IP based connection is not enabled; IP-based connection needs enableIpConnect" \
    "the Bastion's words and the setting"
expect_no_sessions
