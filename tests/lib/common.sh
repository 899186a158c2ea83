# Shared by the end-to-end tests and the demo: a private world on loopback
# made of the Azure emulator (Entra ID, ARM, Bastion; TLS from a test CA
# made here), an sshd, and ssh client settings that use bastion-stdio as
# their ProxyCommand.  Nothing here talks to anything but 127.0.0.1.
#
# Use: . tests/lib/common.sh; world_start; ...; world_stop

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Managed identity must never look for the real IMDS (169.254.169.254)
# from a test: point it at a loopback port where nothing listens, and
# keep the other managed-identity and Azure CLI sources out unless a
# test sets them up itself.  Each test gets its own token cache.  A run
# without settings would ask the public cloud's Entra ID: it gets a
# closed loopback port instead (settings in files and -o still win).
export AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:9
export AZURE_AUTHORITY_HOST=https://127.0.0.1:9
unset IDENTITY_ENDPOINT IDENTITY_HEADER IMDS_ENDPOINT MSI_ENDPOINT MSI_SECRET
unset AZURE_FEDERATED_TOKEN_FILE AZURE_CLIENT_CERTIFICATE_PATH
export AZURE_CONFIG_DIR=/nonexistent/azure-cli
BIN=${BASTION_STDIO:-$TOP/bastion-stdio}
PY=/usr/bin/python3
SUB=00000000-0000-0000-0000-0000000000aa
RG=rg-test
BASTION_ID=/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.Network/bastionHosts/bh-test
DEV_BASTION_ID=/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.Network/bastionHosts/bh-dev
TENANT=11111111-2222-3333-4444-555555555555
CLIENT=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee
SECRET=test-secret-$RANDOM$RANDOM
VM=vm1
CERT_CLIENT=cccccccc-0000-0000-0000-000000000001
FED_CLIENT=cccccccc-0000-0000-0000-000000000002
FED_TOKEN=federated-$RANDOM$RANDOM
USER_UPN=alice@example.invalid
USER_RT=refresh-$RANDOM$RANDOM
MI_CLIENT=cccccccc-0000-0000-0000-000000000003
MI_OBJECT=cccccccc-0000-0000-0000-000000000004
MI_RESOURCE=/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi1
APPSERVICE_HEADER=appservice-$RANDOM$RANDOM

# Polls a command for up to $1 tenths of a second.
wait_for() {
	local n=$1
	shift
	while ! "$@" 2>/dev/null; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		sleep 0.1
	done
}

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

emu_config() {
	cat <<JSON
{"tenants": {"$TENANT": {"clients": {"$CLIENT": {"secret": "$SECRET"},
   "$CERT_CLIENT": {"certificate": "$W/pki/sp.pem"},
   "$FED_CLIENT": {"federated_token": "$FED_TOKEN"}}}},
 "users": {"$USER_UPN": {"tenant": "$TENANT", "oid": "0000aaaa-1111-2222-3333-444455556666",
                         "refresh_tokens": ["$USER_RT"]}},
 "managed_identity": {"system": true, "tenant": "$TENANT",
     "user_assigned": [{"client_id": "$MI_CLIENT", "object_id": "$MI_OBJECT",
                        "resource_id": "$MI_RESOURCE"}]},
 "appservice_header": "$APPSERVICE_HEADER",
 "arc_token_dir": "$W/arc",
 "cloudshell_user": "$USER_UPN",
 "device_code_interval_s": 1,
 "bastions": {"$BASTION_ID": {"sku": "Standard", "enableTunneling": true,
                              "enableIpConnect": true},
               "$DEV_BASTION_ID": {"sku": "Developer"}},
 "vms": {"/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.Compute/virtualMachines/$VM": {"ip": "127.0.0.1"},
         "/subscriptions/$SUB/resourceGroups/rg-other/providers/Microsoft.Compute/virtualMachines/vm2": {"ip": "127.0.0.1"}},
 "ip_map": {"10.0.0.4": "127.0.0.1"},
 "token_lifetime_s": 3599}
JSON
}

