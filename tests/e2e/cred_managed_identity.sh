# Managed identity: IMDS (system and user-assigned, retries, and the cheap
# probe off Azure), App Service, Azure Arc with its challenge-file checks,
# and Cloud Shell.

target_start send 1000
no_credentials

# IMDS, system-assigned, then each way of naming a user-assigned one.
AZURE_POD_IDENTITY_AUTHORITY_HOST=$EMU_PLAIN run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with IMDS"
expect_empty "$T/err" "stderr with IMDS"
expect_eq "$(issued imds)" 1 "IMDS tokens"
n=1
for kw in "ManagedIdentityClientId=$MI_CLIENT" \
    "ManagedIdentityObjectId=$MI_OBJECT" \
    "ManagedIdentityResourceId=$MI_RESOURCE"; do
	rm -rf "$T/cache"
	n=$((n + 1))
	AZURE_POD_IDENTITY_AUTHORITY_HOST=$EMU_PLAIN run_bs -o "$kw" vm1 \
	    "$TARGET_PORT" </dev/null
	expect_eq $RC 0 "status with $kw"
	expect_eq "$(issued imds)" $n "IMDS tokens with $kw"
done
emu GET /_emu/requests >"$T/requests"
expect_match "$T/requests" 'msi_res_id' "IMDS selector for a resource id"

# An identity IMDS does not have: as its own source, the IMDS error.
rm -rf "$T/cache"
AZURE_POD_IDENTITY_AUTHORITY_HOST=$EMU_PLAIN run_bs \
    -o Credential=managed-identity \
    -o ManagedIdentityClientId=dddddddd-0000-0000-0000-000000000000 \
    vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 4 "status for an unknown identity"
expect_match "$T/err" 'managed identity \(IMDS\) answered 400' \
    "unknown identity message"

# IMDS's documented retries: 404 and 500, then a token.
rm -rf "$T/cache"
emu_faults '{"imds_status": [404, 500]}'
t0=$(now_ms)
AZURE_POD_IDENTITY_AUTHORITY_HOST=$EMU_PLAIN run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status after IMDS retries"
[ $(($(now_ms) - t0)) -ge 2500 ] || fail "IMDS retried without backing off"

# Off Azure: IMDS hangs; the probe gives up after 50 ms and the chain
# goes on (here to nothing).
rm -rf "$T/cache"
rm -f "$T/bh.port"
$PY "$TOP/tests/lib/blackhole.py" "$T/bh.port" &
bh=$!
wait_for 50 test -s "$T/bh.port"
t0=$(now_ms)
AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:$(cat "$T/bh.port") \
    run_bs vm1 "$TARGET_PORT" </dev/null
elapsed=$(($(now_ms) - t0))
kill $bh
expect_eq $RC 4 "status off Azure"
expect_match "$T/err" 'no Azure credential' "message off Azure"
[ "$elapsed" -lt 1000 ] || fail "the chain took $elapsed ms off Azure"

# App Service.
rm -rf "$T/cache"
IDENTITY_ENDPOINT=$EMU_PLAIN/msi/token IDENTITY_HEADER=$APPSERVICE_HEADER \
    run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with App Service"
expect_eq "$(issued appservice)" 1 "App Service tokens"
rm -rf "$T/cache"
IDENTITY_ENDPOINT=$EMU_PLAIN/msi/token IDENTITY_HEADER=wrong \
    run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 4 "status with a wrong App Service header"
expect_match "$T/err" 'managed identity \(App Service\) answered 401'

# Azure Arc, and a challenge pointing anywhere but a small .key file in
# the agent's directory.
arc() {
	rm -rf "$T/cache"
	IDENTITY_ENDPOINT=$EMU_PLAIN/arc/metadata/identity/oauth2/token \
	    IMDS_ENDPOINT=$EMU_PLAIN BASTION_STDIO_ARC_TOKEN_DIR=$W/arc \
	    run_bs vm1 "$TARGET_PORT" </dev/null
}
arc
expect_eq $RC 0 "status with Azure Arc"
expect_eq "$(issued arc)" 1 "Arc tokens"
for realm in outside dotdot symlink wrong_ext too_big; do
	emu_faults "{\"arc_realm\": \"$realm\"}"
	arc
	expect_eq $RC 4 "status for an Arc challenge ($realm)"
	expect_match "$T/err" "refusing the agent's challenge file" \
	    "Arc message ($realm)"
done
expect_eq "$(issued arc)" 1 "Arc tokens after bad challenges"
emu_faults '{"arc_realm": null}'

# Cloud Shell.
rm -rf "$T/cache"
MSI_ENDPOINT=$EMU_PLAIN/cloudshell/oauth2/token run_bs vm1 "$TARGET_PORT" \
    </dev/null
expect_eq $RC 0 "status with Cloud Shell"
expect_eq "$(issued cloudshell)" 1 "Cloud Shell tokens"
expect_no_sessions
target_stop
