# scp of a 64 MiB random file to the VM and back, byte for byte.

head -c $((64 * 1024 * 1024)) /dev/urandom >"$T/big"
scp -q -F "$W/ssh_config" "$T/big" "vm1:$T/big.remote" 2>"$T/err"
expect_eq $? 0 "scp upload status"
scp -q -F "$W/ssh_config" "vm1:$T/big.remote" "$T/big.back" 2>>"$T/err"
expect_eq $? 0 "scp download status"
expect_empty "$T/err" "scp stderr"
sum() { sha256sum <"$1" | cut -d' ' -f1; }
expect_eq "$(sum "$T/big.remote")" "$(sum "$T/big")" "uploaded hash"
expect_eq "$(sum "$T/big.back")" "$(sum "$T/big")" "downloaded hash"
expect_no_sessions
rm -f "$T/big" "$T/big.remote" "$T/big.back"
