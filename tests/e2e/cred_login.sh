# bastion-stdio login (the device-code flow), connections that use the
# sign-in, logout; and the device-code flow inside a ProxyCommand, only
# with DeviceCode yes.

target_start send 1000
no_credentials

# Approves (or denies) the pending device-code flow, as the user would.
user_signs_in() {	# approve|deny
	local code
	wait_for 50 emu_pending_code || { fail "no device-code flow"; return; }
	code=$(emu_pending_code)
	emu POST /_emu/devicecode/$1 -H 'Content-Type: application/json' \
	    -d "{\"user_code\": \"$code\", \"user\": \"$USER_UPN\"}" >/dev/null
	echo "$code"
}
emu_pending_code() {
	emu GET /_emu/devicecode | $PY -c 'import json,sys
f = [x for x in json.load(sys.stdin)["flows"] if x.get("state") in (None, "pending")]
print(f[-1]["user_code"]) if f else sys.exit(1)'
}

"$BIN" login -F "$W/bastion.conf" -o Tenant=$TENANT >"$T/out" 2>"$T/err" &
pid=$!
code=$(user_signs_in approve)
wait $pid
expect_eq $? 0 "login status"
expect_match "$T/err" "$code" "the code the user must type, on stderr"
expect_match "$T/err" 'signed in' "login's last words"
expect_empty "$T/out" "login stdout"
expect_eq "$(issued device_code)" 1 "device-code tokens"

# Connections now use the sign-in's refresh token.
rm -f "$T"/cache/bastion-stdio/[0-9a-f]*
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with the sign-in"
expect_empty "$T/err" "stderr with the sign-in"
expect_eq "$(issued refresh_token)" 1 "refresh-token redemptions"
grep -rl "$USER_RT" "$T/cache" >/dev/null 2>&1 &&
    fail "the Azure CLI's refresh token reached our cache"

"$BIN" logout
expect_eq $? 0 "logout status"
expect_eq "$(ls "$T/cache/bastion-stdio" | wc -l)" 0 "cache after logout"
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 4 "status after logout"

# A refused sign-in.
"$BIN" login -F "$W/bastion.conf" -o Tenant=$TENANT >"$T/out" 2>"$T/err" &
pid=$!
user_signs_in deny >/dev/null
wait $pid
expect_eq $? 4 "status of a declined login"
expect_match "$T/err" 'device-code sign-in failed: AADSTS' "declined message"

# Inside a ProxyCommand the flow runs only when asked for.
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 4 "status without DeviceCode"
run_bs_held -o DeviceCode=yes -o Tenant=$TENANT vm1 "$TARGET_PORT" &
client=$!
user_signs_in approve >/dev/null
wait $client
expect_eq "$(cat "$T/out" | wc -c)" 1000 "bytes after an in-band sign-in"
expect_no_sessions
target_stop
