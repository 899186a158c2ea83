#!/bin/bash
# make bench: bastion-stdio beside the limit, measured side by side in
# one run on loopback, medians of several runs (see BENCHMARKS.md).
#
#   throughput   1 GiB through ssh, down and up: direct TCP (the limit),
#                ProxyCommand bastion-stdio, ProxyCommand bench/azrelay.py
#                (works the way the Azure CLI does), ProxyCommand "probe
#                tunnel" (a lean C client: what the machine allows through
#                the relay); the data plane's own ceiling, for the C relay
#                and for the Python emulator
#   memory, CPU  peak RSS and CPU seconds per GiB of each ProxyCommand
#   set-up       process start to the first byte from the target, cold
#                and warm cache, at 0 ms and (with tc netem, in a network
#                namespace made here) at BENCH_RTT_MS round-trip time;
#                and by settings (Bastion and TargetResourceGroup, the
#                Bastion alone, none: Resource Graph finds the rest) with
#                a cold cache, the token alone and a warm cache, in time
#                and in the requests of each kind the servers counted
#   fan-out      BENCH_FANOUT sessions started together
#
# Entra ID and ARM are the Python emulator (tests/emulator); the Bastion
# data plane is bench/relay, a C relay, because the emulator relays
# slower than ssh runs (its ceiling is printed).  Nothing but loopback
# and the namespace made here is used.  Not part of CI.
#
# Settings (environment): BENCH_RUNS=5 BENCH_BYTES=1073741824
# BENCH_SETUP_RUNS=11 BENCH_FANOUT=100 BENCH_FANOUT_RUNS=3
# BENCH_RTT_MS=20 BENCH_EMU_DATAPLANE=0 (1: also ssh through the
# emulator's own relay) BENCH_OUT=dir (keep the raw results there)
# BASTION_STDIO=path (default: the build in this tree)
# BENCH_BASELINE=path (another bastion-stdio, say an earlier commit's
# build, measured beside this one in the throughput part)
# BENCH_ONLY=throughput (the data-plane ceilings and throughput only).
#
# bench/run.sh --setup (make bench-setup) runs the set-up part alone:
# some 20 seconds instead of 7 minutes.
#
# bench/run.sh --setup-only RTT RESULTS  is how the script runs itself
# inside the namespace; it appends set-up rows for that RTT to RESULTS.

set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
. "$BENCH/../tests/lib/common.sh"

RUNS=${BENCH_RUNS:-5}
BYTES=${BENCH_BYTES:-1073741824}
SETUP_RUNS=${BENCH_SETUP_RUNS:-11}
FANOUT=${BENCH_FANOUT:-100}
FANOUT_RUNS=${BENCH_FANOUT_RUNS:-3}
RTT_MS=${BENCH_RTT_MS:-20}
PROBE=$BENCH/probe
RELAY=$BENCH/relay
RG_ID=/subscriptions/$SUB/resourceGroups/$RG/providers
BID_RELAY=$RG_ID/Microsoft.Network/bastionHosts/bh-relay
RID=$RG_ID/Microsoft.Compute/virtualMachines/$VM
# the world of zero configuration: the VM web in a network peered with
# the hub, whose Bastion (on the C relay) reaches it
S_ID=/subscriptions/$SUB/resourceGroups
HUB=$S_ID/hub/providers/Microsoft.Network/virtualNetworks/vnet-hub
APP=$S_ID/app/providers/Microsoft.Network/virtualNetworks/vnet-app
BID_HUB=$S_ID/hub/providers/Microsoft.Network/bastionHosts/bh-hub
WEB=$S_ID/app/providers/Microsoft.Compute/virtualMachines/web
NS=
PIDS=

say() { echo "bench: $*" >&2; }
row() { local IFS=$'\t'; echo "$*" >>"$RESULTS"; }

cleanup() {
	local p
	for p in $PIDS; do
		kill "$p" 2>/dev/null
	done
	world_stop 2>/dev/null
	if [ -n "$NS" ]; then
		# only processes of the namespace made here
		for p in $(ip netns pids "$NS" 2>/dev/null); do
			kill "$p" 2>/dev/null
		done
		ip netns del "$NS" 2>/dev/null
	fi
	# the raw results, unless asked to keep them (not in --setup-only)
	[ -n "${BENCH_OUT:-}" ] || [ -z "${RESULTS_DIR:-}" ] ||
	    rm -rf "$RESULTS_DIR"
}

