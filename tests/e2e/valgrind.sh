# The main path under valgrind: no invalid access and no leak, for an
# ssh session and for a tunnel the Bastion closes.

VG="valgrind -q --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99"
sed "s|ProxyCommand |ProxyCommand $(echo $VG) --log-file=$T/vg.%p |" \
    "$W/ssh_config" >"$T/ssh_config"
ssh -F "$T/ssh_config" vm1 'echo under-valgrind' >"$T/out" 2>"$T/err"
expect_eq $? 0 "ssh status"
expect_eq "$(cat "$T/out")" under-valgrind "ssh output"
for f in "$T"/vg.*; do
	expect_empty "$f" "valgrind report $f"
done

target_start send 300000
mkfifo "$T/stdin"
sleep 30 >"$T/stdin" &
holder=$!
$VG --log-file="$T/vg2" "$BIN" -F "$W/bastion.conf" vm1 "$TARGET_PORT" \
    <"$T/stdin" >"$T/out" 2>"$T/err"
expect_eq $? 0 "status under valgrind"
kill $holder
expect_eq "$(wc -c <"$T/out")" 300000 "bytes under valgrind"
expect_empty "$T/vg2" "valgrind report"
expect_no_sessions
target_stop
