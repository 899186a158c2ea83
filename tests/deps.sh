#!/bin/sh
# Installs, on Debian 12, what building and testing bastion-stdio needs,
# and only what is missing.  Needs root (or sudo) when anything is.

set -eu
packages="make gcc clang llvm libclang-rt-14-dev pkg-config
	libwebsockets-dev libcurl4-openssl-dev libcjson-dev libssl-dev
	openssh-server openssh-client rsync git curl openssl python3
	python3-cryptography python3-websocket
	mandoc man-db zsh fish dpkg-dev debhelper
	valgrind procps iproute2 ca-certificates"

missing=
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
	    grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "installing:$missing" >&2
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
