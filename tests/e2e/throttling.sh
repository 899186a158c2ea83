# Throttling and a refused token: 429 with Retry-After from the Bastion
# and from ARM is waited for within ConnectTimeout, a wait beyond it
# fails at once with the wait named, and a 401 to a cached token gets a
# new token once.

target_start send 100

emu_faults '{"token_status": {"status": 429, "body": {"message": "Too many requests"}, "headers": {"Retry-After": "1"}, "count": 2}}'
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 0 "status after two 429s"
expect_eq "$(emu_counter tokens_post)" 3 "session requests after two 429s"
emu_reset

emu_faults '{"token_status": {"status": 429, "body": {"message": "Too many requests"}, "headers": {"Retry-After": "120"}}}'
t0=$(now_ms)
run_bs_held vm1 "$TARGET_PORT"
elapsed=$(($(now_ms) - t0))
expect_eq $RC 5 "status when asked to wait 120 s"
expect_match "$T/err" '429 Too many requests \(it asks to wait 120 s\)' \
    "message when asked to wait too long"
[ "$elapsed" -lt 3000 ] || fail "waited $elapsed ms for a wait it cannot make"
expect_eq "$(emu_counter tokens_post)" 1 "session requests when asked to wait"
emu_reset

emu_faults '{"arm_status": {"status": 429, "body": {"error": {"code": "TooManyRequests", "message": "slow down"}}, "headers": {"Retry-After": "1"}, "count": 1}}'
rm -rf "$T/cache"
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 0 "status after an ARM 429"
expect_empty "$T/err" "stderr after an ARM 429"
emu_reset

# The Bastion refuses the cached token: one new token, one more try.
run_bs_held vm1 "$TARGET_PORT"	# caches a token
entra=$(emu_counter entra)
emu_faults '{"token_status": {"status": 401, "body": {"message": "Access denied"}, "count": 1}}'
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 0 "status after a 401 to a cached token"
expect_eq "$(emu_counter entra)" $((entra + 1)) "new tokens after a 401"
emu_faults '{"token_status": {"status": 401, "body": {"message": "Access denied"}}}'
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 4 "status when every token is refused"
expect_eq "$(emu_counter entra)" $((entra + 2)) "no loop of new tokens"
expect_no_sessions
target_stop
