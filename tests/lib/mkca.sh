#!/bin/sh
# mkca.sh DIR - make a throw-away test PKI for the Azure emulator.
#
# Creates in DIR (EC P-256 keys, SHA-256 signatures):
#   ca.pem, ca.key               test root CA (valid 2 days)
#   server.pem, server.key       leaf for localhost, 127.0.0.1, ::1 (valid 1 day)
#   expired.pem, expired.key     same names, but validity 2..1 days in the past
#   wrongname.pem, wrongname.key leaf for DNS:wrong.example only (valid 1 day)
#
# OpenSSL 3.0 (Debian 12) has no -not_before/-not_after in `x509`/`req`
# (they arrived in 3.4) and rejects a negative -days, so the expired leaf
# is signed with `openssl ca -startdate -enddate`, which 3.0 does support.
# That needs a scratch CA database; it lives in DIR/.ca-work and is removed.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 64
fi
dir=$1
mkdir -p "$dir"
work="$dir/.ca-work"
rm -rf "$work"
mkdir -p "$work/new"
trap 'rm -rf "$work"' EXIT
umask 077

cnf="$work/openssl.cnf"
cat >"$cnf" <<EOF
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ leaf_local ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
authorityKeyIdentifier = keyid
[ leaf_wrong ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
authorityKeyIdentifier = keyid
# Only used by "openssl ca", for the expired leaf.
[ ca ]
default_ca = scratch
[ scratch ]
database = $work/index.txt
new_certs_dir = $work/new
certificate = $dir/ca.pem
private_key = $dir/ca.key
rand_serial = yes
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = supplied
EOF
: >"$work/index.txt"

ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

# Root CA, self-signed.
openssl req -config "$cnf" -x509 $ec -days 2 -sha256 \
	-subj "/CN=bastion-stdio test CA" -extensions v3_ca \
	-keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null

# leaf NAME CN EXTSECTION: key + CSR for one leaf certificate.
csr() {
	openssl req -config "$cnf" -new $ec -subj "/CN=$2" \
		-keyout "$dir/$1.key" -out "$work/$1.csr" 2>/dev/null
}

# sign NAME EXTSECTION: 1-day leaf signed by the CA.
sign() {
	openssl x509 -req -in "$work/$1.csr" -CA "$dir/ca.pem" \
		-CAkey "$dir/ca.key" -CAcreateserial -days 1 -sha256 \
		-extfile "$cnf" -extensions "$2" -out "$dir/$1.pem" 2>/dev/null
}

csr server localhost
sign server leaf_local
csr wrongname wrong.example
sign wrongname leaf_wrong

# Expired leaf: same SANs as server.pem so that expiry is its only fault.
csr expired localhost
start=$(date -u -d '2 days ago' +%y%m%d%H%M%SZ)
end=$(date -u -d '1 day ago' +%y%m%d%H%M%SZ)
openssl ca -config "$cnf" -batch -notext -startdate "$start" \
	-enddate "$end" -extensions leaf_local -extfile "$cnf" \
	-in "$work/expired.csr" -out "$dir/expired.pem" 2>/dev/null

# -CAcreateserial leaves ca.srl next to ca.pem; nothing needs it.
rm -f "$dir/ca.srl"
chmod 644 "$dir"/*.pem
