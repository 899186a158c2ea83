# No secret (client secret, Entra token, authToken, websocketToken) in any
# message, even at the highest log level, in LogFile, or in argv.

target_start send 100000
run_bs_held -vvv -o LogFile="$T/log" vm1 "$TARGET_PORT"
expect_eq $RC 0 "status"
expect_eq "$(wc -c <"$T/out")" 100000 "tunnel bytes"
expect_empty "$T/err" "stderr with a LogFile"
expect_match "$T/log" 'debug3: ' "debug3 lines in the LogFile"
run_bs_held -vvv vm1 "$TARGET_PORT"
for f in "$T/log" "$T/err"; do
	expect_no_match "$f" "$SECRET" "client secret in $f"
	# Tokens are long runs of URL-safe characters; nothing logged is.
	expect_no_match "$f" '[A-Za-z0-9_.~%-]{120,}' "token-like text in $f"
	expect_no_match "$f" 'aztoken=|client_secret=' "form bodies in $f"
done
expect_match "$T/err" '<authToken>' "the DELETE is logged with its token masked"

# ps shows nothing secret: the secret only ever comes from the environment.
run_bs_held vm1 "$TARGET_PORT" &
client=$!
sleep 0.3
pgrep -a bastion-stdio >"$T/ps" || true
wait $client
expect_no_match "$T/ps" "$SECRET" "secret in argv"
expect_no_sessions
target_stop