# A service principal's certificate: RSA key and certificate in one PEM
# file, and the same in PKCS#12 with a password.
sp_certificate() {
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=sp \
	    -keyout "$W/pki/sp.key" -out "$W/pki/sp.crt" 2>/dev/null &&
	cat "$W/pki/sp.key" "$W/pki/sp.crt" >"$W/pki/sp.pem" &&
	openssl pkcs12 -export -inkey "$W/pki/sp.key" -in "$W/pki/sp.crt" \
	    -passout pass:pfx-pass -out "$W/pki/sp.pfx"
}

emu_start() {
	sh "$TOP/tests/lib/mkca.sh" "$W/pki" >/dev/null
	sp_certificate || return 1
	mkdir -p "$W/arc"
	chmod 700 "$W/arc"
	emu_config >"$W/emu.json"
	$PY "$TOP/tests/emulator/azure_emu.py" --cert "$W/pki/server.pem" \
	    --key "$W/pki/server.key" --config "$W/emu.json" \
	    --port-file "$W/emu.port" --plain-port-file "$W/emu.plain" \
	    --fixtures "$FIXTURES" ${EMU_VERBOSE:+--verbose} 2>"$W/emu.log" &
	EMU_PID=$!
	wait_for 100 test -s "$W/emu.port" || { cat "$W/emu.log"; return 1; }
	EMU_PORT=$(cat "$W/emu.port")
	EMU_PLAIN=http://127.0.0.1:$(cat "$W/emu.plain")
	EMU=https://localhost:$EMU_PORT
}

# Test-control requests to the emulator.
emu() {
	local method=$1 path=$2
	shift 2
	curl -sS --cacert "$W/pki/ca.pem" -X "$method" "$EMU$path" "$@"
}

emu_faults() { emu POST /_emu/faults -H 'Content-Type: application/json' -d "$1" >/dev/null; }
# Back to the starting state: no faults, no sessions, the first config.
emu_reset() {
	emu POST /_emu/reset >/dev/null
	emu POST /_emu/config -H 'Content-Type: application/json' \
	    -d @"$W/emu.json" >/dev/null
}

# Replaces the test Bastion's ARM settings, e.g. '{"sku": "Basic"}', and
# forgets what bastion-stdio had cached of the old ones.
emu_bastion() {
	[ -n "${T:-}" ] && rm -rf "$T/cache"
	emu POST /_emu/config -H 'Content-Type: application/json' \
	    -d "{\"bastions\": {\"$BASTION_ID\": $1}}" >/dev/null
}
# Ids of a hub-and-spoke world for the discovery tests: a hub network
# (its Bastion bh-hub), an application network peered with it, and an
# isolated one.
net_ids() {
	S=/subscriptions/$SUB
	NET=providers/Microsoft.Network
	CMP=providers/Microsoft.Compute
	HUB=$S/resourceGroups/hub/$NET/virtualNetworks/vnet-hub
	APP=$S/resourceGroups/app/$NET/virtualNetworks/vnet-app
	ISO=$S/resourceGroups/iso/$NET/virtualNetworks/vnet-iso
	BH_HUB=$S/resourceGroups/hub/$NET/bastionHosts/bh-hub
	WEB=$S/resourceGroups/app/$CMP/virtualMachines/web
	POOL=$S/resourceGroups/app/$CMP/virtualMachineScaleSets/pool
}

# The smallest such world: bh-hub in the hub, the VM web in the peered
# application network (private IP 10.1.0.4).
hub_world() {
	net_ids
	emu POST /_emu/config -H 'Content-Type: application/json' -d @- \
	    >/dev/null <<JSON
{"vnets": {"$HUB": {"address_prefixes": ["10.0.0.0/16"], "peerings": ["$APP"]},
           "$APP": {"address_prefixes": ["10.1.0.0/16"], "peerings": ["$HUB"]}},
 "bastions": {"$BH_HUB": {"sku": "Standard", "vnet": "$HUB"}},
 "vms": {"$WEB": {"ip": "127.0.0.1", "private_ip": "10.1.0.4", "vnet": "$APP"}}}
JSON
}

