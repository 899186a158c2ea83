# A HOST that is an IP address uses the Bastion's IP-based connection:
# the bh-hostConnect id in the Bastion's subscription and group, and the
# address as hostname.

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
