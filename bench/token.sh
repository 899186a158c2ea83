#!/bin/bash
# make bench-token: time to an ARM token, per credential source, with a
# cold cache (the source is asked) and a warm one (the cache answers),
# median of BENCH_TOKEN_RUNS runs each, against the local emulator.
# The figure is bastion-stdio's own "ARM token (N ms)" line at -v: the
# credential step alone, in whole milliseconds.  Loopback only; not in CI.

set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
. "$BENCH/../tests/lib/common.sh"
RUNS=${BENCH_TOKEN_RUNS:-9}

world_start >/dev/null || exit 1
world_save
trap 'target_stop; world_stop' EXIT
T=$W/bench-token
mkdir -p "$T" "$W/azure"
target_start send 1 >/dev/null

# One run: prints the milliseconds to the token.
token_ms() {
	"$BIN" -F "$W/bastion.conf" -v vm1 "$TARGET_PORT" </dev/null 2>&1 \
	    >/dev/null | sed -n 's/.*ARM token (\([0-9]*\) ms).*/\1/p'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "?")}'; }

# source name, then the environment that selects it
measure() {
	local name=$1 cold warm i
	shift
	cold=$(for i in $(seq "$RUNS"); do
		rm -rf "$T/cache"
		env "$@" XDG_CACHE_HOME="$T/cache" bash -c "$(declare -f token_ms); BIN=$BIN W=$W TARGET_PORT=$TARGET_PORT token_ms"
	done | median)
	warm=$(for i in $(seq "$RUNS"); do
		env "$@" XDG_CACHE_HOME="$T/cache" bash -c "$(declare -f token_ms); BIN=$BIN W=$W TARGET_PORT=$TARGET_PORT token_ms"
	done | median)
	printf '%-22s %8s ms %8s ms\n' "$name" "$cold" "$warm"
}

none="-u AZURE_TENANT_ID -u AZURE_CLIENT_ID -u AZURE_CLIENT_SECRET"
printf '%-22s %11s %11s\n' "source" "cold" "warm"
measure "client secret"
measure "certificate (PEM)" -u AZURE_CLIENT_SECRET \
    AZURE_CLIENT_ID=$CERT_CLIENT AZURE_CLIENT_CERTIFICATE_PATH=$W/pki/sp.pem
printf '%s\n' "$FED_TOKEN" >"$T/federated"
measure "workload identity" -u AZURE_CLIENT_SECRET \
    AZURE_CLIENT_ID=$FED_CLIENT AZURE_FEDERATED_TOKEN_FILE=$T/federated
measure "managed identity IMDS" $none \
    AZURE_POD_IDENTITY_AUTHORITY_HOST=$EMU_PLAIN
measure "App Service" $none IDENTITY_ENDPOINT=$EMU_PLAIN/msi/token \
    IDENTITY_HEADER=$APPSERVICE_HEADER
