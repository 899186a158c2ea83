# 1 GiB each way, byte for byte: down through random server frame splits,
# text frames, continuation frames and pings inside fragmented messages;
# up in single frames.

size=$((1024 * 1024 * 1024))
pattern_sum=$($PY "$TOP/tests/lib/tcp_target.py" - pattern $size | sha256sum | cut -d' ' -f1)

emu_faults '{"split_frames": true, "server_ping_interval_s": 1}'
target_start send $size
run_bs_held vm1 "$TARGET_PORT" 
expect_eq $RC 0 "status down"
expect_empty "$T/err" "stderr down"
expect_eq "$(stat -c %s "$T/out")" $size "bytes down"
expect_eq "$(sha256sum <"$T/out" | cut -d' ' -f1)" "$pattern_sum" "hash down"
rm -f "$T/out"
target_stop
emu_faults '{"split_frames": null, "server_ping_interval_s": null}'

target_start sink "$T/sink"
run_bs vm1 "$TARGET_PORT" < <($PY "$TOP/tests/lib/tcp_target.py" - pattern $size)
expect_eq $RC 0 "status up"
wait_for 100 test -s "$T/sink"
expect_eq "$(cat "$T/sink")" "$size $pattern_sum" "bytes up"
expect_no_sessions
target_stop
