#!/bin/sh
# Builds the Debian package from contrib/debian in a temporary copy of
# the tree (dpkg-buildpackage -us -uc -b), installs it with dpkg -i, and
# checks what it installed: the program runs (-V), and the manual and
# the completions are where man, bash, zsh and fish look.  The package
# is removed again afterwards unless it was installed before.  Needs
# root, or sudo, for dpkg.

set -eu
cd "$(dirname "$0")/.."
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
tmp=$(mktemp -d /tmp/bastion-stdio-deb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

mkdir "$tmp/src"
tar --exclude=./.git --exclude=./debian -cf - . | tar -xf - -C "$tmp/src"
cp -R contrib/debian "$tmp/src/debian"
version=$(sed -n 's/^VERSION =[[:space:]]*//p' Makefile)
changelog=$(cd "$tmp/src" && dpkg-parsechangelog -S Version)
if [ "$version" != "$changelog" ]; then
	echo "contrib/debian/changelog is at $changelog, the Makefile at $version"
	exit 1
fi

# test_parse, run by the package's unit tests, reads the fixtures
FIXTURES=${FIXTURES:-$(cd ../shared/fixtures/azure-rest-api-specs \
    2>/dev/null && pwd)}
export FIXTURES
(cd "$tmp/src" && DEB_BUILD_OPTIONS="noddebs parallel=$(nproc)" \
    dpkg-buildpackage -us -uc -b)

before=$(dpkg-query -W -f='${Status}' bastion-stdio 2>/dev/null || true)
$sudo dpkg -i "$tmp"/bastion-stdio_"$version"_*.deb
status=0
/usr/bin/bastion-stdio -V 2>"$tmp/version" || status=1
grep "^bastion-stdio $version (" "$tmp/version" || status=1
for f in /usr/share/man/man1/bastion-stdio.1.gz \
    /usr/share/bash-completion/completions/bastion-stdio \
    /usr/share/zsh/site-functions/_bastion-stdio \
    /usr/share/fish/vendor_completions.d/bastion-stdio.fish; do
	[ -f "$f" ] || { echo "not installed: $f"; status=1; }
done
man -w bastion-stdio || status=1
bash -c '. /usr/share/bash-completion/completions/bastion-stdio &&
    complete -p bastion-stdio' || status=1
if command -v fish >/dev/null; then
	# not --no-config: it also empties fish_complete_path
	HOME=$tmp fish -c 'complete -C "bastion-stdio -o Fra"' |
	    grep FrameSize= || { echo "fish does not find it"; status=1; }
fi
case $before in
*"install ok installed"*) ;;
*) $sudo dpkg -r bastion-stdio ;;
esac
exit $status
