# Failures of Entra ID, ARM and the Bastion come out as one line in
# their own words, with a distinct exit status, and leave no session.

# A wrong client secret: Entra's AADSTS code and correlation id.
AZURE_CLIENT_SECRET=wrong run_bs vm1 22 </dev/null
expect_eq $RC 4 "status for a wrong secret"
expect_match "$T/err" 'service principal .*: Entra ID answered 401: AADSTS7000215.*correlation id' \
    "wrong secret message"
expect_no_match "$T/err" 'wrong' "the secret itself"
expect_match "$T/err" 'check the tenant, the client id and the secret' \
    "what to do"

# Entra's throttling and server errors are retried within ConnectTimeout.
emu_faults '{"entra_status": [503, 429]}'
run_bs vm1 22 </dev/null
expect_no_match "$T/err" 'Entra ID answered' "retried Entra errors"
expect_eq "$(emu_counter entra_client_secret)" \
    4 "Entra requests: the refused one, two retried, one good"
rm -rf "$T/cache"

# The Bastion does not exist.
run_bs -o "Bastion=${BASTION_ID}x" vm1 22 </dev/null
expect_eq $RC 5 "status for an unknown Bastion"
expect_match "$T/err" "cannot read Bastion .*bh-testx from ARM: 404 ResourceNotFound" \
    "unknown Bastion message"

# The Bastion's known quirk: 500 with a JSON message.  Server errors are
# retried on a new session, so this one comes back three times.
emu_faults '{"token_status": {"status": 500, "body": {"message": "Unexpected internal error"}, "count": 3}}'
run_bs vm1 22 </dev/null
expect_eq $RC 5 "status for a 500"
expect_match "$T/err" '500 Unexpected internal error \(attempt 3 of 3\)' \
    "500 message"
expect_eq "$(wc -l <"$T/err")" 1 "one line for a 500"

# An HTML error page shows no markup.
emu_faults '{"token_status": {"status": 502, "body": "<html><body>Bad gateway</body></html>", "content_type": "text/html", "count": 3}}'
run_bs vm1 22 </dev/null
expect_eq $RC 5 "status for an HTML 502"
expect_match "$T/err" '502 no error message' "HTML 502 message"

# A VM the Bastion does not know (its group given, so ARM is not asked).
run_bs -o TargetResourceGroup="$RG" novm 22 </dev/null
expect_eq $RC 5 "status for an unknown VM"
expect_match "$T/err" 'refused a session for .*/virtualMachines/novm port 22: 404' \
    "unknown VM message"

# 200 without the tokens is a protocol error.
emu_faults '{"token_status": {"status": 200, "body": {"authToken": "a", "nodeId": "n"}, "count": 1}}'
run_bs vm1 22 </dev/null
expect_eq $RC 7 "status for a 200 without websocketToken"
expect_match "$T/err" 'answered 200 without authToken, websocketToken and nodeId'

# The upgrade refused: what the Bastion answered, not what lws concluded.
emu_faults '{"ws_status": {"status": 404, "body": {"message": "not found"}}}'
run_bs vm1 22 </dev/null
expect_eq $RC 7 "status for an upgrade 404"
expect_match "$T/err" 'refused the WebSocket: HTTP 404 instead of 101 \(attempt 3 of 3\)'
emu_faults '{"ws_status": null}'
expect_no_sessions

# Nothing listens where the Bastion should be.
port=$(free_port)
emu_bastion "{\"dnsName\": \"localhost:$port\"}"
run_bs vm1 22 </dev/null
expect_eq $RC 6 "status when the data plane is unreachable"
expect_match "$T/err" "POST https://localhost:$port/api/tokens: .*(refused|connect)"