# Stops with a message if the world is gone: on a shared machine another
# session's clean-up may remove /tmp/bastion-stdio-test.* or its servers,
# and a table with holes would look like a result.
check_world() {
	# the two servers answer, sshd (not our child, so never a zombie)
	# is there
	[ -d "$W/log" ] && counters >/dev/null &&
	    kill -0 "$SSHD_PID" 2>/dev/null && return
	say "$W or its servers went away during the run: no table"
	exit 1
}

# One background process of ours, ended by cleanup().
bg() {
	"$@" &
	PIDS="$PIDS $!"
}

# The emulator (Entra ID, ARM), sshd, the C relay and a TCP target.
bench_world() {
	world_start || return 1
	mkdir -p "$W/log" "$W/home"
	export HOME=$W/home
	bg "$RELAY" -c "$W/pki/server.pem" -k "$W/pki/server.key" \
	    -p "$W/relay.port" 2>"$W/log/relay.err"
	RELAY_PID=$!
	bg "$PROBE" target "$W/target.port"
	wait_for 50 test -s "$W/relay.port" &&
	    wait_for 50 test -s "$W/target.port" || return 1
	RELAY_PORT=$(cat "$W/relay.port")
	TARGET_PORT=$(cat "$W/target.port")
	# bh-test keeps the emulator's own data plane; bh-relay and bh-hub
	# are the C relay
	emu POST /_emu/config -H 'Content-Type: application/json' -d "{
	    \"vnets\": {
	      \"$HUB\": {\"address_prefixes\": [\"10.0.0.0/16\"],
	                \"peerings\": [\"$APP\"]},
	      \"$APP\": {\"address_prefixes\": [\"10.1.0.0/16\"],
	                \"peerings\": [\"$HUB\"]}},
	    \"bastions\": {
	      \"$BASTION_ID\": {\"sku\": \"Standard\",
	                       \"enableTunneling\": true},
	      \"$BID_RELAY\": {\"sku\": \"Standard\", \"enableTunneling\": true,
	                      \"dnsName\": \"localhost:$RELAY_PORT\"},
	      \"$BID_HUB\": {\"sku\": \"Standard\", \"enableTunneling\": true,
	                    \"dnsName\": \"localhost:$RELAY_PORT\",
	                    \"vnet\": \"$HUB\"}},
	    \"vms\": {
	      \"$RID\": {\"ip\": \"127.0.0.1\"},
	      \"$WEB\": {\"ip\": \"127.0.0.1\", \"private_ip\": \"10.1.0.4\",
	                \"vnet\": \"$APP\"}}}" \
	    >/dev/null || return 1
	# Entra and ARM on two host names, as login.microsoftonline.com and
	# management.azure.com are, so that no client reuses a connection
	# between them that it could not reuse against Azure.
	# the resource group given, so that nothing is looked up
	conf "$BID_RELAY" "$W/pki/ca.pem" TargetResourceGroup "$RG" \
	    >"$W/bs-relay.conf"
	conf "$BASTION_ID" "$W/pki/ca.pem" TargetResourceGroup "$RG" \
	    >"$W/bs-emu.conf"
	# ways to reach web: everything set, the Bastion alone, nothing
	conf "$BID_HUB" "$W/pki/ca.pem" TargetResourceGroup app \
	    >"$W/bs-set.conf"
	conf "$BID_HUB" "$W/pki/ca.pem" >"$W/bs-bastion.conf"
	conf "" "$W/pki/ca.pem" >"$W/bs-zero.conf"
	# the cost of a real trust store: Debian's bundle plus the test CA
	cat /etc/ssl/certs/ca-certificates.crt "$W/pki/ca.pem" \
	    >"$W/bundle.pem" 2>/dev/null
	conf "$BID_RELAY" "$W/bundle.pem" >"$W/bs-bundle.conf"
	emu POST "/$TENANT/oauth2/v2.0/token" \
	    -d "grant_type=client_credentials&client_id=$CLIENT" \
	    -d "client_secret=$SECRET" \
	    -d "scope=https://management.azure.com/.default" |
	    $PY -c 'import json, sys
print(json.load(sys.stdin)["access_token"])' >"$W/aztoken" || return 1
	REF="$PY $BENCH/azrelay.py --authority https://127.0.0.1:$EMU_PORT"
	REF="$REF --arm https://localhost:$EMU_PORT --ca $W/pki/ca.pem"
	REF="$REF --bastion"
}

