# The Azure CLI's sign-in, read natively and read-only: the default
# subscription's user from azureProfile.json (with its byte order mark),
# that user's refresh token or fresh ARM token from msal_token_cache.json.
# A cache others may read is refused; the CLI's files are never written.

target_start send 1000
no_credentials
CLI=$T/azure
mkdir -p "$CLI"
export AZURE_CONFIG_DIR=$CLI
HOME_ID=0000aaaa-1111-2222-3333-444455556666.$TENANT
CLI_ID=04b07795-8ddb-461a-bbee-02f9e1bf7b46

profile() {	# user type
	printf '\357\273\277{"installationId": "i", "subscriptions": [
	  {"id": "%s", "name": "other", "isDefault": false, "tenantId": "x",
	   "environmentName": "AzureCloud", "user": {"name": "bob", "type": "user"}},
	  {"id": "%s", "name": "s", "state": "Enabled", "isDefault": true,
	   "tenantId": "%s", "environmentName": "AzureCloud",
	   "user": {"name": "%s", "type": "%s"}}]}' \
	    "$SUB" "$SUB" "$TENANT" "$1" "$2" >"$CLI/azureProfile.json"
}

token_cache() {	# access-token-secret (or empty)
	local at=${1:-}
	$PY - "$CLI/msal_token_cache.json" "$at" <<PY
import json, sys, time
env, home, cli, now = "localhost", "$HOME_ID", "$CLI_ID", int(time.time())
cache = {"Account": {home + "-" + env + "-$TENANT": {
            "home_account_id": home, "environment": env, "realm": "$TENANT",
            "username": "ALICE@example.invalid", "authority_type": "MSSTS"}},
         "RefreshToken": {home + "-" + env + "-refreshtoken-" + cli + "--": {
            "credential_type": "RefreshToken", "secret": "$USER_RT",
            "home_account_id": home, "environment": env, "client_id": cli,
            "target": "", "last_modification_time": str(now), "family_id": "1"}},
         "AccessToken": {}, "IdToken": {}, "AppMetadata": {}}
if sys.argv[2]:
    cache["AccessToken"]["at"] = {
        "credential_type": "AccessToken", "secret": sys.argv[2],
        "home_account_id": home, "environment": env, "client_id": cli,
        "realm": "$TENANT", "token_type": "Bearer",
        "target": "https://management.core.windows.net//user_impersonation",
        "cached_at": str(now), "expires_on": str(now + 3600),
        "extended_expires_on": str(now + 3600)}
with open(sys.argv[1], "w") as f:
    json.dump(cache, f)
PY
	chmod 600 "$CLI/msal_token_cache.json"
}

profile "$USER_UPN" user
token_cache
sum_before=$(cat "$CLI"/* | sha256sum)
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with the Azure CLI's sign-in"
expect_empty "$T/err" "stderr with the Azure CLI's sign-in"
expect_eq "$(issued refresh_token)" 1 "refresh-token redemptions"
expect_eq "$(cat "$CLI"/* | sha256sum)" "$sum_before" "the CLI's files"

# A fresh ARM token in the CLI's cache is used as it is: no request.
rm -rf "$T/cache"
at=$(curl -sS --cacert "$W/pki/ca.pem" "$EMU/$TENANT/oauth2/v2.0/token" \
    --data-urlencode grant_type=client_credentials \
    --data-urlencode client_id=$CLIENT --data-urlencode client_secret=$SECRET \
    --data-urlencode scope=https://management.core.windows.net//.default |
    $PY -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
token_cache "$at"
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with the CLI's access token"
expect_eq "$(issued refresh_token)" 1 "redemptions with a fresh access token"

# A token cache that other users may read is refused, and said so.
rm -rf "$T/cache"
chmod 644 "$CLI/msal_token_cache.json"
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 4 "status with a readable token cache"
expect_match "$T/err" "refusing the Azure CLI's $CLI/msal_token_cache.json: other users may read it" \
    "readable cache message"
chmod 600 "$CLI/msal_token_cache.json"

# The environment's service principal comes first in the chain, unless
# Credential names the CLI.
token_cache
rm -rf "$T/cache"
AZURE_TENANT_ID=$TENANT AZURE_CLIENT_ID=$CLIENT AZURE_CLIENT_SECRET=$SECRET \
    run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq "$(issued refresh_token)" 1 "redemptions with a principal set"
rm -rf "$T/cache"
AZURE_TENANT_ID=$TENANT AZURE_CLIENT_ID=$CLIENT AZURE_CLIENT_SECRET=$SECRET \
    run_bs -o Credential=azure-cli vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with Credential azure-cli"
expect_eq "$(issued refresh_token)" 2 "redemptions with Credential azure-cli"

# Signed in as a service principal: not a user sign-in to read.
rm -rf "$T/cache"
profile "$CLIENT" servicePrincipal
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 4 "status with a CLI service principal"

# A revoked refresh token: Entra's words, and what to do.
profile "$USER_UPN" user
emu POST /_emu/revoke -H 'Content-Type: application/json' \
    -d "{\"refresh_token\": \"$USER_RT\"}" >/dev/null
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 4 "status with a revoked refresh token"
expect_match "$T/err" "Azure CLI sign-in of $USER_UPN: Entra ID answered 400: AADSTS70008.*sign in again with 'az login'" \
    "revoked token message"
expect_no_sessions
target_stop
