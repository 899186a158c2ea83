#!/bin/bash
# selftest.sh - check tests/emulator/azure_emu.py on its own, with the curl
# CLI, /usr/bin/python3 and python3-websocket (ws_check.py), against a
# throw-away Python echo server on loopback. One line per check, then
# "N passed, N failed"; exit status 1 if anything failed.
set -u

PY=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/emu-selftest.XXXXXX")
EMU_PID= ECHO_PID=

cleanup() {
	for p in $EMU_PID $ECHO_PID; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

pass=0 fail=0
# check NAME CMD...: run CMD in this shell (so it may set variables), one
# result line; on failure show the last lines CMD printed.
check() {
	local name=$1
	shift
	if "$@" >"$T/out" 2>&1; then
		pass=$((pass + 1))
		printf 'ok   %s%s\n' "$name" "$(detail)"
	else
		fail=$((fail + 1))
		printf 'FAIL %s%s\n' "$name" "$(detail)"
	fi
}
detail() {
	[ -s "$T/out" ] && printf ' (%s)' "$(tail -n 3 "$T/out" | tr '\n' ' ' |
		sed 's/ *$//' | cut -c1-160)"
}

# wait_file FILE: up to 5 s for a port file to appear.
wait_file() {
	local i
	for i in $(seq 50); do
		[ -s "$1" ] && return 0
		sleep 0.1
	done
	echo "no $1 after 5 s"
	return 1
}

# req METHOD PATH [curl args]: print the HTTP status; body in $T/body.
req() {
	local m=$1 p=$2
	shift 2
	curl -s -o "$T/body" -w '%{http_code}' --cacert "$T/ca/ca.pem" \
		-X "$m" "https://localhost:$PORT$p" "$@"
}

# expect STATUS METHOD PATH [curl args]
expect() {
	local want=$1 got
	shift
	got=$(req "$@")
	if [ "$got" != "$want" ]; then
		echo "HTTP $got, wanted $want: $(head -c 200 "$T/body")"
		return 1
	fi
}

# body EXPR: evaluate a Python expression over the JSON body as d.
body() {
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
		"$T/body" "$1"
}

# assert EXPR: Python expression over the JSON body must be true.
assert() {
	[ "$(body "bool($1)")" = True ] && return 0
	echo "not true: $1; body: $(head -c 200 "$T/body")"
	return 1
}

TENANT=72f988bf-86f1-41af-91ab-2d7cd011db47
CLIENT=0c3a4d2e-1111-4f5e-9c1a-3b2e5d6f7a8b
SECRET='s3cr3t~value'
SUB=00000000-1111-2222-3333-444444444444
BASTION=/subscriptions/$SUB/resourceGroups/rg-hub/providers/Microsoft.Network/bastionHosts/bh1
DEVBASTION=/subscriptions/$SUB/resourceGroups/rg-hub/providers/Microsoft.Network/bastionHosts/bh-dev
VM=/subscriptions/$SUB/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm1
HOSTCONNECT=/subscriptions/$SUB/resourceGroups/rg-hub/providers/Microsoft.Network/bh-hostConnect/10.0.0.4
ARMQ='api-version=2024-01-01'

# ---------------------------------------------------------------- setup

t_mkca() {
	local t0 t1
	t0=$(date +%s%N)
	sh "$root/tests/lib/mkca.sh" "$T/ca" || return 1
	t1=$(date +%s%N)
	for c in server expired wrongname; do
		openssl verify -CAfile "$T/ca/ca.pem" "$T/ca/$c.pem" >/dev/null 2>&1 ||
			[ $c = expired ] || { echo "$c.pem does not verify"; return 1; }
	done
	openssl x509 -in "$T/ca/expired.pem" -noout -checkend 0 >/dev/null &&
		{ echo "expired.pem is not expired"; return 1; }
	openssl x509 -in "$T/ca/wrongname.pem" -noout -ext subjectAltName |
		grep -q 'DNS:wrong.example' || return 1
	echo "$(((t1 - t0) / 1000000)) ms"
}