# Settings: the Bastion (none if empty), the CA file, then one more
# keyword and its value if given.
conf() {
	echo "Host *"
	[ -n "$1" ] && printf '\tBastion %s\n' "$1"
	[ $# -gt 2 ] && printf '\t%s %s\n' "$3" "$4"
	cat <<CONF
	ArmEndpoint https://localhost:$EMU_PORT
	AuthorityHost https://127.0.0.1:$EMU_PORT
	CAFile $2
	ConnectTimeout 30
	Credential environment
CONF
}

# Counters of the emulator and the relay, as "name=value" words.
counters() {
	{
		emu GET /_emu/counters
		echo
		curl -sS --cacert "$W/pki/ca.pem" \
		    "https://localhost:$RELAY_PORT/_bench/stats"
	} 2>/dev/null | $PY -c 'import json,sys
e, r = (json.loads(l) for l in sys.stdin.read().split("\n") if l.strip())
print(" ".join(f"{k}={v}" for k, v in [("emu_conn", e.get("connections", 0)),
    ("entra", e.get("entra", 0)), ("arm", e.get("arm", 0)),
    ("graph", e.get("resourcegraph", 0)), ("vm_start", e.get("vm_start", 0)),
    ("relay_conn", r["connections"]), ("tokens", r["tokens"]),
    ("upgrades", r["upgrades"]), ("deletes", r["deletes"]),
    ("active", r["active"])]))' 2>/dev/null
}

# Milliseconds of one "probe start" of a command: first byte, and exit.
first_byte() {
	local out
	out=$("$PROBE" start 1 -- "$@" 2>>"$W/log/setup.err") || return 1
	set -- $out
	echo "$1"
}

# ---------------------------------------------------------------- ceiling

ceilings() {
	local r d mibs ebytes=$((BYTES / 4))
	for r in $(seq "$RUNS"); do
		for d in down up; do
			mibs=$("$PROBE" blast "localhost:$RELAY_PORT" \
			    "$W/pki/ca.pem" "$W/aztoken" "$RID" "$TARGET_PORT" \
			    "$d" "$BYTES" 4096 2>>"$W/log/ceiling.err") &&
			    row ceiling relay "$d" "$r" "$mibs"
			mibs=$("$PROBE" blast "localhost:$EMU_PORT" \
			    "$W/pki/ca.pem" "$W/aztoken" "$RID" "$TARGET_PORT" \
			    "$d" "$ebytes" 4096 2>>"$W/log/ceiling.err") &&
			    row ceiling emulator "$d" "$r" "$mibs"
		done
	done
}

# ---------------------------------------------------------------- ssh

# CPU seconds the relay has used so far.
relay_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' \
	    "/proc/$RELAY_PID/stat"
}

# One transfer: client dir run.  Appends a row: tput client dir run
# MiB/s peak-RSS-KiB user-s sys-s status relay-cpu-s stderr-lines.
transfer() {
	local client=$1 dir=$2 run=$3 proxy cmd ru=$W/ru.$1 t0 t1 got c0
	local log=$W/log/tput-$1-$2-$3.err
	case $client in
	direct) cmd= ;;
	bastion-stdio) cmd="$BIN -F $W/bs-relay.conf %h %p" ;;
	bastion-stdio-emu) cmd="$BIN -F $W/bs-emu.conf %h %p" ;;
	baseline) cmd="$BENCH_BASELINE -F $W/bs-relay.conf %h %p" ;;
	reference) cmd="$REF $BID_RELAY %h %p" ;;
	reference-emu) cmd="$REF $BASTION_ID %h %p" ;;
	lean) cmd="$PROBE tunnel localhost:$RELAY_PORT $W/pki/ca.pem"
	    cmd="$cmd $W/aztoken $RID %p" ;;
	esac
	proxy=(-o "ProxyCommand=$PROBE rusage $ru -- $cmd")
	[ "$client" = direct ] &&
	    proxy=(-o ProxyCommand=none -o HostName=127.0.0.1)
	rm -f "$ru"
	c0=$(relay_cpu)
	t0=$(date +%s%N)
	if [ "$dir" = down ]; then
		got=$(ssh -F "$W/ssh_config" "${proxy[@]}" "$VM" \
		    "cat $W/zero.bin" 2>"$log" | wc -c)
	else
		got=$(ssh -F "$W/ssh_config" "${proxy[@]}" "$VM" "wc -c" \
		    <"$W/zero.bin" 2>"$log")
	fi
	t1=$(date +%s%N)
	if [ "$got" != "$BYTES" ]; then
		say "$client $dir run $run: $got bytes of $BYTES:" \
		    "$(head -c 300 "$log")"
		row tput "$client" "$dir" "$run" FAILED
		return
	fi
	if [ "$client" = direct ] || ! wait_for 100 test -s "$ru"; then
		echo "- - - -" >"$ru"
	fi
	# shellcheck disable=SC2046 # the rusage file's four fields
	row tput "$client" "$dir" "$run" \
	    "$(awk "BEGIN { printf \"%.1f\", $BYTES / 1048576 / \
	    (($t1 - $t0) / 1e9) }")" \
	    $(cat "$ru") "$(awk "BEGIN { print $(relay_cpu) - $c0 }")" \
	    "$(wc -l <"$log")"
}

