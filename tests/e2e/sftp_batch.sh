# sftp in batch mode: put, get and ls through the tunnel.

head -c 1000000 /dev/urandom >"$T/f"
printf 'put %s %s\nget %s %s\nls %s\n' "$T/f" "$T/f.remote" \
    "$T/f.remote" "$T/f.back" "$T" >"$T/batch"
sftp -q -F "$W/ssh_config" -b "$T/batch" vm1 >"$T/out" 2>"$T/err"
expect_eq $? 0 "sftp status"
cmp -s "$T/f" "$T/f.back" || fail "file differs after sftp round trip"
expect_match "$T/out" "f.remote" "sftp ls"
expect_no_sessions
