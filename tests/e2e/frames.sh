# Framing: data goes up in single binary frames of at most FrameSize
# (4096 by default), and whatever the Bastion sends (any size, text,
# fragments, pings between fragments) comes out as the same bytes.

size=$((5 * 1024 * 1024))
expected="$size $($PY "$TOP/tests/lib/tcp_target.py" - pattern $size | sha256sum | cut -d' ' -f1)"

# Up: the backend closes on any client frame above 4096 bytes here.
emu_faults '{"max_client_frame": 4096}'
target_start sink "$T/sink"
run_bs vm1 "$TARGET_PORT" < <($PY "$TOP/tests/lib/tcp_target.py" - pattern $size)
expect_eq $RC 0 "status with 4096-byte frames"
wait_for 50 test -s "$T/sink"
expect_eq "$(cat "$T/sink")" "$expected" "bytes up"
target_stop

# A larger FrameSize is used when asked for, and the backend's close of
# an oversized frame ends the tunnel with the code named.
target_start sink "$T/sink2"
run_bs -o FrameSize=8192 vm1 "$TARGET_PORT" < <($PY "$TOP/tests/lib/tcp_target.py" - pattern $size)
expect_eq $RC 1 "status when the backend closes on a big frame"
expect_match "$T/err" 'closed the tunnel with code 1009' "close code"
target_stop
emu_faults '{"max_client_frame": null}'

# Down: random frame splits, text frames, fragments with pings inside.
emu_faults '{"split_frames": true}'
target_start send $size
run_bs_held vm1 "$TARGET_PORT"
expect_eq $RC 0 "status with split frames"
expect_eq "$(wc -c <"$T/out") $(sha256sum <"$T/out" | cut -d' ' -f1)" \
    "$expected" "bytes down"
expect_empty "$T/err" "stderr"
expect_no_sessions
target_stop

# A frame in the same TLS record as the 101 is read by libwebsockets
# along with it; then lws keeps parsing (tunnel_ws.c cannot take its
# bytes over), and the stream is the same.
emu_faults '{"ws_after_101": "with_frame", "split_frames": true}'
target_start send $size
run_bs_held -o LogLevel=DEBUG vm1 "$TARGET_PORT"
expect_eq $RC 0 "status with a frame after the 101"
expect_eq "$(head -n 1 "$T/out")" early "the frame after the 101"
expect_eq "$(tail -c +7 "$T/out" | wc -c) $(tail -c +7 "$T/out" |
    sha256sum | cut -d' ' -f1)" "$expected" "bytes down after it"
expect_match "$T/err" 'frames came with the 101' "lws parses them"
target_stop
emu_faults '{"ws_after_101": null, "split_frames": null}'
