# A Developer SKU Bastion: its front end names a data pod per connection
# (POST /api/connection), whose /api/tokens and /omni/webtunnel/ carry
# the session; the session is deleted there.

target_start send 2000
run_bs_held -o Bastion=$DEV_BASTION_ID vm1 "$TARGET_PORT"
expect_eq $RC 0 "status through a Developer Bastion"
expect_eq "$(wc -c <"$T/out")" 2000 "bytes through a Developer Bastion"
expect_empty "$T/err" "stderr through a Developer Bastion"
emu GET /_emu/requests | $PY -c '
import json, sys
for r in json.load(sys.stdin):
    print(r["method"], r["path"].split("?")[0], r["status"], sorted(r.get("json_keys") or []))
' >"$T/requests"
expect_match "$T/requests" "^POST /api/connection 200 \['azToken', 'bastionResourceId', 'connectionType', 'resourceId', 'vmPort'\]" \
    "the data pod request"
expect_match "$T/requests" '^GET /omni/webtunnel/<token> 101' "the omni tunnel"
expect_match "$T/requests" '^DELETE /api/tokens/<token> 204' "the DELETE on the pod"
expect_no_sessions

# No IP connect on the Developer SKU: refused before any session.
run_bs -o Bastion=$DEV_BASTION_ID 10.0.0.4 22 </dev/null
expect_eq $RC 5 "status for IP connect on a Developer Bastion"
expect_match "$T/err" 'Developer SKU, which cannot connect by IP address' \
    "IP connect message"
target_stop
