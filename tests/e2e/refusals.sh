# What the Bastion's SKU and flags rule out is refused before any session
# is asked for, with the setting to change; a missing flag is not a no.

check_refusal() {	# settings host regex
	emu_bastion "$1"
	run_bs "$2" 22 </dev/null
	expect_eq $RC 5 "exit status for $1"
	expect_match "$T/err" "$3" "message for $1"
	expect_eq "$(wc -l <"$T/err")" 1 "one line for $1"
	expect_empty "$T/out" "stdout for $1"
}

check_refusal '{"sku": "Basic", "enableTunneling": true}' vm1 \
    'Basic SKU.*Standard or Premium'
check_refusal '{"sku": "Standard", "enableTunneling": false}' vm1 \
    'native client support turned off.*enableTunneling'
check_refusal '{"sku": "Premium", "enableIpConnect": false}' 10.0.0.4 \
    'IP-based connection turned off.*enableIpConnect'
emu GET /_emu/requests >"$T/requests"
expect_no_match "$T/requests" '/api/tokens' "session requests after refusals"

# No enableTunneling or SKU in the answer: the data plane decides.
target_start echo
emu_bastion '{"absent": ["enableTunneling", "sku", "enableIpConnect"]}'
run_bs vm1 "$TARGET_PORT" < <(echo hello)
expect_eq $RC 0 "exit status with flags absent"
expect_empty "$T/err" "stderr with flags absent"
target_stop

# And when the data plane says no, its own words are shown.
emu_bastion '{"enableTunneling": true}'
emu_faults '{"token_status": {"status": 400, "body": {"message": "Tunneling is disabled"}}}'
run_bs vm1 22 </dev/null
expect_eq $RC 5 "exit status for a data-plane refusal"
expect_match "$T/err" 'refused a session.*400 Tunneling is disabled' \
    "data-plane message"
expect_no_sessions