throughput() {
	local r d c clients="direct bastion-stdio reference lean"
	[ -n "${BENCH_BASELINE:-}" ] && clients="$clients baseline"
	[ "${BENCH_EMU_DATAPLANE:-0}" = 1 ] &&
	    clients="$clients bastion-stdio-emu reference-emu"
	truncate -s "$BYTES" "$W/zero.bin"
	for r in $(seq "$RUNS"); do
		for d in down up; do
			for c in $clients; do
				say "throughput run $r/$RUNS: $c $d"
				transfer "$c" "$d" "$r"
				check_world
			done
		done
	done
	row info cipher "$(ssh -v -F "$W/ssh_config" -o ProxyCommand=none \
	    -o HostName=127.0.0.1 "$VM" true 2>&1 | sed -n \
	    's/.*kex: server->client cipher: \([^ ]*\).*/\1/p' | head -1)"
}

# ---------------------------------------------------------------- set-up

# Client round trips of one run, from the servers' counters: two for
# each new TLS connection (TCP, then TLS 1.3), one for each request;
# the DELETE after the tunnel, on its own connection, is left out.
round_trips() {
	local name=$1 before after
	shift
	before=$(counters) &&
	    "$PROBE" start 1 -- "$@" >/dev/null 2>>"$W/log/setup.err" &&
	    after=$(counters) || return
	$PY - "$name" "$before" "$after" "$RTT" >>"$RESULTS" <<'EOF'
import sys
name, b, a, rtt = sys.argv[1:]
b = dict(x.split("=") for x in b.split())
a = dict(x.split("=") for x in a.split())
d = {k: int(a[k]) - int(b[k]) for k in a}
# each counters() call opened one connection to each server
conns = d["emu_conn"] - 1 + d["relay_conn"] - 1 - d["deletes"]
reqs = d["entra"] + d["arm"] + d["tokens"] + d["upgrades"]
print(f"rts\t{name}\t{rtt}\t{2 * conns + reqs}\t{conns}\t{reqs}")
EOF
}

# One -v timing of a run, or "-".
step() {
	local v
	v=$(sed -n "$1" "$W/log/verbose.$2" | head -1)
	echo "${v:--}"
}

# One connection to web with settings $1 (set, bastion, zero) and cache $2
# (cold: empty; token: the ARM token alone; warm: all of an earlier
# run), run $3.  Appends a row: config settings cache rtt run ms
# counters-before counters-after.
by_config() {
	local dir=$W/cache-run before after ms
	case $2 in
	cold) rm -rf "$dir" ;;
	token) rm -rf "$dir" && cp -a "$W/cache-token" "$dir" ;;
	warm) dir=$W/cache-warm-$1 ;;
	esac
	before=$(counters) || return
	ms=$(XDG_CACHE_HOME=$dir first_byte "$BIN" -F "$W/bs-$1.conf" web \
	    "$TARGET_PORT") || ms=FAILED
	after=$(counters) || return
	row config "$1" "$2" "$RTT" "$3" "$ms" "$before" "$after"
}

