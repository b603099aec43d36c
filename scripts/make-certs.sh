#!/usr/bin/env bash
# Makes a private CA and a server certificate for logpd (--tls_cert_file, --tls_key_file), and
# with CLIENT=NAME a client certificate for mutual TLS, with openssl: EC P-256 keys, SHA-256,
# valid DAYS days (default 825; the CA ten years).
#   OUTDIR/ca.pem, ca.key          the CA: clients trust ca.pem (logpctl --tls_ca_file=ca.pem);
#                                  for mutual TLS logpd takes it too (--tls_client_ca_file).
#                                  Keep ca.key private: whoever has it can issue certificates
#   OUTDIR/server.pem, server.key  for logpd, naming every HOST given (default: localhost
#                                  127.0.0.1); IP addresses become IP names, the rest DNS names
#   OUTDIR/client-NAME.pem, .key   with CLIENT=NAME: a client certificate whose identity is NAME
#                                  (the tokens file maps it with a line `cert:NAME TENANT ROLE`)
# An existing OUTDIR/ca.key and ca.pem are kept and sign the new certificates, so the script can
# renew the server certificate (logpd takes the new files without a restart) or add a client
# without handing out a new CA. Keys are written with mode 0600.
# Usage: [CLIENT=NAME] [DAYS=N] make-certs.sh OUTDIR [HOST ...]
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: [CLIENT=NAME] [DAYS=N] $0 OUTDIR [HOST ...]" >&2
  exit 2
fi
out=$1
shift
hosts=("$@")
[[ ${#hosts[@]} -gt 0 ]] || hosts=(localhost 127.0.0.1)
days=${DAYS:-825}
mkdir -p "$out"
cd "$out"

key() { (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"); }

# leaf NAME SUBJECT EXTENSIONS: NAME.pem and NAME.key signed by the CA, each file replaced whole.
leaf() {
  key "$1.key.new"
  openssl req -new -key "$1.key.new" -subj "$2" -out "$1.csr"
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
    -sha256 -extfile "$1.ext" -out "$1.pem.new" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
  mv "$1.key.new" "$1.key"
  mv "$1.pem.new" "$1.pem"
  echo "$out/$1.pem: $(openssl x509 -in "$1.pem" -noout -ext subjectAltName | tail -1 |
    sed 's/^ *//'), until $(openssl x509 -in "$1.pem" -noout -enddate | cut -d= -f2)"
}

if [[ -s ca.key && -s ca.pem ]]; then
  echo "$out/ca.pem: kept ($(openssl x509 -in ca.pem -noout -subject))"
else
  key ca.key
  openssl req -x509 -new -key ca.key -subj "/CN=logp CA $(hostname -s) $(date +%Y-%m-%d)" \
    -days 3650 -sha256 -out ca.pem -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
  echo "$out/ca.pem: new CA ($(openssl x509 -in ca.pem -noout -subject))"
fi

names=()
for h in "${hosts[@]}"; do
  if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then names+=("IP:$h"); else names+=("DNS:$h"); fi
done
san=$(IFS=,; echo "${names[*]}")
leaf server "/CN=${hosts[0]}" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san"

if [[ -n ${CLIENT:-} ]]; then
  if [[ ! $CLIENT =~ ^[A-Za-z0-9][A-Za-z0-9.-]*$ ]]; then
    echo "CLIENT must be a DNS-style name (letters, digits, '.', '-'): '$CLIENT'" >&2
    exit 2
  fi
  leaf "client-$CLIENT" "/CN=$CLIENT" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=DNS:$CLIENT"
fi
