# One trust decision for every leg: CAFile (or SSL_CERT_FILE) alone, for
# the REST calls and the WebSocket alike; failures say what failed.

sh "$TOP/tests/lib/mkca.sh" "$T/otherpki" >/dev/null
grep -v CAFile "$W/bastion.conf" >"$T/noca.conf"
target_start send 5000

# A CA that did not sign the emulator's certificate.
"$BIN" -F "$T/noca.conf" -o CAFile="$T/otherpki/ca.pem" vm1 22 </dev/null \
    >"$T/out" 2>"$T/err"
expect_eq $? 6 "status with the wrong CA"
expect_match "$T/err" 'certificate' "wrong CA message"

# The system store does not know the test CA either.
"$BIN" -F "$T/noca.conf" vm1 22 </dev/null >"$T/out" 2>"$T/err"
expect_eq $? 6 "status with the system store"

# SSL_CERT_FILE serves when CAFile is not set, on both legs.
SSL_CERT_FILE=$W/pki/ca.pem BS_CONF="-F $T/noca.conf" run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 0 "status with SSL_CERT_FILE"
expect_eq "$(wc -c <"$T/out")" 5000 "bytes with SSL_CERT_FILE"

# Without CAFile, the store's hashed directory is read (not a bundle
# parsed whole): SSL_CERT_DIR names it, on both legs.
mkdir -p "$T/certs"
cp "$W/pki/ca.pem" "$T/certs/test-ca.pem"
openssl rehash "$T/certs" 2>/dev/null || c_rehash "$T/certs" >/dev/null
(unset SSL_CERT_FILE
SSL_CERT_DIR=$T/certs BS_CONF="-F $T/noca.conf" run_bs_held -v vm1 \
    "$TARGET_PORT"
expect_eq $RC 0 "status with SSL_CERT_DIR"
expect_eq "$(wc -c <"$T/out")" 5000 "bytes with SSL_CERT_DIR"
expect_match "$T/err" "trusting the CA directory $T/certs" "the directory"
SSL_CERT_DIR=$T/otherpki run_bs -F "$T/noca.conf" vm1 22 </dev/null
expect_eq $RC 6 "status with a directory without hash links"
exit $FAILED) || FAILED=1

# A data plane whose certificate names another host, and one whose
# certificate has expired: the verify error is named.
for cert in wrongname expired; do
	emu2_start $cert
	emu_bastion "{\"dnsName\": \"localhost:$EMU2_PORT\"}"
	run_bs vm1 "$TARGET_PORT" </dev/null
	expect_eq $RC 6 "status for the $cert certificate"
	kill $EMU2_PID
	wait $EMU2_PID 2>/dev/null
done
expect_match "$T/err" 'expired' "expired message"
expect_no_sessions
target_stop
