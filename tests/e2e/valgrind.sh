# The main path under valgrind: no invalid access and no leak, for an
# ssh session, for a tunnel the Bastion closes, for a connection with
# nothing configured (the VM and the Bastion found), and config-ssh.

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

hub_world
zero_conf "$T/zero.conf"
rm -rf "$T/cache"
sleep 30 >"$T/stdin" &
holder=$!
$VG --log-file="$T/vg3" "$BIN" -F "$T/zero.conf" 10.1.0.4 "$TARGET_PORT" \
    <"$T/stdin" >"$T/out" 2>"$T/err"
expect_eq $? 0 "status under valgrind, nothing configured"
kill $holder
expect_eq "$(wc -c <"$T/out")" 300000 "bytes under valgrind, nothing set"
expect_empty "$T/vg3" "valgrind report, nothing configured"
$VG --log-file="$T/vg4" "$BIN" config-ssh -F "$T/zero.conf" >"$T/out" \
    2>"$T/err"
expect_eq $? 0 "config-ssh status under valgrind"
expect_empty "$T/vg4" "valgrind report, config-ssh"
expect_no_sessions
target_stop
