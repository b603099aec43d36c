#!/usr/bin/env bash
# Writes the TLS test certificates into OUTDIR (created if missing), with Debian's openssl and EC
# P-256 keys (a fraction of a second in all):
#   ca.pem ca.key                      CA 1 ("logp test CA 1")
#   ca2.pem ca2.key                    CA 2, for rotation tests
#   other-ca.pem other-ca.key          an unrelated CA
#   server.pem server.key              CA 1: CN=localhost, SAN DNS:localhost, IP:127.0.0.1
#   server2.pem server2.key            CA 2: the same names
#   client-san.pem client-san.key      CA 1: CN=client-san-cn, SAN DNS:team-a-client,
#                                      URI:urn:logp:team-a-client
#   client-cn.pem client-cn.key        CA 1: CN=team-b-client, no SAN
#   client-other.pem client-other.key  the unrelated CA: CN=team-a-client, SAN DNS:team-a-client
#   client-expired.pem client-expired.key  CA 1: valid 2020-01-01 to 2020-01-02 only
# Usage: make_test_certs.sh OUTDIR
set -euo pipefail
if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out="$1"
mkdir -p "$out"
cd "$out"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

# ca NAME SUBJECT
ca() {
  key "$1"
  openssl req -x509 -new -key "$1.key" -subj "$2" -days 3650 -sha256 -out "$1.pem" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# leaf NAME CA SUBJECT EXTENSIONS: a certificate signed by CA, valid from now for ten years.
leaf() {
  key "$1"
  openssl req -new -key "$1.key" -subj "$3" -out "$1.csr"
  printf '%s\n' "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 3650 \
    -sha256 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

server_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1'
client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth'

ca ca "/CN=logp test CA 1"
ca ca2 "/CN=logp test CA 2"
ca other-ca "/CN=logp unrelated test CA"
leaf server ca "/CN=localhost" "$server_ext"
leaf server2 ca2 "/CN=localhost" "$server_ext"
leaf client-san ca "/CN=client-san-cn" "$client_ext
subjectAltName=DNS:team-a-client,URI:urn:logp:team-a-client"
leaf client-cn ca "/CN=team-b-client" "$client_ext"
leaf client-other other-ca "/CN=team-a-client" "$client_ext
subjectAltName=DNS:team-a-client"

# The expired client certificate: `openssl x509 -req` (3.0) cannot set dates in the past, `openssl
# ca` can (-startdate / -enddate), given a minimal CA database.
key client-expired
openssl req -new -key client-expired.key -subj "/CN=team-a-client" -out client-expired.csr
mkdir -p ca-db
: >ca-db/index.txt
echo 1000 >ca-db/serial
cat >ca-db/openssl.cnf <<CNF
[ca]
default_ca = test_ca
[test_ca]
dir = ca-db
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
x509_extensions = client
[any]
commonName = supplied
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:team-a-client
CNF
openssl ca -batch -notext -config ca-db/openssl.cnf -startdate 20200101000000Z \
  -enddate 20200102000000Z -in client-expired.csr -out client-expired.pem 2>/dev/null
rm -rf ca-db client-expired.csr ./*.srl
chmod 644 ./*.pem
