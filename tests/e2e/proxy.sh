# HTTPS_PROXY and friends apply to every leg, REST and WebSocket alike,
# through HTTP CONNECT; NO_PROXY is honoured; a proxy's own 407 or 403 is
# reported as the proxy's.

proxy_start() {	# mode
	rm -f "$T/proxy.port" "$T/proxy.log"
	touch "$T/proxy.log"
	$PY "$TOP/tests/lib/connect_proxy.py" "$T/proxy.port" "$T/proxy.log" \
	    "$1" &
	PROXY_PID=$!
	wait_for 50 test -s "$T/proxy.port"
	PROXY=127.0.0.1:$(cat "$T/proxy.port")
}
proxy_stop() { kill $PROXY_PID; wait $PROXY_PID 2>/dev/null; }

target_start send 20000

# Every leg goes through the proxy, with either spelling of the variable.
for var in HTTPS_PROXY https_proxy; do
	proxy_start open
	env $var=http://$PROXY "$BIN" -F "$W/bastion.conf" vm1 "$TARGET_PORT" \
	    < <(sleep 2) >"$T/out" 2>"$T/err"
	expect_eq $? 0 "status through the proxy ($var)"
	expect_eq "$(wc -c <"$T/out")" 20000 "bytes through the proxy ($var)"
	expect_match "$T/proxy.log" "^CONNECT localhost:$EMU_PORT" "proxy log ($var)"
	# the REST calls share one connection, the WebSocket has its own,
	# and the DELETE a fresh one
	expect_eq "$(grep -c CONNECT "$T/proxy.log")" 3 "CONNECTs ($var)"
	proxy_stop
	rm -rf "$T/cache"
done

# NO_PROXY names the host: no leg uses the proxy.
proxy_start open
HTTPS_PROXY=http://$PROXY NO_PROXY=example.invalid,localhost \
    run_bs vm1 "$TARGET_PORT" < <(sleep 1)
expect_eq $RC 0 "status with NO_PROXY"
expect_empty "$T/proxy.log" "proxy log with NO_PROXY"
proxy_stop
rm -rf "$T/cache"

# Credentials in the variable reach the proxy on both legs.
proxy_start auth:alice:s3cret
HTTPS_PROXY=http://alice:s3cret@$PROXY run_bs vm1 "$TARGET_PORT" \
    < <(sleep 1)
expect_eq $RC 0 "status through an authenticating proxy"
expect_eq "$(wc -c <"$T/out")" 20000 "bytes through an authenticating proxy"
expect_no_match "$T/err" 's3cret' "proxy password in messages"
rm -rf "$T/cache"

# Without them: the proxy's 407, named as the proxy's.
HTTPS_PROXY=http://$PROXY run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 6 "status for a 407"
expect_match "$T/err" "proxy 127.0.0.1:[0-9]+ \\(from HTTPS_PROXY\\) refused the connection: HTTP 407" \
    "407 message"
expect_no_match "$T/err" 'Entra|ARM|Bastion .* refused' "blame on Azure"
proxy_stop

proxy_start deny
HTTPS_PROXY=http://$PROXY run_bs vm1 "$TARGET_PORT" </dev/null
expect_eq $RC 6 "status for a proxy's 403"
expect_match "$T/err" "proxy .* refused the connection: HTTP 403" "403 message"
proxy_stop
expect_no_sessions
target_stop
