# The examples in contrib/ are valid: ssh reads contrib/ssh_config the
# way its comments say (ssh -G evaluates it and connects to nothing),
# and bastion-stdio accepts every line of contrib/bastion-stdio.config.
# bastion-stdio is stopped by PORT 0 before any request; in case it ever
# got further, every endpoint it could use points at a closed loopback
# port and no credential is in reach.

CONTRIB=$TOP/contrib

# ssh's view of one host: "keyword value" lines, keywords in lower case.
ssh_view() {
	HOME=$T ssh -G -F "$CONTRIB/ssh_config" "$1" >"$T/ssh-$1" 2>&1 ||
	    fail "ssh -G $1: $(cat "$T/ssh-$1")"
}
for h in dev-web1 prod-web1 db 10.20.1.7; do
	ssh_view "$h"
	expect_match "$T/ssh-$h" '^proxycommand bastion-stdio ' "$h: ProxyCommand"
	expect_match "$T/ssh-$h" '^user azureuser$' "$h: User"
done
for h in dev-web1 prod-web1 db; do
	expect_match "$T/ssh-$h" '^controlmaster auto$' "$h: ControlMaster"
	expect_match "$T/ssh-$h" '^controlpersist 600$' "$h: ControlPersist"
done
expect_match "$T/ssh-db" '^hostname prod-db1$' "db: HostName"
expect_match "$T/ssh-prod-web1" '^stricthostkeychecking (yes|true)$' \
    "prod: StrictHostKeyChecking"
expect_match "$T/ssh-dev-web1" '^stricthostkeychecking accept-new$' \
    "dev: StrictHostKeyChecking"
expect_match "$T/ssh-10.20.1.7" 'bastionHosts/bh-prod ' "by address: Bastion"

# bastion-stdio reads the whole file for any host: a bad line is status 3,
# a good file gets as far as the PORT check, status 2, Bastion or not.
closed=https://127.0.0.1:9
for h in dev-web1 prod-db1 prod-worker-0 prod-web1 other; do
	env -u AZURE_TENANT_ID -u AZURE_CLIENT_ID -u AZURE_CLIENT_SECRET \
	    HOME=$T XDG_CACHE_HOME=$T/cache \
	    AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:9 \
	    "$BIN" -F "$CONTRIB/bastion-stdio.config" \
	    -o ArmEndpoint=$closed -o AuthorityHost=$closed \
	    "$h" 0 </dev/null >"$T/out" 2>"$T/err"
	rc=$?
	expect_eq $rc 2 "status for $h"
	expect_match "$T/err" 'PORT "0" is not a number' "message for $h"
done
