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

# req METHOD PATH [curl args]: print the HTTP status; body in $T/body,
# headers in $T/hdrs. URL_BASE (default the HTTPS listener) may be set.
req() {
	local m=$1 p=$2
	shift 2
	curl -s -o "$T/body" -D "$T/hdrs" -w '%{http_code}' \
		--cacert "$T/ca/ca.pem" -X "$m" \
		"${URL_BASE:-https://localhost:$PORT}$p" "$@"
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
# Credential grants and managed identity
CERTCLIENT=5d1e0a7c-2222-4b3a-8c1d-9e8f7a6b5c4d
FEDCLIENT=8a7b6c5d-3333-4e2f-9a1b-0c9d8e7f6a5b
CLI=04b07795-8ddb-461a-bbee-02f9e1bf7b46
UPN=alice@contoso.example
ARM_SCOPE='https://management.core.windows.net//.default'
ARM_RES='https://management.core.windows.net/'
UA_CLIENT=6b5a4c3d-4444-4f1e-8d2c-1b0a9f8e7d6c
UA_OBJECT=3c2b1a0f-5555-4e9d-8c7b-6a5f4e3d2c1b
UA_RES=/subscriptions/$SUB/resourceGroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ua1
APPSVC_HEADER=idh-$RANDOM$RANDOM
# The world of Resource Graph: subscriptions, networks, more bastions and VMs
SUB2=55555555-6666-7777-8888-999999999999
SUB3=aaaaaaaa-0000-4000-8000-00000000000a    # no access for our principals
SUB4=bbbbbbbb-0000-4000-8000-00000000000b    # another tenant's
OTHER_TENANT=0f0f0f0f-0000-4000-8000-000000000001
NET=providers/Microsoft.Network
CMP=providers/Microsoft.Compute
VNET_HUB=/subscriptions/$SUB/resourceGroups/rg-hub/$NET/virtualNetworks/vnet-hub
VNET_APP=/subscriptions/$SUB/resourceGroups/rg-app/$NET/virtualNetworks/vnet-app
VNET_LONE=/subscriptions/$SUB/resourceGroups/rg-lone/$NET/virtualNetworks/vnet-lone
VNET_DEV=/subscriptions/$SUB/resourceGroups/rg-hub/$NET/virtualNetworks/vnet-dev
VNET_DB=/subscriptions/$SUB2/resourceGroups/rg-db/$NET/virtualNetworks/vnet-db
PREMBASTION=/subscriptions/$SUB2/resourceGroups/rg-db/$NET/bastionHosts/bh-prem
VMOFF=/subscriptions/$SUB/resourceGroups/rg-app/$CMP/virtualMachines/vm-off
VMFAIL=/subscriptions/$SUB/resourceGroups/rg-app/$CMP/virtualMachines/vm-broken
VMLONE=/subscriptions/$SUB/resourceGroups/rg-lone/$CMP/virtualMachines/vm-lone
VMDEV=/subscriptions/$SUB/resourceGroups/rg-hub/$CMP/virtualMachines/vm-dev
VMDB=/subscriptions/$SUB2/resourceGroups/rg-db/$CMP/virtualMachines/vm-db
TWIN1=/subscriptions/$SUB/resourceGroups/rg-a/$CMP/virtualMachines/twin
TWIN2=/subscriptions/$SUB2/resourceGroups/rg-b/$CMP/virtualMachines/twin
SSVM=/subscriptions/$SUB/resourceGroups/rg-app/$CMP/virtualMachineScaleSets/ss1/virtualMachines/3
VMSECRET=/subscriptions/$SUB3/resourceGroups/rg-s/$CMP/virtualMachines/secret
VMOTHER=/subscriptions/$SUB4/resourceGroups/rg-o/$CMP/virtualMachines/vm-other
PE_NIC=/subscriptions/$SUB/resourceGroups/rg-app/$NET/networkInterfaces/pe-nic

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

# Test certificates for the client assertion checks, made with the
# openssl CLI: sp (registered, key and certificate in one PEM file, as
# AZURE_CLIENT_CERTIFICATE_PATH has them) and other (not registered).
t_mkcert() {
	local c
	for c in sp other; do
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/$c.key" \
			-out "$T/$c.crt" -subj "/CN=emu-selftest-$c" -days 2 \
			2>/dev/null || { echo "openssl req failed for $c"; return 1; }
	done
	cat "$T/sp.key" "$T/sp.crt" >"$T/sp.pem"
	mkdir -m 700 "$T/arc"
	# jwt.py KEY CERT ALG THUMBS CLIENT AUD OVERRIDES: a client assertion
	# signed with openssl dgst. THUMBS: comma list of x5t, x5t_padded,
	# x5t_s256, x5t_s256_std. OVERRIDES: JSON merged into the claims;
	# "+N"/"-N" strings are now+N/now-N, null removes the claim.
	cat >"$T/jwt.py" <<'EOF'
import base64, hashlib, json, subprocess, sys, time, uuid
key, cert, alg, thumbs, client, aud, overrides = sys.argv[1:8]
def b64u(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
pem = open(cert).read().split("-----BEGIN CERTIFICATE-----")[1]
der = base64.b64decode("".join(pem.split("-----END")[0].split()))
sha1, sha256 = hashlib.sha1(der).digest(), hashlib.sha256(der).digest()
header = {"alg": alg, "typ": "JWT"}
for t in thumbs.split(","):
    if t == "x5t":
        header["x5t"] = b64u(sha1)
    elif t == "x5t_padded":
        header["x5t"] = base64.urlsafe_b64encode(sha1).decode()
    elif t == "x5t_s256":
        header["x5t#S256"] = b64u(sha256)
    elif t == "x5t_s256_std":
        header["x5t#S256"] = base64.b64encode(sha256).decode()
now = int(time.time())
claims = {"aud": aud, "iss": client, "sub": client,
          "jti": str(uuid.uuid4()), "nbf": now, "exp": now + 600}
for k, v in json.loads(overrides).items():
    if v is None:
        claims.pop(k, None)
    elif isinstance(v, str) and v[:1] in "+-" and v[1:].isdigit():
        claims[k] = now + int(v)
    else:
        claims[k] = v
signed = (b64u(json.dumps(header).encode()) + "."
          + b64u(json.dumps(claims).encode()))
cmd = ["openssl", "dgst", "-sha256", "-sign", key]
if alg == "PS256":
    cmd += ["-sigopt", "rsa_padding_mode:pss",
            "-sigopt", "rsa_pss_saltlen:32"]
sig = subprocess.run(cmd, input=signed.encode(), capture_output=True,
                     check=True).stdout
print(signed + "." + b64u(sig))
EOF
}

# fedtok ISS SUB: a Kubernetes-style service account token (not signed:
# the emulator compares federated tokens as strings).
fedtok() {
	$PY - "$1" "$2" <<'EOF'
import base64, json, sys, time
def b64u(o):
    raw = json.dumps(o).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
now = int(time.time())
print(b64u({"alg": "RS256", "kid": "k1"}) + "." + b64u({
    "iss": sys.argv[1], "sub": sys.argv[2],
    "aud": "api://AzureADTokenExchange", "iat": now, "exp": now + 3600})
    + ".c2lnbmF0dXJl")
EOF
}

start_emu() {
	FEDTOKEN=$(fedtok https://oidc.emu.example/issuer system:serviceaccount:ns:sa)
	cat >"$T/emu.json" <<EOF
{"tenants": {"$TENANT": {"clients": {"$CLIENT": {"secret": "$SECRET"},
   "$CERTCLIENT": {"certificate": "$T/sp.pem"},
   "$FEDCLIENT": {"federated_token": "$FEDTOKEN"}}}},
 "users": {"$UPN": {"tenant": "$TENANT",
                    "oid": "0a1b2c3d-6666-4e5f-8a9b-0c1d2e3f4a5b",
                    "refresh_tokens": ["rt-alice-1"],
                    "expired_refresh_tokens": ["rt-alice-old"]}},
 "device_code_interval_s": 1, "device_code_slow_down_s": 1,
 "managed_identity": {"system": true, "user_assigned": [
   {"client_id": "$UA_CLIENT", "object_id": "$UA_OBJECT",
    "resource_id": "$UA_RES"}]},
 "appservice_header": "$APPSVC_HEADER", "arc_token_dir": "$T/arc",
 "cloudshell_user": "$UPN",
 "subscriptions": {"$SUB": {}, "$SUB2": {"tenant": "$TENANT"},
   "$SUB3": {"principals": ["someone-else"]},
   "$SUB4": {"tenant": "$OTHER_TENANT"}},
 "vnets": {
   "$VNET_HUB": {"address_prefixes": ["10.0.0.0/16"], "peerings": ["$VNET_APP"]},
   "$VNET_APP": {"address_prefixes": ["10.1.0.0/16"],
                 "subnets": {"default": "10.1.0.0/24"}, "peerings": ["$VNET_HUB"]},
   "$VNET_LONE": {"address_prefixes": ["10.3.0.0/16"], "peerings": ["$VNET_HUB"]},
   "$VNET_DEV": {"address_prefixes": ["10.2.0.0/16"]},
   "$VNET_DB": {"address_prefixes": ["10.4.0.0/16"], "location": "westeurope"}},
 "bastions": {
   "$BASTION": {"sku": "Standard", "enableTunneling": true,
                "enableIpConnect": false, "vnet": "$VNET_HUB"},
   "$DEVBASTION": {"sku": "Developer", "absent": ["enableIpConnect"],
                   "vnet": "$VNET_DEV", "own_port": true},
   "$PREMBASTION": {"sku": "Premium", "enableTunneling": true,
                    "enableIpConnect": true, "own_port": true, "vnet": "$VNET_DB"}},
 "vms": {"$VM": {"ip": "127.0.0.1", "port_map": {"22": $ECHO_PORT},
                 "private_ip": "10.1.0.4", "vnet": "$VNET_APP",
                 "computer_name": "web01"},
         "$VMOFF": {"ip": "127.0.0.1", "port_map": {"22": $ECHO_PORT},
                    "private_ip": "10.1.0.5", "vnet": "$VNET_APP",
                    "power": "deallocated", "start_delay_s": 0.4},
         "$VMFAIL": {"ip": "127.0.0.1", "power": "stopped", "start_delay_s": 0.1,
                     "start_error": {"code": "AllocationFailed",
                                     "message": "No capacity for this size."}},
         "$VMLONE": {"ip": "127.0.0.1", "port_map": {"22": $ECHO_PORT},
                     "private_ip": "10.3.0.4", "vnet": "$VNET_LONE"},
         "$VMDEV": {"ip": "127.0.0.1", "port_map": {"22": $ECHO_PORT},
                    "private_ip": "10.2.0.4", "vnet": "$VNET_DEV"},
         "$VMDB": {"ip": "127.0.0.1", "port_map": {"22": $ECHO_PORT},
                   "private_ip": "10.4.0.5", "vnet": "$VNET_DB",
                   "location": "westeurope"},
         "$SSVM": {"ip": "127.0.0.1", "port_map": {"22": $ECHO_PORT},
                   "private_ip": "10.1.0.10", "vnet": "$VNET_APP"},
         "$TWIN1": {"ip": "127.0.0.1"}, "$TWIN2": {"ip": "127.0.0.1"},
         "$VMSECRET": {"ip": "127.0.0.1"}, "$VMOTHER": {"ip": "127.0.0.1"}},
 "nics": {"$PE_NIC": {"private_ip": "10.1.0.200", "vnet": "$VNET_APP"}}}
EOF
	$PY "$here/azure_emu.py" --cert "$T/ca/server.pem" \
		--key "$T/ca/server.key" --config "$T/emu.json" \
		--port-file "$T/emu.port" --plain-port-file "$T/plain.port" \
		2>"$T/emu.err" &
	EMU_PID=$!
	wait_file "$T/emu.port" || { cat "$T/emu.err"; return 1; }
	PORT=$(cat "$T/emu.port")
	PLAIN=$(cat "$T/plain.port")
	CERT_AUD="https://localhost:$PORT/$TENANT/oauth2/v2.0/token"
	echo "port $PORT, plain $PLAIN"
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

# ---------------------------------------------------------------- world

# argq STATUS QUERY [EXTRA]: a Resource Graph query; EXTRA (JSON) is
# merged into the request body (subscriptions, options). ARGV picks the
# api-version.
argq() {
	local body
	body=$($PY -c 'import json, sys
b = {"query": sys.argv[1]}
b.update(json.loads(sys.argv[2] or "{}"))
print(json.dumps(b))' "$2" "${3-}") || return 1
	expect "$1" POST "/providers/Microsoft.ResourceGraph/resources?api-version=${ARGV:-2021-03-01}" \
		-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$body"
}

VMQ='Resources | where type =~ "microsoft.compute/virtualmachines"'
PROJ='| project id, name, resourceGroup, subscriptionId, location, properties'

t_arg_vm_name() {
	argq 200 "$VMQ | where name =~ \"WEB01\" or properties.osProfile.computerName =~ \"WEB01\" $PROJ" &&
		assert "d['totalRecords'] == d['count'] == 1 and d['resultTruncated'] == 'false' and d['facets'] == []" &&
		assert "'\$skipToken' not in d and list(d['data'][0]) == ['id', 'name', 'resourceGroup', 'subscriptionId', 'location', 'properties']" &&
		assert "d['data'][0]['id'] == '$VM' and d['data'][0]['resourceGroup'] == 'rg-app' and d['data'][0]['subscriptionId'] == '$SUB'" &&
		assert "d['data'][0]['properties']['osProfile']['computerName'] == 'web01'"
}

t_arg_ambiguous() {
	argq 200 "$VMQ | where name =~ 'twin' | project id" &&
		assert "[r['id'] for r in d['data']] == ['$TWIN1', '$TWIN2']"
}

t_arg_by_ip() {
	local q='Resources | where type =~ "microsoft.network/networkinterfaces" | mv-expand ipc = properties.ipConfigurations'
	q="$q | where ipc.properties.privateIPAddress == '%s' | project id, vmId = tostring(properties.virtualMachine.id), subnetId = tostring(ipc.properties.subnet.id)"
	# shellcheck disable=SC2059
	argq 200 "$(printf "$q" 10.1.0.5)" &&
		assert "[r['vmId'] for r in d['data']] == ['$VMOFF']" &&
		assert "d['data'][0]['subnetId'] == '$VNET_APP/subnets/default'" || return 1
	# shellcheck disable=SC2059
	argq 200 "$(printf "$q" 10.1.0.200)" &&
		assert "[(r['id'], r['vmId']) for r in d['data']] == [('$PE_NIC', '')]"
}

# The client's algorithm, over what Resource Graph answers: the bastions
# in the VM's virtual network, or in one peered with it (Connected),
# Developer ones only in the same network.
t_arg_discovery() {
	argq 200 'Resources | where type =~ "microsoft.network/bastionhosts" | project id, sku, properties' &&
		cp "$T/body" "$T/bastions.json" &&
		argq 200 'Resources | where type in~ ("microsoft.network/networkinterfaces") | project id, properties' &&
		cp "$T/body" "$T/nics.json" &&
		argq 200 'Resources | where type =~ "microsoft.network/virtualnetworks" | project id, peerings = properties.virtualNetworkPeerings' || return 1
	$PY - "$T" <<EOF
import json, sys
t = sys.argv[1]
load = lambda n: json.load(open(f"{t}/{n}.json"))["data"]
low = str.lower
vnet = lambda subnet: low(subnet.split("/subnets/")[0])
peers = {low(v["id"]): {low(p["properties"]["remoteVirtualNetwork"]["id"])
                        for p in v["peerings"]
                        if p["properties"]["peeringState"] == "Connected"}
         for v in json.load(open(f"{t}/body"))["data"]}
def bastion_vnet(b):
    p = b["properties"]
    if b["sku"]["name"] == "Developer":
        return low(p["virtualNetwork"]["id"]), True
    return vnet(p["ipConfigurations"][0]["properties"]["subnet"]["id"]), False
def candidates(vm):
    nets = {vnet(c["properties"]["subnet"]["id"])
            for n in load("nics") if low(n["properties"].get("virtualMachine", {}).get("id", "")) == low(vm)
            for c in n["properties"]["ipConfigurations"]}
    out = []
    for b in load("bastions"):
        bv, dev = bastion_vnet(b)
        if bv in nets or (not dev and any(n in peers.get(bv, ()) and bv in peers.get(n, ()) for n in nets)):
            out.append(b["id"].rsplit("/", 1)[1])
    return out
got = {vm.rsplit("/", 1)[1]: candidates(vm) for vm in ("$VM", "$VMDEV", "$VMDB", "$VMLONE")}
want = {"vm1": ["bh1"], "vm-dev": ["bh-dev"], "vm-db": ["bh-prem"], "vm-lone": []}
sys.exit(0 if got == want else f"candidates {got}")
EOF
}

t_arg_scope() {
	argq 200 'Resources | project subscriptionId' || return 1
	assert "sorted(set(r['subscriptionId'] for r in d['data'])) == sorted(['$SUB', '$SUB2'])" &&
		argq 403 Resources "{\"subscriptions\": [\"$SUB3\"]}" &&
		assert "d['error']['code'] == 'AccessDenied' and d['error']['details'][0]['code'] == 'AccessDenied'" &&
		argq 200 'Resources | project subscriptionId' "{\"subscriptions\": [\"$SUB2\", \"$SUB3\"]}" &&
		assert "d['count'] > 0 and set(r['subscriptionId'] for r in d['data']) == {'$SUB2'}"
}

# shellcheck disable=SC2016 # $top, $skip, $skipToken: JSON keys
t_arg_paging() {
	local token='' ids='' n=0
	while :; do
		ARGV=2024-04-01 argq 200 'Resources | project id, type' \
			"{\"options\": {\"\$top\": 4${token:+, \"\$skipToken\": \"$token\"}}}" || return 1
		ids="$ids $(body '" ".join(r["id"] for r in d["data"])')"
		n=$((n + 1))
		token=$(body 'd.get("$skipToken", "")')
		[ -n "$token" ] || break
		assert "d['count'] == 4" || return 1
	done
	$PY -c 'import json, sys
ids = sys.argv[1].split()
total = json.load(open(sys.argv[2]))["totalRecords"]
ok = len(ids) == total == len(set(ids)) and ids == sorted(ids, key=str.lower)
sys.exit(0 if ok else f"{len(ids)} ids, totalRecords {total}")' "$ids" "$T/body" &&
		echo "$n pages"
}

# shellcheck disable=SC2016 # $top, $skip, $skipToken: JSON keys
t_arg_truncated() {
	argq 200 'Resources | project name' '{"options": {"$top": 2}}' &&
		assert "d['resultTruncated'] == 'true' and '\$skipToken' not in d and d['count'] == 2" &&
		argq 200 'Resources | project id | limit 3' '{"options": {"$skip": 2}}' &&
		assert "d['totalRecords'] == 3 and d['count'] == 3"
}

# arg_invalid DETAIL-CODE QUERY: 400 InvalidQuery, second detail DETAIL-CODE
arg_invalid() {
	argq 400 "$2" &&
		assert "d['error']['code'] == 'BadRequest' and d['error']['message'].startswith('Please provide below info')" &&
		assert "[x['code'] for x in d['error']['details']] == ['InvalidQuery', '$1']"
}

# shellcheck disable=SC2016 # $top, $skip, $skipToken: JSON keys
t_arg_invalid() {
	arg_invalid NotEmulated 'Resources | summarize count() by type' &&
		assert "d['error']['details'][1]['token'] == 'summarize'" &&
		arg_invalid NotEmulated 'ResourceContainers | project id' &&
		arg_invalid NotEmulated 'Resources | where name has "x"' &&
		arg_invalid FailedToResolveScalarExpression 'Resources | project id | where name == "x"' &&
		arg_invalid ParserFailure "Resources | where name == 'x" &&
		ARGV=2019-04-01 argq 400 Resources && assert "d['error']['code'] == 'InvalidApiVersionParameter'" &&
		argq 400 Resources '{"options": {"$skipToken": "bm9wZQ=="}}' &&
		argq 400 Resources '{"options": {"$top": 5000}}'
}

t_arg_power() {
	argq 200 "$VMQ | extend power = tostring(properties.extended.instanceView.powerState.code) | where power != 'PowerState/running' | project name, power | order by name asc" &&
		assert "[(r['name'], r['power']) for r in d['data']] == [('vm-broken', 'PowerState/stopped'), ('vm-off', 'PowerState/deallocated')]"
}

iv() { # STATUS VM [curl args]: GET the VM's instance view
	local vm=$2
	arm "$1" "$vm/instanceView?api-version=2024-07-01" -H "Authorization: Bearer $TOKEN"
}

t_arm_instance_view() {
	iv 200 "$VMOFF" &&
		assert "[s['code'] for s in d['statuses']] == ['ProvisioningState/succeeded', 'PowerState/deallocated']" &&
		assert "'computerName' not in d" &&
		arm 200 "$VM?api-version=2024-07-01&\$expand=instanceView" -H "Authorization: Bearer $TOKEN" &&
		assert "d['properties']['instanceView']['statuses'][1]['code'] == 'PowerState/running'" &&
		assert "d['properties']['instanceView']['computerName'] == 'web01' and 'managedBy' not in d" &&
		assert "d['properties']['networkProfile']['networkInterfaces'] == [{'id': '/subscriptions/$SUB/resourceGroups/rg-app/$NET/networkInterfaces/vm1VMNic'}]"
}

hdr() { sed -n "s/^$1: //Ip" "$T/hdrs" | tr -d '\r'; }

# start VM: POST .../start; sets ASYNC_URL and LOC_URL
start() {
	expect 202 POST "$1/start?api-version=2024-11-01" -H "Authorization: Bearer $TOKEN" || return 1
	ASYNC_URL=$(hdr Azure-AsyncOperation)
	LOC_URL=$(hdr Location)
	case $ASYNC_URL$LOC_URL in
	*monitor=true*) ;;
	*) echo "headers: $(cat "$T/hdrs")"; return 1 ;;
	esac
}

# poll STATUS URL: GET an operation URL handed out by the emulator
poll() { expect "$1" GET "${2#"https://localhost:$PORT"}" -H "Authorization: Bearer $TOKEN"; }

t_arm_start() {
	start "$VMOFF" || return 1
	[ "${ASYNC_URL%%/subscriptions/*}" = "https://localhost:$PORT" ] || { echo "URL $ASYNC_URL"; return 1; }
	poll 200 "$ASYNC_URL" && assert "d['status'] == 'InProgress' and 'startTime' in d" &&
		poll 202 "$LOC_URL" && [ -n "$(hdr Location)" ] &&
		iv 200 "$VMOFF" && assert "d['statuses'][1]['code'] == 'PowerState/starting'" || return 1
	sleep 0.45
	poll 200 "$ASYNC_URL" && assert "d['status'] == 'Succeeded' and 'endTime' in d" &&
		poll 200 "$LOC_URL" && [ ! -s "$T/body" ] &&
		iv 200 "$VMOFF" && assert "d['statuses'][1]['code'] == 'PowerState/running'" &&
		start "$VMOFF" && poll 200 "$ASYNC_URL" && assert "d['status'] == 'Succeeded'"
}

t_arm_start_fail() {
	start "$VMFAIL" || return 1
	sleep 0.15
	poll 200 "$ASYNC_URL" && assert "d['status'] == 'Failed' and d['error']['code'] == 'AllocationFailed'" &&
		poll 409 "$LOC_URL" && assert "d['error']['code'] == 'AllocationFailed'" &&
		iv 200 "$VMFAIL" && assert "d['statuses'][1]['code'] == 'PowerState/stopped'"
}

t_arm_vmss() {
	arm 200 "$SSVM?api-version=2024-07-01" -H "Authorization: Bearer $TOKEN" &&
		assert "d['id'] == '$SSVM' and d['name'] == 'ss1_3' and d['instanceId'] == '3'" &&
		assert "d['properties']['osProfile']['computerName'] == 'ss1000003'" &&
		iv 200 "$SSVM" && assert "d['statuses'][1]['code'] == 'PowerState/running'" &&
		argq 200 'Resources | where type =~ "microsoft.compute/virtualmachinescalesets" | project id, name, capacity = sku.capacity' &&
		assert "d['data'] == [{'id': '${SSVM%/virtualMachines/3}', 'name': 'ss1', 'capacity': 1}]"
}

t_arm_nic_vnet() {
	arm 200 "/subscriptions/$SUB/resourceGroups/rg-app/$NET/networkInterfaces/vm1VMNic?api-version=2024-07-01" \
		-H "Authorization: Bearer $TOKEN" &&
		assert "d['properties']['ipConfigurations'][0]['properties']['privateIPAddress'] == '10.1.0.4'" &&
		assert "d['properties']['virtualMachine']['id'] == '$VM'" &&
		arm 200 "$VNET_LONE?api-version=2024-07-01" -H "Authorization: Bearer $TOKEN" &&
		assert "[p['properties']['peeringState'] for p in d['properties']['virtualNetworkPeerings']] == ['Initiated']" &&
		arm 200 "$VNET_APP?api-version=2024-07-01" -H "Authorization: Bearer $TOKEN" &&
		assert "[(p['properties']['peeringState'], p['properties']['remoteVirtualNetwork']['id']) for p in d['properties']['virtualNetworkPeerings']] == [('Connected', '$VNET_HUB')]" &&
		assert "d['properties']['subnets'][0]['properties']['addressPrefix'] == '10.1.0.0/24'"
}

t_arm_list() {
	arm 200 "/subscriptions/$SUB/$NET/bastionHosts?api-version=2024-07-01" -H "Authorization: Bearer $TOKEN" &&
		assert "sorted(b['name'] for b in d['value']) == ['bh-dev', 'bh1'] and 'nextLink' not in d" &&
		arm 200 "/subscriptions/$SUB2/resourceGroups/rg-db/$NET/bastionHosts?api-version=2024-07-01" \
			-H "Authorization: Bearer $TOKEN" &&
		assert "[b['id'] for b in d['value']] == ['$PREMBASTION'] and d['value'][0]['properties']['dnsName'] != 'localhost:$PORT'" &&
		assert "d['value'][0]['properties']['ipConfigurations'][0]['properties']['subnet']['id'] == '$VNET_DB/subnets/AzureBastionSubnet'" &&
		expect 200 POST /_emu/config -d '{"arm_list_page_size": 1}' &&
		arm 200 "/subscriptions/$SUB/$NET/bastionHosts?api-version=2024-07-01" -H "Authorization: Bearer $TOKEN" &&
		assert "len(d['value']) == 1" || return 1
	poll 200 "$(body 'd["nextLink"]')" && assert "len(d['value']) == 1 and 'nextLink' not in d" &&
		expect 200 POST /_emu/config -d '{"arm_list_page_size": null}'
}

t_arm_access() {
	arm 403 "$VMSECRET?api-version=2024-07-01" -H "Authorization: Bearer $TOKEN" &&
		assert "d['error']['code'] == 'AuthorizationFailed' and \"'Microsoft.Compute/virtualMachines/read'\" in d['error']['message']" &&
		arm 401 "$VMOTHER?api-version=2024-07-01" -H "Authorization: Bearer $TOKEN" &&
		assert "d['error']['code'] == 'InvalidAuthenticationTokenTenant'" &&
		hdr WWW-Authenticate | grep -q "authorization_uri=\"https://login.windows.net/$OTHER_TENANT\"" &&
		arm 404 "/subscriptions/cccccccc-0000-4000-8000-00000000000c/resourceGroups/x/$CMP/virtualMachines/y?api-version=2024-07-01" \
			-H "Authorization: Bearer $TOKEN" &&
		assert "d['error']['code'] == 'SubscriptionNotFound'"
}

t_fault_arg_429() {
	expect 200 POST /_emu/faults -d '{"resourcegraph_status": {"status": 429, "count": 1}}' &&
		arm 200 "$VM?$ARMQ" -H "Authorization: Bearer $TOKEN" &&
		argq 429 Resources && [ "$(hdr Retry-After)" = 1 ] &&
		[ "$(hdr x-ms-user-quota-remaining)" = 0 ] &&
		assert "d['error']['code'] == 'RateLimiting'" &&
		argq 200 'Resources | project id' && expect 200 GET /_emu/faults && assert "d == {}"
}

t_fault_arm() {
	expect 200 POST /_emu/faults -d '{"arm_status": [503, {"status": 429, "headers": {"Retry-After": "2"}}],
		"vm_start_status": {"status": 409, "count": 1, "body": {"error": {"code": "OperationNotAllowed", "message": "busy"}}}}' &&
		arm 503 "$BASTION?$ARMQ" -H "Authorization: Bearer $TOKEN" &&
		assert "d['error']['code'] == 'ServiceUnavailable'" &&
		argq 429 Resources && [ "$(hdr Retry-After)" = 2 ] &&
		assert "d['error']['code'] == 'TooManyRequests'" &&
		arm 200 "$BASTION?$ARMQ" -H "Authorization: Bearer $TOKEN" &&
		expect 409 POST "$VM/start?api-version=2024-11-01" -H "Authorization: Bearer $TOKEN" &&
		assert "d['error']['message'] == 'busy'" && start "$VM" && expect 200 GET /_emu/faults && assert "d == {}"
}

t_counters_arm() {
	local before
	expect 200 GET /_emu/counters || return 1
	before=$(cat "$T/body")
	arm 200 "$BASTION?$ARMQ" -H "Authorization: Bearer $TOKEN" &&
		arm 200 "$VM?$ARMQ" -H "Authorization: Bearer $TOKEN" && iv 200 "$SSVM" &&
		argq 200 Resources && argq 400 'Resources | join' && start "$VM" &&
		poll 200 "$ASYNC_URL" && poll 200 "$LOC_URL" &&
		arm 404 "/subscriptions/$SUB/resourceGroups/rg-app/$NET/publicIPAddresses/x?$ARMQ" \
			-H "Authorization: Bearer $TOKEN" &&
		expect 200 GET /_emu/counters || return 1
	$PY - "$before" "$T/body" <<'EOF'
import json, sys
a, b = json.loads(sys.argv[1]), json.load(open(sys.argv[2]))
want = {"arm": 9, "arm_bastion_get": 1, "arm_vm_get": 1,
        "arm_instance_view": 1, "resourcegraph": 2, "vm_start": 1,
        "asyncop": 2, "arm_other": 1, "arm_nic_get": 0}
got = {k: b[k] - a[k] for k in want}
sys.exit(0 if got == want else f"deltas {got}")
EOF
	expect 200 GET /_emu/requests &&
		assert "[r.get('query') for r in d if r.get('kind') == 'resourcegraph'][-1] == 'Resources | join'"
}

# ---------------------------------------------------------------- grants

# aad CODE ERROR: the body is an Entra error with that code.
aad() {
	assert "d['error'] == '$2' and d['error_codes'] == [$1]" &&
		assert "d['error_description'].startswith('AADSTS$1:')" &&
		assert "all(k in d for k in ('timestamp', 'trace_id', 'correlation_id'))"
}

jwt() { $PY "$T/jwt.py" "$@"; }

# assertion STATUS JWT [CLIENT]: client_credentials with a JWT assertion.
assertion() {
	expect "$1" POST "/$TENANT/oauth2/v2.0/token" \
		-d grant_type=client_credentials --data-urlencode "client_id=${3:-$CERTCLIENT}" \
		--data-urlencode "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer" \
		--data-urlencode "client_assertion=$2" --data-urlencode "scope=$ARM_SCOPE"
}

# arm_ok: the access_token in the body works with ARM.
arm_ok() {
	local tok
	tok=$(body 'd["access_token"]') || return 1
	arm 200 "$BASTION?$ARMQ" -H "Authorization: Bearer $tok"
}

t_cert_rs256() {
	CERT_JWT=$(jwt "$T/sp.key" "$T/sp.crt" RS256 x5t "$CERTCLIENT" "$CERT_AUD" '{}') &&
		assertion 200 "$CERT_JWT" && assert "d['expires_in'] == 3599" && arm_ok
}

t_cert_ps256() {
	local j
	j=$(jwt "$T/sp.key" "$T/sp.crt" PS256 x5t_s256_std "$CERTCLIENT" "$CERT_AUD" '{"nbf": null, "iat": "+0"}') &&
		assertion 200 "$j" || return 1
	j=$(jwt "$T/sp.key" "$T/sp.crt" PS256 x5t_s256 "$CERTCLIENT" "$CERT_AUD" '{}') &&
		assertion 200 "$j"
}

t_cert_padded() {
	local j
	j=$(jwt "$T/sp.key" "$T/sp.crt" RS256 x5t_padded "$CERTCLIENT" \
		"https://127.0.0.1:$PORT/$TENANT/oauth2/v2.0/token" '{}') &&
		assertion 200 "$j"
}

# cert_refused STATUS CODE ERROR KEY CERT ALG THUMBS AUD OVERRIDES
cert_refused() {
	local status=$1 code=$2 error=$3 j
	shift 3
	j=$(jwt "$1" "$2" "$3" "$4" "$CERTCLIENT" "$5" "$6") &&
		assertion "$status" "$j" && aad "$code" "$error"
}

t_fed_ok() { assertion 200 "$FEDTOKEN" "$FEDCLIENT" && arm_ok; }

t_fed_subject() {
	assertion 400 "$(fedtok https://oidc.emu.example/issuer system:serviceaccount:ns:other)" \
		"$FEDCLIENT" && aad 70021 invalid_request
}

t_fed_issuer() {
	assertion 401 "$(fedtok https://elsewhere.example system:serviceaccount:ns:sa)" \
		"$FEDCLIENT" && aad 700211 invalid_client
}

# rt STATUS RT [CLIENT] [TENANT]: redeem a refresh token as the CLI does.
rt() {
	expect "$1" POST "/${4:-$TENANT}/oauth2/v2.0/token" -d grant_type=refresh_token \
		--data-urlencode "client_id=${3:-$CLI}" --data-urlencode "refresh_token=$2" \
		--data-urlencode "scope=$ARM_SCOPE openid profile offline_access" -d client_info=1
}

jwt_claim() { # the body field $1 is a JWT: print its claims' $2
	body "json.loads(__import__('base64').urlsafe_b64decode(d['$1'].split('.')[1] + '==')).get('$2')"
}

t_rt_ok() {
	rt 200 rt-alice-1 || return 1
	NEWRT=$(body 'd["refresh_token"]')
	assert "d['refresh_token'] not in ('', 'rt-alice-1') and d['foci'] == '1'" &&
		assert "d['token_type'] == 'Bearer' and isinstance(d['expires_in'], int)" &&
		assert "json.loads(__import__('base64').urlsafe_b64decode(d['client_info'] + '==')) == {'uid': '0a1b2c3d-6666-4e5f-8a9b-0c1d2e3f4a5b', 'utid': '$TENANT'}" || return 1
	[ "$(jwt_claim id_token preferred_username)" = "$UPN" ] &&
		[ "$(jwt_claim id_token tid)" = "$TENANT" ] || { echo "bad id_token"; return 1; }
	arm_ok && rt 200 "$NEWRT" "$CLI" organizations && rt 200 rt-alice-1
}

t_rt_refused() {
	rt 400 rt-nobody && aad 70008 invalid_grant &&
		rt 400 rt-alice-old && aad 700082 invalid_grant &&
		rt 400 rt-alice-1 "$CLIENT" && aad 700016 unauthorized_client
}

t_rt_rotate() {
	local newer
	expect 200 POST /_emu/config -d '{"rotate_refresh_tokens": true}' &&
		rt 200 "$NEWRT" || return 1
	newer=$(body 'd["refresh_token"]')
	rt 400 "$NEWRT" && aad 70008 invalid_grant && rt 200 "$newer" || return 1
	NEWRT=$(body 'd["refresh_token"]')
	rt 400 "$newer" && aad 70008 invalid_grant &&
		expect 200 POST /_emu/config -d '{"rotate_refresh_tokens": false}' &&
		expect 200 POST /_emu/revoke -d '{"refresh_token": "rt-alice-1"}' &&
		rt 400 rt-alice-1 && aad 70008 invalid_grant
}

dc_start() {
	expect 200 POST /organizations/oauth2/v2.0/devicecode --data-urlencode "client_id=$CLI" \
		--data-urlencode "scope=$ARM_SCOPE offline_access openid profile" || return 1
	DC=$(body 'd["device_code"]')
	UC=$(body 'd["user_code"]')
}

dc_poll() { # STATUS [ERROR]
	expect "$1" POST /organizations/oauth2/v2.0/token \
		-d grant_type=urn:ietf:params:oauth:grant-type:device_code \
		--data-urlencode "client_id=$CLI" --data-urlencode "device_code=$DC" || return 1
	[ -z "${2:-}" ] || assert "d['error'] == '$2'"
}

t_dc_flow() {
	dc_start || return 1
	assert "d['verification_uri'] == 'https://microsoft.com/devicelogin'" &&
		assert "d['interval'] == 1 and d['expires_in'] == 900" &&
		assert "'$UC' in d['message']" || return 1
	dc_poll 400 authorization_pending && aad 70016 authorization_pending &&
		dc_poll 400 slow_down &&
		expect 200 POST /_emu/devicecode/approve -d "{\"user_code\": \"$UC\", \"user\": \"$UPN\"}" &&
		assert "d['state'] == 'approved' and d['interval'] == 2" || return 1
	sleep 2.05
	dc_poll 200 && assert "d['refresh_token'] and d['foci'] == '1'" && arm_ok &&
		dc_poll 400 invalid_grant
}

t_dc_expired() {
	expect 200 POST /_emu/config -d '{"device_code_expires_s": 1}' && dc_start &&
		dc_poll 400 authorization_pending || return 1
	sleep 1.05
	dc_poll 400 expired_token && aad 70020 expired_token &&
		expect 200 POST /_emu/config -d '{"device_code_expires_s": 900}'
}

t_dc_denied() {
	dc_start && expect 200 POST /_emu/devicecode/deny -d "{\"user_code\": \"$UC\"}" &&
		dc_poll 400 authorization_declined &&
		expect 200 GET /_emu/devicecode &&
		assert "[f['state'] for f in d['flows'] if f['user_code'] == '$UC'] == ['denied']"
}

t_counters_grants() {
	local before
	expect 200 GET /_emu/counters || return 1
	before=$(cat "$T/body")
	entra 200 "$SECRET" "$ARM_SCOPE" && rt 200 "$NEWRT" && rt 400 rt-nobody &&
		assertion 200 "$FEDTOKEN" "$FEDCLIENT" && expect 200 GET /_emu/counters || return 1
	$PY - "$before" "$T/body" <<'EOF'
import json, sys
a, b = json.loads(sys.argv[1]), json.load(open(sys.argv[2]))
want = {"entra": 4, "entra_client_secret": 1, "entra_refresh_token": 2,
        "entra_federated": 1, "entra_client_assertion": 0,
        "issued_refresh_token": 1, "issued_client_secret": 1}
got = {k: b[k] - a[k] for k in want}
sys.exit(0 if got == want else f"deltas {got}")
EOF
}

t_lifetime_fault() {
	expect 200 POST /_emu/faults -d '{"lifetime_s": {"refresh_token": 30, "client_secret": 0}}' &&
		rt 200 "$NEWRT" && assert "d['expires_in'] == 30" &&
		entra 200 "$SECRET" "$ARM_SCOPE" && assert "d['expires_in'] == 0" || return 1
	arm 401 "$BASTION?$ARMQ" -H "Authorization: Bearer $(body 'd["access_token"]')" &&
		assert "'expiry' in d['error']['message']" &&
		expect 200 POST /_emu/faults -d '{"lifetime_s": null}'
}

# ---------------------------------------------------------------- MI

# preq, pexpect: req and expect on the plain (managed identity) listener.
preq() { URL_BASE=http://127.0.0.1:$PLAIN req "$@"; }
pexpect() { URL_BASE=http://127.0.0.1:$PLAIN expect "$@"; }

RES_Q=resource=https%3A%2F%2Fmanagement.core.windows.net%2F
IMDS=/metadata/identity/oauth2/token?api-version=2018-02-01\&$RES_Q

t_imds_ok() {
	pexpect 200 GET "$IMDS" -H 'Metadata: true' || return 1
	MI_TOKEN=$(body 'd["access_token"]')
	assert "all(isinstance(d[k], str) and d[k].isdigit() for k in ('expires_in', 'expires_on', 'not_before'))" &&
		assert "d['refresh_token'] == '' and d['resource'] == '$ARM_RES' and d['token_type'] == 'Bearer'" &&
		arm_ok
}

t_imds_refused() {
	pexpect 400 GET "$IMDS" && assert "d['error'] == 'invalid_request' and 'error_description' in d" &&
		pexpect 400 GET "$IMDS&client_id=00000000-0000-0000-0000-000000000000" -H 'Metadata: true' &&
		assert "d['error_description'] == 'Identity not found'" &&
		pexpect 400 GET "${IMDS%%&*}&resource=https%3A%2F%2Fmanagement.core.windows.net%2F%2F.default" \
			-H 'Metadata: true' && assert "d['error'] == 'invalid_resource'"
}

t_imds_user_assigned() {
	pexpect 200 GET "$IMDS&client_id=$UA_CLIENT" -H 'Metadata: true' &&
		assert "d['client_id'] == '$UA_CLIENT'" &&
		pexpect 200 GET "$IMDS&object_id=$UA_OBJECT" -H 'Metadata: true' &&
		pexpect 200 GET "$IMDS&msi_res_id=$UA_RES" -H 'Metadata: true' &&
		assert "d['client_id'] == '$UA_CLIENT'"
}

t_imds_retry() {
	local s got=
	expect 200 POST /_emu/faults -d '{"imds_status": [404, 410, 429, 500], "imds_delay_ms": 10}' || return 1
	for s in 1 2 3 4 5; do
		got="$got $(preq GET "$IMDS" -H 'Metadata: true')"
	done
	[ "$got" = " 404 410 429 500 200" ] || { echo "got$got"; return 1; }
	expect 200 POST /_emu/faults -d '{"imds_delay_ms": null}' &&
		assert "'imds_status' not in d"
}

APPSVC=/msi/token?api-version=2019-08-01\&$RES_Q

t_appservice() {
	pexpect 401 GET "$APPSVC" -H 'X-IDENTITY-HEADER: wrong' &&
		assert "d['statusCode'] == 401 and 'message' in d" &&
		pexpect 200 GET "$APPSVC&client_id=$UA_CLIENT" -H "X-IDENTITY-HEADER: $APPSVC_HEADER" &&
		assert "d['expires_on'].isdigit() and 'expires_in' not in d" &&
		assert "d['resource'] == '$ARM_RES' and d['client_id'] == '$UA_CLIENT'" && arm_ok
}

ARC=/arc/metadata/identity/oauth2/token?api-version=2020-06-01\&$RES_Q

# arc_challenge: a 401 naming a file; sets REALM.
arc_challenge() {
	pexpect 401 GET "$ARC" -H 'Metadata: true' "$@" || return 1
	REALM=$(sed -n 's/^WWW-Authenticate: Basic realm=//ip' "$T/hdrs" | tr -d '\r')
	[ -n "$REALM" ] || { echo "no Basic realm: $(cat "$T/hdrs")"; return 1; }
}

t_arc() {
	local secret
	arc_challenge || return 1
	[ "$(dirname "$REALM")" = "$T/arc" ] && [ "${REALM%.key}" != "$REALM" ] &&
		[ "$(stat -c %s "$REALM")" -le 4096 ] || { echo "bad realm $REALM"; return 1; }
	secret=$(cat "$REALM")
	ARC_SECRET=$secret
	pexpect 200 GET "$ARC" -H 'Metadata: true' -H "Authorization: Basic $secret" &&
		assert "d['expires_in'].isdigit() and d['resource'] == '$ARM_RES'" && arm_ok || return 1
	[ ! -e "$REALM" ] || { echo "key file left after use"; return 1; }
	arc_challenge -H "Authorization: Basic $secret" &&
		arc_challenge -H "Authorization: Basic wrong" &&
		pexpect 400 GET "$ARC"
}

t_arc_faults() {
	local m real
	for m in outside dotdot symlink wrong_ext too_big; do
		expect 200 POST /_emu/faults -d "{\"arc_realm\": \"$m\"}" && arc_challenge || return 1
		real=$(realpath "$REALM")
		case $m in
		outside) [ "$(dirname "$REALM")" != "$T/arc" ] ;;
		dotdot) [ "${REALM#"$T/arc/"}" != "$REALM" ] && [ "$(dirname "$real")" != "$T/arc" ] ;;
		symlink) [ -L "$REALM" ] && [ "$(dirname "$real")" != "$T/arc" ] ;;
		wrong_ext) [ "${REALM%.key}" = "$REALM" ] ;;
		too_big) [ "$(stat -c %s "$REALM")" -gt 4096 ] ;;
		esac || { echo "$m: realm $REALM ($real)"; return 1; }
	done
	expect 200 POST /_emu/faults -d '{"arc_realm": null}'
}