start_echo() {
	cat >"$T/echo.py" <<'EOF'
import asyncio, os, sys
async def echo(r, w):
    try:
        while data := await r.read(262144):
            w.write(data)
            await w.drain()
    except OSError:
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(echo, "127.0.0.1", 0)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(srv.sockets[0].getsockname()[1]))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    await srv.serve_forever()
asyncio.run(main())
EOF
	$PY "$T/echo.py" "$T/echo.port" &
	ECHO_PID=$!
	wait_file "$T/echo.port" && ECHO_PORT=$(cat "$T/echo.port")
}

start_emu() {
	cat >"$T/emu.json" <<EOF
{"tenants": {"$TENANT": {"clients": {"$CLIENT": {"secret": "$SECRET"}}}},
 "bastions": {
   "$BASTION": {"sku": "Standard", "enableTunneling": true,
                "enableIpConnect": false},
   "$DEVBASTION": {"sku": "Developer", "absent": ["enableIpConnect"]}},
 "vms": {"$VM": {"ip": "127.0.0.1", "port_map": {"22": $ECHO_PORT}}}}
EOF
	$PY "$here/azure_emu.py" --cert "$T/ca/server.pem" \
		--key "$T/ca/server.key" --config "$T/emu.json" \
		--port-file "$T/emu.port" 2>"$T/emu.err" &
	EMU_PID=$!
	wait_file "$T/emu.port" || { cat "$T/emu.err"; return 1; }
	PORT=$(cat "$T/emu.port")
	echo "port $PORT"
}

# ---------------------------------------------------------------- Entra

entra() {
	local status=$1 secret=$2 scope=$3 client=${4:-$CLIENT} tenant=${5:-$TENANT}
	expect "$status" POST "/$tenant/oauth2/v2.0/token" \
		-d grant_type=client_credentials --data-urlencode "client_id=$client" \
		--data-urlencode "client_secret=$secret" --data-urlencode "scope=$scope"
}

