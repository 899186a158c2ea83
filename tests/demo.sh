#!/bin/bash
# The main job, against the local Azure emulator: an ssh session through
# bastion-stdio, with each step of the tunnel shown.  Installs what is
# missing and builds first.  Everything runs on 127.0.0.1 and is removed
# at the end.  Set DEMO_SHELL=1 to get an interactive shell on the "VM".

cd "$(dirname "$0")/.." || exit 2
tests/deps.sh || exit 2
make -s >/dev/null || exit 2
. tests/lib/common.sh

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

world_start || exit 1
trap world_stop EXIT
sed -i 's|ConnectTimeout 10|ConnectTimeout 10\n\tLogLevel VERBOSE|' "$W/bastion.conf"

say "A test CA, the Azure emulator (Entra ID, ARM, Bastion) on https://localhost:$EMU_PORT"
say "and an sshd on 127.0.0.1:$SSHD_PORT are up.  The ssh configuration is:"
sed 's/^/    /' "$W/ssh_config"
say "and bastion-stdio's own ($W/bastion.conf):"
sed 's/^/    /' "$W/bastion.conf"

say "\$ ssh vm1 'echo hello from \$(hostname); uname -sr'"
ssh -F "$W/ssh_config" vm1 'echo hello from $(hostname); uname -sr'
echo "(ssh exit status $?)"

if [ -n "${DEMO_SHELL:-}" ] && [ -t 0 ]; then
	say "An interactive shell through the tunnel; exit to end the demo."
	ssh -F "$W/ssh_config" -t vm1
fi

# ssh does not wait for its ProxyCommand to finish the DELETE
wait_for 30 test "$(emu_active_sessions)" = 0
say "Sessions left on the Bastion (each process deletes its own):"
emu GET /_emu/sessions
echo
say "What the emulator saw:"
emu GET /_emu/requests | $PY -c 'import json,sys
for r in json.load(sys.stdin):
    print("    %-6s %-70.70s %s" % (r["method"], r["path"], r["status"]))'