# Settings with only where Azure is (no Bastion, no target), into $1.
zero_conf() {
	printf '%s\n' "ArmEndpoint $EMU" "AuthorityHost $EMU" \
	    "CAFile $W/pki/ca.pem" "ConnectTimeout 10" >"$1"
}

emu_active_sessions() {
	emu GET /_emu/sessions | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["active"]))'
}

sshd_start() {
	mkdir -p "$W/ssh" /run/sshd
	chmod 700 "$W/ssh"
	ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/host_key"
	ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/id"
	cp "$W/ssh/id.pub" "$W/ssh/authorized_keys"
	SSHD_PORT=$(free_port)
	cat >"$W/ssh/sshd_config" <<CONF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $W/ssh/host_key
AuthorizedKeysFile $W/ssh/authorized_keys
PidFile $W/ssh/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
CONF
	/usr/sbin/sshd -f "$W/ssh/sshd_config" -E "$W/ssh/sshd.log"
	wait_for 50 test -s "$W/ssh/sshd.pid"
	SSHD_PID=$(cat "$W/ssh/sshd.pid")
}

# The bastion-stdio configuration and the ssh client configuration.
client_config() {
	cat >"$W/bastion.conf" <<CONF
# bastion-stdio settings for the emulated Azure
Host *
	Bastion $BASTION_ID
	ArmEndpoint $EMU
	AuthorityHost $EMU
	CAFile $W/pki/ca.pem
	ConnectTimeout 10
CONF
	cat >"$W/ssh_config" <<CONF
Host *
	ProxyCommand $BIN -F $W/bastion.conf %h %p
	Port $SSHD_PORT
	User $(id -un)
	IdentityFile $W/ssh/id
	IdentitiesOnly yes
	UserKnownHostsFile $W/ssh/known_hosts
	StrictHostKeyChecking accept-new
	BatchMode yes
	LogLevel ERROR
CONF
}

world_start() {
	W=$(mktemp -d /tmp/bastion-stdio-test.XXXXXX)
	export FIXTURES=${FIXTURES:-$(cd "$TOP/../shared/fixtures/azure-rest-api-specs" 2>/dev/null && pwd)}
	export AZURE_TENANT_ID=$TENANT AZURE_CLIENT_ID=$CLIENT
	export AZURE_CLIENT_SECRET=$SECRET XDG_CACHE_HOME=$W/cache
	unset https_proxy HTTPS_PROXY all_proxy ALL_PROXY http_proxy
	emu_start && sshd_start && client_config
}

