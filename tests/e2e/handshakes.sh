# Upgrade answers that are not a WebSocket handshake, and a close right
# after one: the message says what the Bastion did.

target_start send 1000 hold
for mode in no_upgrade_headers no_accept bad_accept; do
	emu_faults "{\"ws_after_101\": \"$mode\"}"
	run_bs_held vm1 "$TARGET_PORT"
	expect_eq $RC 7 "status for $mode"
	expect_match "$T/err" 'answered 101 without a valid WebSocket handshake \(libwebsockets: HS: .*\) \(attempt 3 of 3\)' \
	    "message for $mode"
done
emu_faults '{"ws_after_101": null}'

# A policy close straight after the handshake: code and reason.
emu_faults '{"close_after_bytes": 0, "close_code": 1008, "close_reason": "policy"}'
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 1 "status for a close 1008"
expect_match "$T/err" 'Bastion closed the tunnel with code 1008: policy' \
    "close 1008 message"
expect_no_sessions
target_stop
