#!/usr/bin/env bash
# The main job end to end on the embedded default (a temporary data directory + SQLite):
# installs and builds if needed, starts logpd, uploads binarized Fashion-MNIST, trains a MADE
# while showing the live loss, evaluates the test set, draws 64 samples into a PNG grid and shuts
# the server down cleanly. Environment: EPOCHS (default 20), OUT (default ./demo-out).
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
WORK=$(mktemp -d /tmp/logp-demo.XXXXXX)
"$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 --port_file="$WORK/port" \
  >"$OUT/logpd.log" 2>&1 &
SERVER_PID=$!
cleanup() {
  if kill -0 "$SERVER_PID" 2>/dev/null; then kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 100); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
[[ -s "$WORK/port" ]] || { echo "logpd did not start; see $OUT/logpd.log"; exit 1; }
CTL=("$LOGPCTL" --server="127.0.0.1:$(cat "$WORK/port")")
json_field() { grep -o "\"$1\":\"[^\"]*\"" | head -1 | cut -d'"' -f4; }

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
"${CTL[@]}" models evaluate "$MODEL" --dataset="$TEST" | tee "$OUT/evaluate.txt"
"${CTL[@]}" --json models evaluate "$MODEL" --dataset="$TEST" >"$OUT/evaluate.json"

echo "== draw 64 samples"
"${CTL[@]}" models sample "$MODEL" --n=64 --seed=1 --png="$OUT/samples.png" --columns=8

demo_secs=$(awk -v a="$demo_start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
rate=$(awk -v e="$EPOCHS" -v s="$train_secs" 'BEGIN {print 54000 * e / s}')
echo "== summary"
printf 'test NLL           %.2f nats\n' "$(grep -o '"meanNll":[0-9.]*' "$OUT/evaluate.json" | cut -d: -f2)"
printf 'training           %.1f s for %d epochs of 54,000 records (%.0f records/s incl. validation)\n' \
  "$train_secs" "$EPOCHS" "$rate"
printf 'demo               %.1f s from upload to samples\n' "$demo_secs"
printf 'samples            %s\n' "$OUT/samples.png"

echo "== shut down"
kill -TERM "$SERVER_PID"
if wait "$SERVER_PID"; then echo "logpd exited cleanly"; else echo "logpd exit code $?"; exit 1; fi