# The caches by_config() starts from: a warm one per settings, and one
# with only the token (ArmCacheTime 0 keeps no ARM answer).
prime_by_config() {
	local c
	for c in set bastion zero; do
		XDG_CACHE_HOME=$W/cache-warm-$c first_byte "$BIN" \
		    -F "$W/bs-$c.conf" web "$TARGET_PORT" >/dev/null
	done
	XDG_CACHE_HOME=$W/cache-token first_byte "$BIN" -F "$W/bs-set.conf" \
	    -o ArmCacheTime=0 web "$TARGET_PORT" >/dev/null
}

setup_latency() {
	local r c k ms warm=$W/cache-warm fb=$W/cache-cold
	say "set-up latency at $RTT ms RTT: $SETUP_RUNS runs"
	# prime the warm cache (what a cache would keep between runs)
	XDG_CACHE_HOME=$warm first_byte "$BIN" -F "$W/bs-relay.conf" "$VM" \
	    "$TARGET_PORT" >/dev/null
	prime_by_config
	for r in $(seq "$SETUP_RUNS"); do
		for c in set bastion zero; do
			for k in cold token warm; do
				by_config "$c" "$k" "$r"
			done
		done
		ms=$(first_byte "$PROBE" setup "localhost:$RELAY_PORT" \
		    "$W/pki/ca.pem" "$W/aztoken" "$RID" "$TARGET_PORT") &&
		    row setup floor warm "$RTT" "$r" "$ms"
		rm -rf "$fb"
		ms=$(XDG_CACHE_HOME=$fb first_byte "$BIN" \
		    -F "$W/bs-relay.conf" "$VM" "$TARGET_PORT") &&
		    row setup bastion-stdio cold "$RTT" "$r" "$ms"
		ms=$(XDG_CACHE_HOME=$warm first_byte "$BIN" \
		    -F "$W/bs-relay.conf" "$VM" "$TARGET_PORT") &&
		    row setup bastion-stdio warm "$RTT" "$r" "$ms"
		rm -rf "$fb"
		ms=$(XDG_CACHE_HOME=$fb first_byte "$BIN" \
		    -F "$W/bs-bundle.conf" "$VM" "$TARGET_PORT") &&
		    row setup bastion-stdio-bundle cold "$RTT" "$r" "$ms"
		ms=$(first_byte $REF "$BID_RELAY" "$VM" "$TARGET_PORT") &&
		    row setup reference cold "$RTT" "$r" "$ms"
	done
	# where bastion-stdio's time goes: its own -v timings (ms from after
	# the settings are read) beside the first byte (from process start)
	for r in $(seq $(((SETUP_RUNS + 1) / 2))); do
		rm -rf "$fb"
		ms=$(XDG_CACHE_HOME=$fb first_byte "$BIN" \
		    -F "$W/bs-relay.conf" -o LogFile="$W/log/verbose.$r" \
		    -o LogLevel=VERBOSE "$VM" "$TARGET_PORT") || continue
		row steps "$RTT" "$r" "$ms" \
		    "$(step 's/.*ARM token (\([0-9]*\) ms).*/\1/p' "$r")" \
		    "$(step 's/.*Bastion .* (\([0-9]*\) ms).*/\1/p' "$r")"
	done
	rm -rf "$fb"
	XDG_CACHE_HOME=$fb round_trips bastion-stdio-cold "$BIN" \
	    -F "$W/bs-relay.conf" "$VM" "$TARGET_PORT"
	XDG_CACHE_HOME=$warm round_trips bastion-stdio-warm "$BIN" \
	    -F "$W/bs-relay.conf" "$VM" "$TARGET_PORT"
	round_trips floor "$PROBE" setup "localhost:$RELAY_PORT" \
	    "$W/pki/ca.pem" "$W/aztoken" "$RID" "$TARGET_PORT"
	round_trips reference $REF "$BID_RELAY" "$VM" "$TARGET_PORT"
	rm -rf "$fb"
}

