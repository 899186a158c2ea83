# bastion-stdio doctor: one line per step, a mark for each, the status 0
# only when all pass, and no tunnel and no token shown.

"$BIN" doctor -F "$W/bastion.conf" vm1 22 >"$T/out" 2>"$T/err"
expect_eq $? 0 "doctor status"
for s in config settings credential arm sku target session; do
	expect_match "$T/out" "^\\[ok\\] +$s " "doctor step $s"
done
expect_match "$T/out" "files: $W/bastion.conf; Host lines: $W/bastion.conf line 2" \
    "which file and Host block applied"
expect_match "$T/out" 'credential +from environment; ' "credential source"
expect_match "$T/out" 'SKU Standard, tunneling on' "Bastion flags"
expect_empty "$T/err" "doctor stderr"
expect_no_match "$T/out" '[A-Za-z0-9_.~%-]{120,}' "token-like text"
expect_no_sessions

# A step that fails: its mark, the status, and the steps after it skipped.
emu_bastion '{"sku": "Basic"}'
"$BIN" doctor -F "$W/bastion.conf" vm1 22 >"$T/out" 2>"$T/err"
expect_eq $? 5 "doctor status with a Basic Bastion"
expect_match "$T/out" '^\[FAIL\] sku ' "failed step"
expect_match "$T/err" 'Basic SKU' "why, on stderr"
expect_no_match "$T/out" 'session' "steps after a failure"

# Without HOST: the settings, the credential and the Bastion only.
emu_bastion '{"sku": "Standard"}'
"$BIN" doctor -F "$W/bastion.conf" >"$T/out" 2>"$T/err"
expect_eq $? 0 "doctor status without HOST"
expect_match "$T/out" '^\[ok\] +arm ' "ARM step without HOST"
expect_no_match "$T/out" 'session' "session step without HOST"
