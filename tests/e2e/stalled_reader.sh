# A consumer that stops reading for a while: nothing is lost, and the
# relay's memory stays flat (the Bastion is told to wait, through TCP).

size=$((200 * 1024 * 1024))
target_start send $size
mkfifo "$T/stdin"
sleep 60 >"$T/stdin" &
holder=$!
"$BIN" -F "$W/bastion.conf" vm1 "$TARGET_PORT" <"$T/stdin" 2>"$T/err" |
    $PY -c 'import hashlib, sys, time
h, n, f = hashlib.sha256(), 0, sys.stdin.buffer
first = f.read(1 << 20); h.update(first); n += len(first)
time.sleep(15)
while True:
    d = f.read(1 << 16)
    if not d:
        break
    h.update(d); n += len(d)
print(n, h.hexdigest())' >"$T/result" &
reader=$!
wait_for 50 pgrep -f "bastion-stdio -F $W/bastion.conf vm1 $TARGET_PORT" >/dev/null
pid=$(pgrep -f "bastion-stdio -F $W/bastion.conf vm1 $TARGET_PORT" | head -1)
peak=0
while kill -0 "$pid" 2>/dev/null; do
	kb=$(awk '/VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null)
	[ -n "$kb" ] && [ "$kb" -gt "$peak" ] && peak=$kb
	sleep 0.5
done
wait $reader
kill $holder 2>/dev/null
expected="$size $($PY "$TOP/tests/lib/tcp_target.py" - pattern $size | sha256sum | cut -d' ' -f1)"
expect_eq "$(cat "$T/result")" "$expected" "bytes after a stall"
echo "# peak RSS with a stalled reader: $peak KiB"
# a sanitizer's shadow memory and quarantine say nothing about ours
if [ -z "${SANITIZED:-}" ] && ! { [ "$peak" -gt 0 ] && [ "$peak" -lt 16384 ]; }
then
	fail "peak RSS $peak KiB"
fi
expect_empty "$T/err" "stderr"
expect_no_sessions
target_stop