world_stop() {
	[ -n "${SSHD_PID:-}" ] && kill "$SSHD_PID" 2>/dev/null
	[ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null
	wait 2>/dev/null
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}

# The world's variables, for test scripts run in their own shells.
world_save() {
	local v
	for v in W EMU EMU_PORT EMU_PID EMU_PLAIN SSHD_PORT SSHD_PID FIXTURES \
	    SECRET FED_TOKEN USER_RT APPSERVICE_HEADER; do
		printf '%s=%q\n' "$v" "${!v}"
	done >"$W/world.env"
}

world_load() {
	. "$WORLD_ENV"
	export FIXTURES AZURE_TENANT_ID=$TENANT AZURE_CLIENT_ID=$CLIENT
	export AZURE_CLIENT_SECRET=$SECRET XDG_CACHE_HOME=$T/cache
}

# Assertions for the end-to-end scripts: each failure prints a "#" line
# and marks the script failed; the runner prints one result per script.
FAILED=0
fail() {
	echo "#   $*"
	FAILED=1
}

expect_eq() {
	[ "$1" = "$2" ] || fail "${3:-value}: expected '$2', got '$1'"
}

expect_match() {
	grep -qE -- "$2" "$1" || fail "${3:-$1}: no line matches '$2' in: $(head -c 600 "$1")"
}

expect_no_match() {
	! grep -qE -- "$2" "$1" || fail "${3:-$1}: unexpected '$2' in: $(grep -E -- "$2" "$1" | head -c 600)"
}

expect_empty() {
	[ ! -s "$1" ] || fail "${2:-$1} is not empty: $(head -c 600 "$1")"
}

# Waits until the emulator has no session left (the DELETE may still be
# on its way when the client returns).
expect_no_sessions() {
	wait_for 30 test "$(emu_active_sessions)" = 0 ||
	    fail "sessions left on the Bastion: $(emu GET /_emu/sessions)"
}

# Runs bastion-stdio with the test settings; stdout and stderr go to
# $T/out and $T/err, the status to $RC.
run_bs() {
	"$BIN" ${BS_CONF--F $W/bastion.conf} "$@" >"$T/out" 2>"$T/err"
	RC=$?
}

# Starts a TCP target on loopback; sets TARGET_PORT and TARGET_PID.
target_start() {
	rm -f "$T/target.port"
	$PY "$TOP/tests/lib/tcp_target.py" "$T/target.port" "$@" &
	TARGET_PID=$!
	wait_for 50 test -s "$T/target.port"
	TARGET_PORT=$(cat "$T/target.port")
}

target_stop() {
	kill "$TARGET_PID" 2>/dev/null
	wait "$TARGET_PID" 2>/dev/null
}

# Milliseconds since the epoch, for bounds on how long things take.
now_ms() { date +%s%3N; }

emu_sessions_with() {
	emu GET /_emu/sessions | $PY -c 'import json,sys
s = json.load(sys.stdin)["active"]
sys.exit(0 if any(x["state"] in sys.argv[1:] for x in s) else 1)' "$@"
}
emu_has_open_session() { emu_sessions_with open; }
emu_has_session() { emu_sessions_with issued open; }

# run_bs with stdin held open, as ssh holds it, until the tunnel ends.
run_bs_held() {
	rm -f "$T/held"
	mkfifo "$T/held"
	sleep 60 >"$T/held" &
	local holder=$!
	run_bs "$@" <"$T/held"
	kill $holder 2>/dev/null
	wait $holder 2>/dev/null
}

# A second emulator with another certificate (wrongname, expired);
# sets EMU2_PORT and EMU2_PID.
emu2_start() {
	rm -f "$T/emu2.port"
	$PY "$TOP/tests/emulator/azure_emu.py" --cert "$W/pki/$1.pem" \
	    --key "$W/pki/$1.key" --config "$W/emu.json" \
	    --port-file "$T/emu2.port" --fixtures "$FIXTURES" 2>"$T/emu2.log" &
	EMU2_PID=$!
	wait_for 100 test -s "$T/emu2.port"
	EMU2_PORT=$(cat "$T/emu2.port")
}

# Forgets every credential, so that a test can offer exactly one.
no_credentials() {
	unset AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET \
	    AZURE_CLIENT_CERTIFICATE_PATH AZURE_CLIENT_CERTIFICATE_PASSWORD \
	    AZURE_FEDERATED_TOKEN_FILE IDENTITY_ENDPOINT IDENTITY_HEADER \
	    IMDS_ENDPOINT MSI_ENDPOINT
	export AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:9
	export AZURE_CONFIG_DIR=/nonexistent/azure-cli
	rm -rf "$T/cache"
}

# One of the emulator's counters (see /_emu/counters in azure_emu.py).
emu_counter() {
	emu GET /_emu/counters | $PY -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# How many tokens the emulator issued to one source (issued_<source>).
issued() { emu_counter "issued_$1"; }
