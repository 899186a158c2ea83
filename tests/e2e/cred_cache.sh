# The token cache: fifty connections started at once make one Entra
# request between them; a warm cache makes none; a token near expiry is
# refreshed; a corrupt cache entry does not break a connection.

target_start send 1000
pids=
for i in $(seq 1 50); do
	"$BIN" -F "$W/bastion.conf" vm1 "$TARGET_PORT" </dev/null \
	    >"$T/out.$i" 2>"$T/err.$i" &
	pids="$pids $!"
done
bad=0
for p in $pids; do
	wait $p || bad=$((bad + 1))
done
expect_eq $bad 0 "processes that failed"
cat "$T"/err.* >"$T/err.all"
expect_empty "$T/err.all" "stderr of fifty processes"
expect_eq "$(emu_counter entra)" 1 "Entra requests for fifty processes"
expect_no_sessions
# each deleted exactly its own: fifty 204s, no 404 (someone else's)
expect_eq "$(emu GET /_emu/requests | $PY -c 'import json,sys
d = [r["status"] for r in json.load(sys.stdin) if r["method"] == "DELETE"]
print(d.count(204), d.count(404))')" "50 0" "DELETEs of fifty processes"

# Warm: no Entra request at all.
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with a warm cache"
expect_eq "$(emu_counter entra)" 1 "Entra requests with a warm cache"

# The cache is private, and holds the only copy of the token on disk.
expect_eq "$(stat -c %a "$T/cache/bastion-stdio")" 700 "cache dir mode"
for f in "$T"/cache/bastion-stdio/*; do
	expect_eq "$(stat -c %a "$f")" 600 "mode of $f"
done
grep -rl "$SECRET" "$T" >"$T/secret-files" 2>/dev/null
expect_empty "$T/secret-files" "files holding the client secret"

# Corrupt every entry: a warning, a fresh token, and the connection works.
for f in "$T"/cache/bastion-stdio/*; do
	case $f in *.lock) ;; *) echo '{not json' >"$f" ;; esac
done
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with a corrupt cache"
expect_match "$T/err" 'warning: ignoring a corrupt token cache entry' \
    "corrupt cache warning"
expect_eq "$(emu_counter entra)" 2 "Entra requests after corruption"

# A cache directory others may enter is not used: one warning, however
# many entries the connection would have read or written.
chmod 755 "$T/cache/bastion-stdio"
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with an open cache directory"
expect_eq "$(grep -c 'warning: ignoring cache' "$T/err")" 1 \
    "warnings for an open cache directory"
chmod 700 "$T/cache/bastion-stdio"

# Tokens that live less than the refresh margin are fetched every time.
emu POST /_emu/config -H 'Content-Type: application/json' \
    -d '{"token_lifetime_s": 200}' >/dev/null
rm -rf "$T/cache"
run_bs vm1 "$TARGET_PORT" </dev/null
run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 0 "status with short-lived tokens"
expect_eq "$(emu_counter entra)" 5 \
    "Entra requests for short-lived tokens (one was uncached above)"
expect_no_sessions
target_stop