t_cloudshell() {
	pexpect 400 POST /cloudshell/oauth2/token --data-urlencode "resource=$ARM_RES" &&
		pexpect 200 POST /cloudshell/oauth2/token -H 'Metadata: true' \
			--data-urlencode "resource=$ARM_RES" &&
		assert "d['expires_in'].isdigit() and d['resource'] == '$ARM_RES'" &&
		[ "$(jwt_claim access_token upn)" = "$UPN" ] && arm_ok
}

t_mi_aztoken() {
	local TOKEN=$MI_TOKEN
	session
}

t_mi_logged() {
	local s
	expect 200 GET /_emu/requests || return 1
	assert "{'imds', 'appservice', 'arc', 'cloudshell', 'devicecode'} <= {r['role'] for r in d}" &&
		assert "any(r['headers'].get('X-IDENTITY-HEADER') == '<redacted>' for r in d)" &&
		assert "any(r.get('form_values', {}).get('client_assertion') == '<redacted>' for r in d)" || return 1
	for s in "$CERT_JWT" "$FEDTOKEN" rt-alice-1 "$NEWRT" "$DC" "$ARC_SECRET" "$APPSVC_HEADER"; do
		if grep -qF -- "$s" "$T/body"; then
			echo "secret in /_emu/requests: ${s:0:20}..."
			return 1
		fi
	done
	expect 200 GET /_emu/counters &&
		assert "d['imds'] >= 10 and d['appservice'] == 2 and d['cloudshell'] == 2" &&
		assert "d['issued_arc'] == 1 and d['plain_connections'] > 0"
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

# ---------------------------------------------------------------- Developer, more bastions

# dev_connection STATUS JSON: POST /api/connection to the Developer
# bastion (omnibrain: localhost on its own port); sets POD.
dev_connection() {
	local port
	port=$(curl -s --cacert "$T/ca/ca.pem" "https://localhost:$PORT/_emu/world" |
		$PY -c "import json,sys; print(json.load(sys.stdin)['bastions']['$DEVBASTION']['port'])")
	URL_BASE=https://localhost:$port expect "$1" POST /api/connection \
		-H 'Content-Type: application/json' -d "$2" || return 1
	POD=127.0.0.1:$port
}

t_dev_connection() {
	local ok="{\"resourceId\": \"$VMDEV\", \"bastionResourceId\": \"$DEVBASTION\", \"vmPort\": 22, \"azToken\": \"$TOKEN\", \"connectionType\": \"nativeclient\"}"
	dev_connection 200 "$ok" && [ "$(cat "$T/body")" = "$POD" ] &&
		grep -qi '^Content-Type: text/plain' "$T/hdrs" &&
		dev_connection 200 "${ok/: 22,/: \"22\",}" &&
		dev_connection 400 "${ok/nativeclient/web}" &&
		dev_connection 400 "${ok/\"vmPort\": 22,/}" &&
		dev_connection 404 "${ok/$DEVBASTION/$BASTION}" &&
		dev_connection 401 "${ok/$TOKEN/forged}"
}

# dev_tokens STATUS HOST: POST /api/tokens for vm-dev on that host
dev_tokens() {
	URL_BASE=https://$2 expect "$1" POST /api/tokens --data-urlencode "resourceId=$VMDEV" \
		-d protocol=tcptunnel -d workloadHostPort=22 --data-urlencode "aztoken=$TOKEN"
}

# Sessions live on the data pod (127.0.0.1, the bastion's own port), not
# on omnibrain (localhost, same port).
t_dev_omni() {
	local token
	dev_tokens 404 "localhost:${POD#*:}" && dev_tokens 200 "$POD" || return 1
	AUTH=$(body 'd["authToken"]')
	token=$(body 'd["websocketToken"]')
	WS_URL="wss://$POD/webtunnelv2/$token?X-Node-Id=$(body 'd["nodeId"]')"
	ws status 404 || return 1
	WS_URL="wss://$POD/omni/webtunnel/$token"
	ws echo 1 && expect 200 GET /_emu/sessions &&
		assert "[s['developer'] for s in d['active'] if s['resourceId'] == '$VMDEV'] == [True]" &&
		assert "[s['bastion'] for s in d['active'] if s['resourceId'] == '$VMDEV'] == ['$DEVBASTION']" &&
		URL_BASE=https://$POD expect 204 DELETE "/api/tokens/$AUTH" &&
		expect 200 GET /_emu/sessions && assert "'$VMDEV' not in [s['resourceId'] for s in d['active']]"
}

# dev_node_id BOOL: the Developer bastion's node_id in the running config.
dev_node_id() {
	curl -s --cacert "$T/ca/ca.pem" "https://localhost:$PORT/_emu/config" |
		$PY -c 'import json, sys
b = json.load(sys.stdin)["bastions"]
b[sys.argv[1]]["node_id"] = json.loads(sys.argv[2])
print(json.dumps({"bastions": b}))' "$DEVBASTION" "$1" >"$T/cfg.json" &&
		expect 200 POST /_emu/config -d @"$T/cfg.json"
}

t_dev_no_node_id() {
	dev_node_id false && dev_tokens 200 "$POD" && assert "'nodeId' not in d" || return 1
	AUTH=$(body 'd["authToken"]')
	WS_URL="wss://$POD/omni/webtunnel/$(body 'd["websocketToken"]')?X-Node-Id=anything"
	ws ping && URL_BASE=https://$POD expect 204 DELETE "/api/tokens/$AUTH" -H 'X-Node-Id: anything' &&
		dev_node_id true
}

t_own_port() {
	local own
	expect 200 GET /_emu/world || return 1
	own=$(body "d['bastions']['$PREMBASTION']['port']")
	[ "$own" != "$PORT" ] && assert "d['bastions']['$PREMBASTION']['dnsName'] == 'localhost:$own'" || return 1
	URL_BASE=https://localhost:$own session_for "$VMDB" && ws echo 1 && expect 200 GET /_emu/sessions &&
		assert "[s['bastion'] for s in d['active'] if s['resourceId'] == '$VMDB'] == ['$PREMBASTION']"
}

# session_for RESOURCE-ID [curl args]: like session, for another target,
# on URL_BASE if set, for port WPORT (default 22).
session_for() {
	local rid=$1 base=${URL_BASE:-https://localhost:$PORT}
	shift
	expect 200 POST /api/tokens --data-urlencode "resourceId=$rid" \
		-d protocol=tcptunnel -d "workloadHostPort=${WPORT:-22}" \
		--data-urlencode "aztoken=$TOKEN" "$@" || return 1
	AUTH=$(body 'd["authToken"]')
	NODE=$(body 'd["nodeId"]')
	WS_URL="wss://${base#https://}/webtunnelv2/$(body 'd["websocketToken"]')?X-Node-Id=$NODE"
	ALL_AUTH="$ALL_AUTH $AUTH:$NODE"
}

t_vmss_session() { session_for "$SSVM" && ws echo 1; }

t_ip_private() {
	local own
	own=$(curl -s --cacert "$T/ca/ca.pem" "https://localhost:$PORT/_emu/world" |
		$PY -c "import json,sys; print(json.load(sys.stdin)['bastions']['$PREMBASTION']['port'])")
	URL_BASE=https://localhost:$own WPORT=$ECHO_PORT session_for \
		"/subscriptions/$SUB2/resourceGroups/rg-db/$NET/bh-hostConnect/10.4.0.5" \
		-d hostname=10.4.0.5 && ws echo 1
}

# unreachable TARGET WHY: 101, then close 1011; the session says why.
unreachable() {
	session_for "$1" && ws closed 1011 && expect 200 GET /_emu/sessions &&
		assert "'$2' in [s['unreachable'] for s in d['active'] if s['resourceId'] == '$1'][0]"
}

t_unreachable() {
	unreachable "$VMLONE" 'nor peered' &&
		unreachable "$VMDEV" 'nor peered' &&
		unreachable "$VMFAIL" "the VM is stopped"
}

t_power_endpoint() {
	expect 200 POST /_emu/power -d "{\"vm\": \"$VMOFF\", \"power\": \"stopping\"}" &&
		expect 409 POST "$VMOFF/start?api-version=2024-11-01" -H "Authorization: Bearer $TOKEN" &&
		assert "d['error']['code'] == 'OperationNotAllowed'" &&
		expect 400 POST /_emu/power -d "{\"vm\": \"$VMOFF\", \"power\": \"asleep\"}" &&
		expect 200 POST /_emu/power -d "{\"vm\": \"$VMOFF\", \"power\": \"running\"}"
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
check "openssl: client certificates for assertions" t_mkcert
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
check "arg: VM by name or computer name, projected columns" t_arg_vm_name
check "arg: an ambiguous name across subscriptions" t_arg_ambiguous
check "arg: NIC by private IP (mv-expand), VM back-reference" t_arg_by_ip
check "arg: bastion of each VM from bastions, NICs, peerings" t_arg_discovery
check "arg: only visible subscriptions; 403 AccessDenied" t_arg_scope
check "arg: paging with \$top and \$skipToken (2024-04-01)" t_arg_paging
check "arg: no id column -> resultTruncated; \$skip and limit" t_arg_truncated
check "arg: out of the subset -> 400 InvalidQuery with details" t_arg_invalid
check "arg: power state in properties.extended" t_arg_power
check "arm: instance view, \$expand=instanceView" t_arm_instance_view
check "arm: start -> 202, operation polled to Succeeded, running" t_arm_start
check "arm: start_error -> Failed, Location 409, VM stays stopped" t_arm_start_fail
check "arm: VMSS instance GET, instance view; scale set in arg" t_arm_vmss
check "arm: NIC and virtual networks with peering states" t_arm_nic_vnet
check "arm: bastion lists, own port, nextLink paging" t_arm_list
check "arm: 403 AuthorizationFailed, 401 wrong tenant, 404 sub" t_arm_access
check "faults: resourcegraph_status 429 alone, Retry-After" t_fault_arg_429
check "faults: arm_status list, vm_start_status 409 once" t_fault_arm
check "counters: per ARM kind; queries in the request log" t_counters_arm
check "arm: /_emu/power; start while stopping -> 409" t_power_endpoint

check "entra: certificate assertion RS256 + x5t (openssl)" t_cert_rs256
check "entra: PS256 + x5t#S256, standard and url base64" t_cert_ps256
check "entra: padded x5t, aud host 127.0.0.1" t_cert_padded
check "entra: unregistered certificate -> 401 AADSTS50012" cert_refused 401 50012 invalid_client "$T/other.key" "$T/other.crt" RS256 x5t "$CERT_AUD" '{}'
check "entra: wrong signer -> 401 AADSTS700027" cert_refused 401 700027 invalid_client "$T/other.key" "$T/sp.crt" RS256 x5t "$CERT_AUD" '{}'
check "entra: expired assertion -> 401 AADSTS700024" cert_refused 401 700024 invalid_client "$T/sp.key" "$T/sp.crt" RS256 x5t "$CERT_AUD" '{"exp": "-60", "nbf": "-700"}'
check "entra: exp beyond 1 h -> 401 AADSTS700024" cert_refused 401 700024 invalid_client "$T/sp.key" "$T/sp.crt" PS256 x5t_s256 "$CERT_AUD" '{"exp": "+7200"}'
check "entra: sub != iss -> 401 AADSTS50048" cert_refused 401 50048 invalid_client "$T/sp.key" "$T/sp.crt" RS256 x5t "$CERT_AUD" '{"sub": "someone-else"}'
check "entra: aud on another port -> 401 AADSTS700023" cert_refused 401 700023 invalid_client "$T/sp.key" "$T/sp.crt" RS256 x5t "https://localhost:1/$TENANT/oauth2/v2.0/token" '{}'
check "entra: no jti -> 400 AADSTS50027" cert_refused 400 50027 invalid_request "$T/sp.key" "$T/sp.crt" RS256 x5t "$CERT_AUD" '{"jti": null}'
check "entra: federated token" t_fed_ok
check "entra: federated, other subject -> 400 AADSTS70021" t_fed_subject
check "entra: federated, other issuer -> 401 AADSTS700211" t_fed_issuer
check "entra: refresh token -> new RT, id_token, client_info, foci" t_rt_ok
check "entra: unknown/expired RT, non-public client refused" t_rt_refused
check "entra: rotate_refresh_tokens and /_emu/revoke" t_rt_rotate
check "entra: device code pending, slow_down, approved" t_dc_flow
check "entra: device code expired_token" t_dc_expired
check "entra: device code authorization_declined" t_dc_denied
check "entra: counters per grant" t_counters_grants
check "faults: lifetime_s per grant (0 = already expired)" t_lifetime_fault

check "imds: token, string numbers, accepted by ARM" t_imds_ok
check "imds: no Metadata, unknown identity, scope as resource -> 400" t_imds_refused
check "imds: user-assigned by client_id, object_id, msi_res_id" t_imds_user_assigned
check "imds: imds_status [404, 410, 429, 500] then 200" t_imds_retry
check "appservice: X-IDENTITY-HEADER checked, token" t_appservice
check "arc: 401 challenge file, Basic secret once, wrong -> 401" t_arc
check "arc: arc_realm faults outside/dotdot/symlink/ext/size" t_arc_faults
check "cloudshell: Metadata required, user token" t_cloudshell
check "tokens: an IMDS token works as aztoken" t_mi_aztoken
check "requests: MI roles logged, secrets redacted; MI counters" t_mi_logged

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
check "developer: /api/connection -> data pod host, checks" t_dev_connection
check "developer: omni webtunnel on the pod only, DELETE w/o node" t_dev_omni
check "developer: node_id false -> no nodeId, X-Node-Id ignored" t_dev_no_node_id
check "bastions: own_port listener, session on its bastion" t_own_port
check "tokens: a VMSS instance is a tunnel target" t_vmss_session
check "tokens: IP connect to a VM's private IP, custom port" t_ip_private
check "ws: unreachable targets (peering, SKU, power) -> 1011" t_unreachable
check "sessions: empty after deleting all, no internal errors" t_sessions_empty
check "reset: clears sessions" t_reset
check "SIGTERM: clean exit 0, quiet stderr" t_sigterm

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