t_token() {
	entra 200 "$SECRET" 'https://management.core.windows.net//.default' || return 1
	TOKEN=$(body 'd["access_token"]')
	assert 'd["token_type"] == "Bearer" and d["expires_in"] == 3599' || return 1
	printf '%s' "$TOKEN" | grep -Eq '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' ||
		{ echo "token is not JWT-shaped"; return 1; }
	[ ${#TOKEN} -ge 1000 ] || { echo "token only ${#TOKEN} chars"; return 1; }
	echo "${#TOKEN} chars"
}

t_token_azure_scope() {
	entra 200 "$SECRET" 'https://management.azure.com/.default'
}

t_entra_error() { # STATUS AADSTS-CODE ERROR entra-args...
	local status=$1 code=$2 error=$3
	shift 3
	entra "$status" "$@" || return 1
	assert "d['error'] == '$error' and d['error_codes'] == [$code]" &&
		assert "d['error_description'].startswith('AADSTS$code:')" &&
		assert "all(k in d for k in ('timestamp', 'trace_id', 'correlation_id'))"
}

# ---------------------------------------------------------------- ARM

arm() { # STATUS PATH [curl args]
	local status=$1 path=$2
	shift 2
	expect "$status" GET "$path" "$@"
}

t_arm_bastion() {
	arm 200 "$BASTION?$ARMQ" -H "Authorization: Bearer $TOKEN" || return 1
	assert "d['id'] == '$BASTION' and d['name'] == 'bh1'" &&
		assert "d['properties']['dnsName'] == 'localhost:$PORT'" &&
		assert "d['sku']['name'] == 'Standard'" &&
		assert "d['properties']['enableTunneling'] is True" &&
		assert "d['properties']['enableIpConnect'] is False" &&
		assert "d['properties']['scaleUnits'] == 2"
}

t_arm_case() {
	local mixed
	mixed=$(printf '%s' "$BASTION" | sed 's/resourceGroups/RESOURCEGROUPS/; s/Microsoft.Network/microsoft.network/; s/bh1/BH1/')
	arm 200 "$mixed?$ARMQ" -H "Authorization: Bearer $TOKEN"
}

t_arm_developer() {
	arm 200 "$DEVBASTION?$ARMQ" -H "Authorization: Bearer $TOKEN" || return 1
	assert "d['sku']['name'] == 'Developer'" &&
		assert "'enableTunneling' not in d['properties']" &&
		assert "'enableIpConnect' not in d['properties']" &&
		assert "'virtualNetwork' in d['properties']"
}

t_arm_noauth() {
	arm 401 "$BASTION?$ARMQ" || return 1
	assert "d['error']['code'] == 'InvalidAuthenticationToken'" || return 1
	arm 401 "$BASTION?$ARMQ" -H "Authorization: Bearer not-issued"
}

t_arm_noversion() {
	arm 400 "$BASTION" -H "Authorization: Bearer $TOKEN" &&
		assert "d['error']['code'] == 'MissingApiVersionParameter'"
}

t_arm_unknown() {
	arm 404 "${BASTION%bh1}nope?$ARMQ" -H "Authorization: Bearer $TOKEN" &&
		assert "d['error']['code'] == 'ResourceNotFound'" &&
		assert "\"'Microsoft.Network/bastionHosts/nope' under resource group 'rg-hub'\" in d['error']['message']"
}

t_arm_vm() {
	arm 200 "$VM?$ARMQ" -H "Authorization: Bearer $TOKEN" &&
		assert "d['id'] == '$VM' and d['name'] == 'vm1'" &&
		assert "d['type'] == 'Microsoft.Compute/virtualMachines'"
}

# ---------------------------------------------------------------- tokens

# session [curl args]: POST /api/tokens for the VM on port 22 (port_map
# sends it to the echo server); sets AUTH, NODE, WS_URL.
session() {
	expect 200 POST /api/tokens --data-urlencode "resourceId=$VM" \
		-d protocol=tcptunnel -d workloadHostPort=22 \
		--data-urlencode "aztoken=$TOKEN" "$@" || return 1
	AUTH=$(body 'd["authToken"]')
	NODE=$(body 'd["nodeId"]')
	WS_URL="wss://localhost:$PORT/webtunnelv2/$(body 'd["websocketToken"]')?X-Node-Id=$NODE"
	ALL_AUTH="$ALL_AUTH $AUTH:$NODE"
}
ALL_AUTH=

t_tokens_ok() {
	session || return 1
	assert "d['username'] == '' and d['dataSource'] == '' and d['availableDataSources'] == []"
}

t_tokens_json() {
	expect 500 POST /api/tokens -H 'Content-Type: application/json' \
		-d "{\"resourceId\":\"$VM\",\"protocol\":\"tcptunnel\",\"workloadHostPort\":\"22\",\"aztoken\":\"$TOKEN\"}" &&
		assert "d == {'message': 'Unexpected internal error'}"
}

t_tokens_authz() {
	expect 500 POST /api/tokens -H "Authorization: Bearer $TOKEN" \
		--data-urlencode "resourceId=$VM" -d protocol=tcptunnel \
		-d workloadHostPort=22 --data-urlencode "aztoken=$TOKEN" &&
		assert "d == {'message': 'Unexpected internal error'}"
}

t_tokens_badtoken() {
	expect 401 POST /api/tokens --data-urlencode "resourceId=$VM" \
		-d protocol=tcptunnel -d workloadHostPort=22 -d aztoken=forged &&
		assert "d == {'message': 'Access denied'}"
}

t_tokens_ip_nohost() {
	expect 404 POST /api/tokens --data-urlencode "resourceId=$HOSTCONNECT" \
		-d protocol=tcptunnel -d workloadHostPort=22 \
		--data-urlencode "aztoken=$TOKEN" &&
		assert "d == {'message': 'Invalid IP address for connection.'}"
}

t_tokens_ip_disabled() {
	expect 403 POST /api/tokens --data-urlencode "resourceId=$HOSTCONNECT" \
		-d protocol=tcptunnel -d workloadHostPort=22 -d hostname=10.0.0.4 \
		--data-urlencode "aztoken=$TOKEN" &&
		assert "d == {'message': 'IP based connection is not enabled'}"
}

t_tokens_not_vm() {
	expect 500 POST /api/tokens \
		--data-urlencode "resourceId=/subscriptions/$SUB/resourceGroups/rg-app" \
		-d protocol=tcptunnel -d workloadHostPort=22 \
		--data-urlencode "aztoken=$TOKEN"
}

t_fault_token_503() {
	expect 200 POST /_emu/faults \
		-d '{"token_status": {"status": 503, "headers": {"Retry-After": "1"}, "count": 1}}' || return 1
	expect 503 POST /api/tokens --data-urlencode "resourceId=$VM" \
		-d protocol=tcptunnel -d workloadHostPort=22 \
		--data-urlencode "aztoken=$TOKEN" || return 1
	session
}

# ---------------------------------------------------------------- WS

ws() { $PY "$here/ws_check.py" "$1" "$WS_URL" "$T/ca/ca.pem" "${@:2}"; }

t_ws_echo() { session && ws echo 1; }
t_ws_bigframe() { session && ws bigframe; }
t_ws_cont() { session && ws cont; }
t_ws_ping() { session && ws ping; }
t_ws_noext() {
	session && ws noext || return 1
	expect 200 GET /_emu/requests &&
		assert "[r for r in d if r['role'] == 'ws'][-1]['headers']['Sec-WebSocket-Extensions'].startswith('permessage-deflate')" &&
		assert "[r for r in d if r['role'] == 'ws'][-1]['headers']['User-Agent'] == 'ws_check'" &&
		assert "all('<token>' in r['path'] for r in d if r['role'] == 'ws')"
}

t_ws_reuse() {
	session && ws ping >/dev/null && ws status 404
}

t_ws_wrong_node() {
	session || return 1
	WS_URL=${WS_URL%=*}=WRONGNODE
	ws status 404
}

t_ws_old_path() {
	session || return 1
	WS_URL=${WS_URL/webtunnelv2/webtunnel}
	ws status 404
}

t_ws_split() {
	expect 200 POST /_emu/faults -d '{"split_frames": true}' &&
		session && ws echo 1 &&
		expect 200 POST /_emu/faults -d '{"split_frames": null}'
}

t_ws_close_after() {
	expect 200 POST /_emu/faults -d '{"close_after_bytes": 5000}' &&
		session && ws closeafter 5000 &&
		expect 200 POST /_emu/faults -d '{"close_after_bytes": null}'
}

t_ws_http400() {
	expect 200 POST /_emu/faults -d '{"ws_after_101": "http400"}' &&
		session && ws http400 &&
		expect 200 POST /_emu/faults -d '{"ws_after_101": null}'
}

t_ws_status_fault() {
	expect 200 POST /_emu/faults -d '{"ws_status": {"status": 502, "count": 1}}' &&
		session && ws status 502 && ws ping
}

# ---------------------------------------------------------------- cleanup

t_delete() {
	expect 400 DELETE "/api/tokens/$AUTH" -H "X-Node-Id: WRONG" &&
		expect 204 DELETE "/api/tokens/$AUTH" -H "X-Node-Id: $NODE" &&
		expect 404 DELETE "/api/tokens/$AUTH" -H "X-Node-Id: $NODE" &&
		assert "d == {'message': 'Session already deleted'}"
}

t_sessions_state() {
	expect 200 GET /_emu/sessions &&
		assert "d['created'] == $(echo $ALL_AUTH | wc -w) and d['deleted'] == 1" &&
		assert "any(s['state'] == 'closed' and s['ws_close_code'] == 1009 for s in d['active'])" &&
		assert "any(s['state'] == 'closed' and s['ws_close_code'] == 1000 and s['ws_close_by'] == 'client' for s in d['active'])"
}

t_sessions_empty() {
	local pair
	for pair in $ALL_AUTH; do
		req DELETE "/api/tokens/${pair%%:*}" -H "X-Node-Id: ${pair#*:}" >/dev/null
	done
	expect 200 GET /_emu/sessions &&
		assert "d['active'] == [] and d['created'] == d['deleted']" || return 1
	expect 200 GET /_emu/counters &&
		assert "d['internal_errors'] == 0 and d['tls_failures'] == 0"
}

t_reset() {
	session && expect 200 POST /_emu/reset && expect 200 GET /_emu/sessions &&
		assert "d == {'active': [], 'created': 0, 'deleted': 0}"
}

t_sigterm() {
	local i
	kill -TERM "$EMU_PID"
	for i in $(seq 30); do
		kill -0 "$EMU_PID" 2>/dev/null || break
		sleep 0.1
	done
	wait "$EMU_PID"
	local rc=$?
	EMU_PID=
	[ $rc -eq 0 ] || { echo "exit status $rc"; return 1; }
	[ -s "$T/emu.err" ] && { echo "stderr not empty: $(head -c 200 "$T/emu.err")"; return 1; }
	return 0
}

# ---------------------------------------------------------------- run

check "mkca.sh makes CA, server, expired and wrongname certs" t_mkca
check "echo target starts" start_echo
check "emulator starts and writes its port file" start_emu
[ -n "${PORT:-}" ] || { echo "0 passed, $((fail + 1)) failed"; exit 1; }

check "entra: client credentials token" t_token
check "entra: management.azure.com scope accepted" t_token_azure_scope
check "entra: wrong secret -> 401 AADSTS7000215" t_entra_error 401 7000215 invalid_client wrong 'https://management.azure.com/.default'
check "entra: unknown client -> 400 AADSTS700016" t_entra_error 400 700016 unauthorized_client "$SECRET" 'https://management.azure.com/.default' nobody
check "entra: unknown tenant -> 400 AADSTS90002" t_entra_error 400 90002 invalid_request "$SECRET" 'https://management.azure.com/.default' "$CLIENT" other-tenant
check "entra: bad scope -> 400 AADSTS70011" t_entra_error 400 70011 invalid_scope "$SECRET" 'https://graph.microsoft.com/.default'

check "arm: bastion GET from the fixture" t_arm_bastion
check "arm: path segments case-insensitive" t_arm_case
check "arm: Developer SKU fixture, absent flags" t_arm_developer
check "arm: no/unknown token -> 401" t_arm_noauth
check "arm: no api-version -> 400" t_arm_noversion
check "arm: unknown bastion -> 404 ResourceNotFound" t_arm_unknown
check "arm: VM GET from the fixture" t_arm_vm

check "tokens: form POST -> 200 session" t_tokens_ok
check "tokens: JSON body -> 500" t_tokens_json
check "tokens: Authorization header -> 500" t_tokens_authz
check "tokens: unissued aztoken -> 401" t_tokens_badtoken
check "tokens: IP connect without hostname -> 404" t_tokens_ip_nohost
check "tokens: IP connect disabled -> 403" t_tokens_ip_disabled
check "tokens: non-VM resourceId -> 500" t_tokens_not_vm
check "faults: token_status 503 once, then 200" t_fault_token_503

check "ws: 1 MiB echo round trip, sha256" t_ws_echo
check "ws: 9000-byte client frame -> close 1009" t_ws_bigframe
check "ws: continuation (FIN=0) frame -> close 1002" t_ws_cont
check "ws: ping -> pong" t_ws_ping
check "ws: extensions never negotiated, headers logged" t_ws_noext
check "ws: websocketToken works once" t_ws_reuse
check "ws: wrong X-Node-Id -> 404" t_ws_wrong_node
check "ws: old /webtunnel/ path -> 404" t_ws_old_path
check "ws: split_frames echo (text, fragments, pings)" t_ws_split
check "ws: close_after_bytes -> N bytes then 1000" t_ws_close_after
check "ws: ws_after_101 http400" t_ws_http400
check "ws: ws_status 502 once, then 101" t_ws_status_fault

check "delete: wrong node 400, then 204, then 404" t_delete
check "sessions: closed sessions stay until DELETE" t_sessions_state
check "sessions: empty after deleting all, no internal errors" t_sessions_empty
check "reset: clears sessions" t_reset
check "SIGTERM: clean exit 0, quiet stderr" t_sigterm

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
