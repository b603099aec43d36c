#!/usr/bin/env bash
# scripts/demo.sh's loop with TLS and token authentication: installs and builds if needed, makes a
# CA and a server certificate (scripts/make-certs.sh) and a random token whose tokens file holds
# only its SHA-256, starts logpd with TLS and the tokens file, then through logpctl over TLS (the
# token in LOGP_TOKEN, never on a command line) uploads binarized Fashion-MNIST, trains a MADE
# while showing the live loss, evaluates the test set, draws 64 samples into a PNG grid and shuts
# the server down cleanly. It also shows a call without the token refused. Environment: EPOCHS
# (default 20), OUT (default ./demo-out; logpd's log, with its audit lines, goes to
# OUT/logpd-secure.log).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EPOCHS="${EPOCHS:-20}"
OUT="${OUT:-$ROOT/demo-out}"
FMNIST=/usr/share/datasets/fashion-mnist

scripts/install-deps.sh
scripts/build.sh --target logpd logpctl
BIN="$ROOT/${LOGP_BUILD_DIR:-build}"
LOGPD="$BIN/server/logpd"
LOGPCTL="$BIN/client/logpctl"

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/logp-demo-secure.XXXXXX)
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== a CA and a server certificate for localhost / 127.0.0.1"
scripts/make-certs.sh "$WORK/certs" localhost 127.0.0.1
echo "== a random token; the tokens file holds only its SHA-256"
LOGP_TOKEN=$(openssl rand -hex 32)
export LOGP_TOKEN
(umask 077 && echo "sha256:$(printf %s "$LOGP_TOKEN" | sha256sum | cut -d' ' -f1) demo writer" \
  >"$WORK/tokens")
sed 's/^\(sha256:.\{12\}\).*\( demo writer\)$/\1...\2/' "$WORK/tokens"

"$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 --port_file="$WORK/port" \
  --tls_cert_file="$WORK/certs/server.pem" --tls_key_file="$WORK/certs/server.key" \
  --auth_tokens_file="$WORK/tokens" >"$OUT/logpd-secure.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
[[ -s "$WORK/port" ]] || { echo "logpd did not start; see $OUT/logpd-secure.log"; exit 1; }
PORT=$(cat "$WORK/port")
CTL=("$LOGPCTL" --server="localhost:$PORT" --tls_ca_file="$WORK/certs/ca.pem")
json_field() { grep -o "\"$1\":\"[^\"]*\"" | head -1 | cut -d'"' -f4; }
grep -o 'logpd serving on port .*' "$OUT/logpd-secure.log"

echo "== without the token"
if env -u LOGP_TOKEN "${CTL[@]}" datasets list; then
  echo "a call without the token was answered"
  exit 1
fi

demo_start=$(date +%s.%N)
echo "== upload binarized Fashion-MNIST (pixel > 127 -> 1)"
TRAIN=$("${CTL[@]}" --json datasets upload "$FMNIST/train-images-idx3-ubyte.gz" --kind=binary \
  --binarize_threshold=127 --name=fashion-mnist-train | json_field id)
TEST=$("${CTL[@]}" --json datasets upload "$FMNIST/t10k-images-idx3-ubyte.gz" --kind=binary \
  --binarize_threshold=127 --name=fashion-mnist-test | json_field id)
"${CTL[@]}" datasets list

echo "== train MADE (1 hidden layer of 500 units, Adam 1e-3, batch 100, $EPOCHS epochs)"
JOB=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" --family=made --hidden_layers=1 \
  --hidden_units=500 --lr=0.001 --batch_size=100 --epochs="$EPOCHS" --validation_fraction=0.1 \
  --seed=1 | json_field id)
train_start=$(date +%s.%N)
"${CTL[@]}" jobs watch "$JOB"
train_secs=$(awk -v a="$train_start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
MODEL=$("${CTL[@]}" --json jobs get "$JOB" | json_field modelId)

echo "== evaluate on the 10,000 test records"
"${CTL[@]}" models evaluate "$MODEL" --dataset="$TEST" | tee "$OUT/evaluate-secure.txt"
"${CTL[@]}" --json models evaluate "$MODEL" --dataset="$TEST" >"$OUT/evaluate-secure.json"

echo "== draw 64 samples"
"${CTL[@]}" models sample "$MODEL" --n=64 --seed=1 --png="$OUT/samples-secure.png" --columns=8

demo_secs=$(awk -v a="$demo_start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
rate=$(awk -v e="$EPOCHS" -v s="$train_secs" 'BEGIN {print 54000 * e / s}')

echo "== shut down"
kill -TERM "$SERVER_PID"
if wait "$SERVER_PID"; then echo "logpd exited cleanly"; else echo "logpd exit code $?"; exit 1; fi
SERVER_PID=

echo "== summary"
printf 'test NLL           %.2f nats\n' \
  "$(grep -o '"meanNll":[0-9.]*' "$OUT/evaluate-secure.json" | cut -d: -f2)"
printf 'training           %.1f s for %d epochs of 54,000 records (%.0f records/s incl. validation)\n' \
  "$train_secs" "$EPOCHS" "$rate"
printf 'demo               %.1f s from upload to samples, over TLS with a token\n' "$demo_secs"
printf 'samples            %s\n' "$OUT/samples-secure.png"
printf 'audit              %d lines in %s (%s)\n' "$(grep -c 'audit {' "$OUT/logpd-secure.log")" \
  "$OUT/logpd-secure.log" \
  "$(grep -F 'audit {' "$OUT/logpd-secure.log" | grep -o '"method":"[A-Za-z]*"' | cut -d'"' -f4 |
    sort | uniq -c | awk '{ print $2 " " $1 }' | paste -sd, - | sed 's/,/, /g')"
if grep -qF "$LOGP_TOKEN" "$OUT/logpd-secure.log"; then
  echo "the token appears in $OUT/logpd-secure.log"
  exit 1
fi
printf 'token              in no log; the tokens file held only its SHA-256\n'
