# rsync -a of a directory tree over ssh, then an incremental run.

mkdir -p "$T/src/a/b" "$T/src/c"
for i in $(seq 1 40); do
	head -c $((RANDOM * 17)) /dev/urandom >"$T/src/a/f$i"
done
head -c 3000000 /dev/urandom >"$T/src/a/b/big"
ln -s ../a/f1 "$T/src/c/link"
chmod 750 "$T/src/c"
rsync -a -e "ssh -F $W/ssh_config" "$T/src/" "vm1:$T/dst/" 2>"$T/err"
expect_eq $? 0 "rsync status"
diff -r "$T/src" "$T/dst" >"$T/diff" 2>&1
expect_eq $? 0 "trees differ: $(head -c 300 "$T/diff")"
expect_eq "$(stat -c %a "$T/dst/c")" 750 "mode kept"
expect_eq "$(readlink "$T/dst/c/link")" ../a/f1 "symlink kept"

echo changed >>"$T/src/a/f3"
rsync -a -e "ssh -F $W/ssh_config" "$T/src/" "vm1:$T/dst/" 2>>"$T/err"
expect_eq $? 0 "second rsync status"
cmp -s "$T/src/a/f3" "$T/dst/a/f3" || fail "incremental change not copied"
expect_empty "$T/err" "rsync stderr"
expect_no_sessions
