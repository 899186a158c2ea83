# Bad HOST, PORT, options and settings fail before any network call, with
# one line on stderr, nothing on stdout and a documented exit status.

check() {	# status regex args...
	local want=$1 re=$2
	shift 2
	"$BIN" "$@" </dev/null >"$T/out" 2>"$T/err"
	expect_eq $? "$want" "exit status for: $*"
	expect_match "$T/err" "$re" "message for: $*"
	expect_empty "$T/out" "stdout for: $*"
}

F="-F $W/bastion.conf"
check 2 'usage: bastion-stdio' $F vm1
check 2 'usage: bastion-stdio' $F vm1 22 extra
check 2 'usage: bastion-stdio' -x vm1 22
check 2 'PORT "0" is not a number' $F vm1 0
check 2 'PORT "65536" is not a number' $F vm1 65536
check 2 'PORT "ssh" is not a number' $F vm1 ssh
check 2 'HOST "a/b" is neither' $F a/b 22
check 2 'HOST "../vm" is neither' $F ../vm 22
check 2 'HOST "vm%2F1" is neither' $F vm%2F1 22
check 2 'HOST "fe80::1%eth0" is neither' $F fe80::1%eth0 22
check 3 'unknown keyword "Nope"' $F -o Nope=1 vm1 22
check 3 'ConnectTimeout must be a number' $F -o ConnectTimeout=soon vm1 22
check 3 'FrameSize must be a number from 512 to 65536' $F -o FrameSize=1 vm1 22
check 3 'cannot open configuration file /nonexistent' -F /nonexistent vm1 22
check 3 'is not the resource id of a Bastion' -F none \
    -o Bastion=/subscriptions/s/resourceGroups/g/providers/x/y/z vm1 22
check 3 'TargetResourceId .* is not the id of a VM' $F \
    -o TargetResourceId=/subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/x \
    vm1 22
check 3 'TargetResourceId .* is not the id of a VM' $F \
    -o "TargetResourceId=/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.Compute/virtualMachines/vm1/" \
    vm1 22
check 3 'TargetResourceGroup "bad/rg" is not' $F -o TargetResourceGroup=bad/rg vm1 22
check 3 'cannot read CAFile /nonexistent' -o CAFile=/nonexistent $F vm1 22
SSL_CERT_FILE=/nonexistent check 3 'cannot read SSL_CERT_FILE /nonexistent' \
    -F none vm1 22
check 3 'ArmEndpoint must be an https:// URL' -o ArmEndpoint=http://x $F vm1 22
(unset AZURE_CLIENT_SECRET; check 4 'no Azure credential: sign in with .bastion-stdio login. or .az login., or set AZURE_TENANT_ID' \
    $F vm1 22; exit $FAILED) || FAILED=1

# None of these reached the emulator.
emu GET /_emu/requests >"$T/requests"
expect_eq "$(cat "$T/requests")" "[]" "requests made for bad input"

# -V names the libraries, on stderr.
"$BIN" -V >"$T/out" 2>"$T/err"
expect_eq $? 0 "-V status"
expect_match "$T/err" '^bastion-stdio [0-9.]+ \(libcurl 7.*OpenSSL.*libwebsockets.*cJSON' "-V"
expect_empty "$T/out" "-V stdout"

# A proxy that cannot carry the WebSocket is refused up front.
https_proxy=socks5://127.0.0.1:9 check 3 'https_proxy: only http:// proxies' $F vm1 22
