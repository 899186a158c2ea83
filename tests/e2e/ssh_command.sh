# An ssh command through the tunnel; what each request looked like.

ssh -F "$W/ssh_config" vm1 'echo through-bastion; echo err >&2' \
    >"$T/out" 2>"$T/err"
expect_eq $? 0 "ssh exit status"
expect_eq "$(cat "$T/out")" through-bastion "remote output"
expect_eq "$(cat "$T/err")" err "stderr (nothing from bastion-stdio)"
expect_no_sessions

emu GET /_emu/requests >"$T/requests.json"
$PY - "$T/requests.json" >"$T/shape" <<'PY' || fail "request shape: $(cat "$T/shape")"
import json, sys
reqs = json.load(open(sys.argv[1]))
posts = [r for r in reqs if r["method"] == "POST" and r["path"] == "/api/tokens"]
ws = [r for r in reqs if r["path"].startswith("/webtunnelv2/")]
dels = [r for r in reqs if r["method"] == "DELETE"]
def hdr(r, name):
    return {k.lower(): v for k, v in r["headers"].items()}.get(name)
errors = []
if len(posts) != 1 or len(ws) != 1 or len(dels) != 1:
    errors.append("expected one POST, one upgrade, one DELETE: %d %d %d"
                  % (len(posts), len(ws), len(dels)))
else:
    p = posts[0]
    if sorted(p["form"]) != sorted(["resourceId", "protocol",
                                    "workloadHostPort", "aztoken"]):
        errors.append("form fields %s" % p["form"])
    if hdr(p, "authorization") is not None:
        errors.append("Authorization header on /api/tokens")
    if not (hdr(p, "content-type") or "").startswith(
            "application/x-www-form-urlencoded"):
        errors.append("content type %s" % hdr(p, "content-type"))
    if hdr(p, "x-node-id") is not None:
        errors.append("X-Node-Id on the first POST")
    w = ws[0]
    if not (hdr(w, "user-agent") or "").startswith("bastion-stdio/"):
        errors.append("WebSocket User-Agent %s" % hdr(w, "user-agent"))
    if hdr(w, "sec-websocket-extensions") is not None:
        errors.append("extensions offered")
    if "X-Node-Id=" not in w["path"]:
        errors.append("no node id on the upgrade")
    if hdr(dels[0], "x-node-id") is None:
        errors.append("DELETE without X-Node-Id")
print("; ".join(errors))
sys.exit(1 if errors else 0)
PY

# The Bastion ends a session with 1011: ssh shows why, although it sends
# SIGHUP to its ProxyCommand as soon as it sees the EOF.
emu_faults '{"close_after_s": 1, "close_code": 1011, "close_reason": "bye"}'
ssh -F "$W/ssh_config" vm1 'sleep 5' >"$T/out" 2>"$T/err"
# the line comes after the session's DELETE, when ssh may have exited
wait_for 50 grep -q "Bastion closed the tunnel with code 1011: bye" \
    "$T/err" || fail "the reason, under ssh: $(cat "$T/err")"
emu_faults '{"close_after_s": null, "close_code": null, "close_reason": null}'
expect_no_sessions