# Set-up latency again at RTT_MS, inside a network namespace whose
# loopback delays every packet by RTT_MS/2 (tc netem).  The emulator
# and the relay listen on loopback only, so the delay goes on the
# namespace's lo; nothing leaves the namespace.
setup_latency_rtt() {
	local half
	half=$(awk "BEGIN { print $RTT_MS / 2 }")
	NS=bastion-stdio-bench-$$
	if ! ip netns add "$NS" 2>"$W/log/netns.err"; then
		NS=
		row info rtt_na "ip netns add failed:" \
		    "$(head -1 "$W/log/netns.err")"
		return
	fi
	if ! ip netns exec "$NS" ip link set lo up 2>>"$W/log/netns.err" ||
	    ! ip netns exec "$NS" tc qdisc add dev lo root netem \
	    delay "${half}ms" 2>>"$W/log/netns.err"; then
		row info rtt_na "tc netem failed: $(tail -1 "$W/log/netns.err")"
	else
		say "set-up latency at $RTT_MS ms RTT, in namespace $NS"
		ip netns exec "$NS" "$0" --setup-only "$RTT_MS" "$RESULTS" ||
		    row info rtt_na "the run inside the namespace failed"
	fi
	for p in $(ip netns pids "$NS" 2>/dev/null); do
		kill "$p" 2>/dev/null
	done
	ip netns del "$NS"
	NS=
}

# ---------------------------------------------------------------- fan-out

fan_out() {
	local r before after out
	for r in $(seq "$FANOUT_RUNS"); do
		say "fan-out run $r/$FANOUT_RUNS: $FANOUT sessions"
		before=$(counters)
		# one cache for all of them, empty at first: what a cache
		# shared between processes would have to cope with
		out=$(XDG_CACHE_HOME=$W/cache-fan-$r "$PROBE" start \
		    "$FANOUT" -- "$BIN" -F "$W/bs-relay.conf" "$VM" \
		    "$TARGET_PORT" 2>>"$W/log/fanout.err")
		after=$(counters)
		row fanout "$r" $out "$before" "$after"
		wait_for 100 test "$(counters | tr ' ' '\n' |
		    sed -n 's/^active=//p')" = 0 || :
	done
}

# ---------------------------------------------------------------- main

# On ^C, die of SIGINT after cleaning up, so that a parent shell (the
# run outside the namespace, make) stops too instead of going on.
trap cleanup EXIT
trap 'trap - INT EXIT; cleanup; kill -INT $$' INT
trap 'exit 143' TERM

if [ "${1:-}" = --setup-only ]; then
	RTT=$2
	RESULTS=$3
	bench_world || exit 1
	setup_latency
	check_world
	exit 0
fi

for tool in "$BIN" "$PROBE" "$RELAY"; do
	[ -x "$tool" ] || { say "$tool is missing: run make bench"; exit 1; }
done
command -v ssh >/dev/null && [ -x /usr/sbin/sshd ] ||
    { say "ssh and sshd are needed"; exit 1; }
$PY -c 'import websocket' 2>/dev/null ||
    { say "python3-websocket is needed: apt-get install python3-websocket"
      exit 1; }
RESULTS_DIR=${BENCH_OUT:-$(mktemp -d /tmp/bastion-stdio-bench.XXXXXX)}
mkdir -p "$RESULTS_DIR"
RESULTS=$RESULTS_DIR/results.tsv
: >"$RESULTS"
START=$(date +%s)
bench_world || { say "cannot start the benchmark world"; exit 1; }
row info date "$(date -u '+%Y-%m-%d %H:%M UTC')"
row info machine "$(uname -srm); $(nproc) CPUs: $(sed -n \
    's/^model name[^:]*: //p' /proc/cpuinfo | head -1); $(awk \
    '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
row info versions "$("$BIN" -V 2>&1 | head -1); $(ssh -V 2>&1)"
row info git "$(git -C "$BENCH/.." describe --always --dirty 2>/dev/null ||
    echo "unknown (not a git checkout)")"
row info load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
row info bytes "$BYTES"
row info runs "$RUNS"
row info setup_runs "$SETUP_RUNS"
row info rtt_ms "$RTT_MS"
RTT=0
if [ "${1:-}" = --setup ]; then
	setup_latency
	check_world
elif [ "${BENCH_ONLY:-}" = throughput ]; then
	ceilings
	check_world
	throughput
else
	ceilings
	check_world
	throughput
	setup_latency
	check_world
	fan_out
	check_world
fi
[ "${BENCH_ONLY:-}" = throughput ] || setup_latency_rtt
row info load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
row info seconds "$(($(date +%s) - START))"
cp -r "$W/log" "$RESULTS_DIR/" 2>/dev/null
$PY "$BENCH/report.py" "$RESULTS"
