# Service principals with a certificate (PEM, and PKCS#12 with a
# password), and workload identity's federated token file.

target_start send 1000
no_credentials
export AZURE_TENANT_ID=$TENANT

AZURE_CLIENT_ID=$CERT_CLIENT AZURE_CLIENT_CERTIFICATE_PATH=$W/pki/sp.pem \
    run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with a PEM certificate"
expect_empty "$T/err" "stderr with a PEM certificate"
expect_eq "$(issued client_assertion)" 1 "assertions accepted"

rm -rf "$T/cache"
AZURE_CLIENT_ID=$CERT_CLIENT AZURE_CLIENT_CERTIFICATE_PATH=$W/pki/sp.pfx \
    AZURE_CLIENT_CERTIFICATE_PASSWORD=pfx-pass run_bs vm1 "$TARGET_PORT" \
    </dev/null
expect_eq $RC 0 "status with a PKCS#12 certificate"
expect_eq "$(issued client_assertion)" 2 "assertions accepted"

rm -rf "$T/cache"
AZURE_CLIENT_ID=$CERT_CLIENT AZURE_CLIENT_CERTIFICATE_PATH=$W/pki/sp.pfx \
    AZURE_CLIENT_CERTIFICATE_PASSWORD=wrong run_bs vm1 "$TARGET_PORT" \
    </dev/null
expect_eq $RC 3 "status with a wrong PKCS#12 password"
expect_match "$T/err" "certificate $W/pki/sp.pfx: " "wrong password message"

# Not what Entra can use: an EC key, or a certificate without its key.
rm -rf "$T/cache"
cat "$W/pki/server.key" "$W/pki/server.pem" >"$T/ec.pem"
AZURE_CLIENT_ID=$CERT_CLIENT AZURE_CLIENT_CERTIFICATE_PATH=$T/ec.pem \
    run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 3 "status for an EC key"
expect_match "$T/err" 'must be RSA' "EC key message"
AZURE_CLIENT_ID=$CERT_CLIENT AZURE_CLIENT_CERTIFICATE_PATH=$W/pki/sp.crt \
    run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 3 "status for a certificate without a key"
expect_match "$T/err" 'no private key in it' "no key message"

# A certificate Entra does not know: its own words, AADSTS50012.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other \
    -keyout "$T/other.key" -out "$T/other.crt" 2>/dev/null
cat "$T/other.key" "$T/other.crt" >"$T/other.pem"
AZURE_CLIENT_ID=$CERT_CLIENT AZURE_CLIENT_CERTIFICATE_PATH=$T/other.pem \
    run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 4 "status for an unknown certificate"
expect_match "$T/err" 'Entra ID answered 401: AADSTS50012' \
    "unknown certificate message"

# Workload identity reads the file on every request.
rm -rf "$T/cache"
printf '%s\n' "$FED_TOKEN" >"$T/federated"
AZURE_CLIENT_ID=$FED_CLIENT AZURE_FEDERATED_TOKEN_FILE=$T/federated \
    run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with workload identity"
expect_eq "$(issued federated)" 1 "federated tokens accepted"

rm -rf "$T/cache"
echo stale-token >"$T/federated"
AZURE_CLIENT_ID=$FED_CLIENT AZURE_FEDERATED_TOKEN_FILE=$T/federated \
    run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 4 "status with a wrong federated token"
expect_match "$T/err" 'workload identity .*Entra ID answered [0-9]+: AADSTS' \
    "wrong federated token message"
expect_no_sessions
target_stop
