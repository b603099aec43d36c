#!/usr/bin/env bash
# Fashion-MNIST benchmark of the model zoo through the real service: uploads train (60k, with a
# 10% validation split) and test (10k), trains each family with the stated hyper-parameters,
# evaluates the test set and prints a table (test NLL ± SE, bits/dim, training wall time).
#   bench/zoo_fmnist.sh [NAME ...]            binarized (pixel > 127), every binary family
#   DATA=continuous bench/zoo_fmnist.sh ...   pixel values 0..255 as continuous data, dequantised
#                                             and logit-transformed as in the MAF paper; NLL and
#                                             bits/dim in the uploaded data space [0, 256)^784
# Environment: SCALE multiplies every epoch count (e.g. SCALE=0.1 for a quick look);
#   CONFIG="name|epochs|logpctl flags" runs that one configuration instead of the table;
#   LOGPD_FLAGS adds flags to logpd's command line (e.g. --compute_threads=2);
#   LOGP_BIN_DIR=DIR uses DIR/server/logpd and DIR/client/logpctl as they are (no build);
#   CONVERGE=1 trains every configuration to convergence instead of its epoch count: up to
#   MAX_EPOCHS (1000) epochs, early stopping after PATIENCE (5) epochs without a better
#   validation NLL, and at most MAX_SECONDS (3600) of training; the table then also says how
#   many epochs ran, which was best, why training stopped and the median training samples/s
#   of the epochs; BATCH sets the batch size (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN="${LOGP_BIN_DIR:-$ROOT/${LOGP_BUILD_DIR:-build}}"
FMNIST=/usr/share/datasets/fashion-mnist
SCALE="${SCALE:-1}"
DATA="${DATA:-binary}"
CONVERGE="${CONVERGE:-0}"
BATCH="${BATCH:-100}"
MAX_EPOCHS="${MAX_EPOCHS:-1000}" PATIENCE="${PATIENCE:-5}" MAX_SECONDS="${MAX_SECONDS:-3600}"
[[ -n ${LOGP_BIN_DIR:-} ]] || scripts/build.sh --target logpd logpctl >/dev/null

WORK=$(mktemp -d /tmp/logp-bench.XXXXXX)
"$BIN/server/logpd" --data_dir="$WORK/data" --listen=127.0.0.1:0 --port_file="$WORK/port" \
  --progress_interval_seconds=10 ${LOGPD_FLAGS:-} >"$WORK/logpd.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
CTL=("$BIN/client/logpctl" --server="127.0.0.1:$(cat "$WORK/port")" --rpc_timeout_seconds=3600)
field() { { grep -o "\"$1\":\"\?[^\",}]*" || true; } | head -1 | sed 's/.*:"\?//'; }

if [[ $DATA == binary ]]; then
  READ=(--kind=binary --binarize_threshold=127)
else
  READ=(--kind=continuous)
fi
TRAIN=$("${CTL[@]}" --json datasets upload "$FMNIST/train-images-idx3-ubyte.gz" "${READ[@]}" \
  --name=train | field id)
TEST=$("${CTL[@]}" --json datasets upload "$FMNIST/t10k-images-idx3-ubyte.gz" "${READ[@]}" \
  --name=test | field id)

# name | epochs | flags
PRE="--dequantize --logit --logit_alpha=0.000001"
CONTINUOUS=(
  "gaussian|1|--family=gaussian $PRE"
  "gmm-10-diag|10|--family=gaussian_mixture --components=10 --covariance=diagonal $PRE"
  "made-gauss|5|--family=made --hidden_units=512 --conditional=gaussian $PRE --lr=0.0003"
  "made-mog|5|--family=made --hidden_units=512 --conditional=mixture --mixture_components=10 $PRE --lr=0.0003"
  "maf-5|5|--family=maf --flow_layers=5 --hidden_units=512 --batch_norm=true $PRE --lr=0.0003"
  "realnvp-6|5|--family=realnvp --coupling_layers=6 --hidden_units=512 --batch_norm=true $PRE --lr=0.0003"
  "vae-gauss|5|--family=vae --latent_dim=32 --hidden_units=500 $PRE --lr=0.0003"
)
BINARY=(
  "bernoulli|1|--family=bernoulli --pseudo_count=0.5"
  "fvsbn|20|--family=fvsbn --lr=0.001"
  # NADE trains at ~310 records/s at D = 784, H = 500 here: about 3 minutes per epoch.
  "nade|10|--family=nade --hidden_units=500 --lr=0.001"
  "made|20|--family=made --hidden_layers=1 --hidden_units=500 --lr=0.001"
  "made-2x1000|30|--family=made --hidden_layers=2 --hidden_units=1000 --lr=0.001"
  "made-8masks|30|--family=made --hidden_layers=1 --hidden_units=500 --num_masks=8 --order=random --lr=0.001"
  "vae|30|--family=vae --latent_dim=32 --hidden_units=500 --lr=0.001"
  # Direct (masked) input-to-output connections: MADE plus an FVSBN in one net.
  "made-dc|20|--family=made --hidden_layers=1 --hidden_units=500 --direct_connections=true --lr=0.001"
  "made-dc-1000|30|--family=made --hidden_layers=1 --hidden_units=1000 --direct_connections=true --lr=0.001"
  "made-dc-2x1000|30|--family=made --hidden_layers=2 --hidden_units=1000 --direct_connections=true --lr=0.001"
  "made-dc-8m|40|--family=made --hidden_layers=1 --hidden_units=1000 --direct_connections=true --num_masks=8 --order=random --lr=0.001"
  "made-dc-8m-do|40|--family=made --hidden_layers=1 --hidden_units=2000 --direct_connections=true --num_masks=8 --order=random --dropout=0.2 --lr=0.001"
)
if [[ $DATA == binary ]]; then CONFIGS=("${BINARY[@]}"); else CONFIGS=("${CONTINUOUS[@]}"); fi
WANT=("$@")
# CONFIG="name|epochs|flags" runs one configuration of your own instead of the table's.
if [[ -n ${CONFIG:-} ]]; then CONFIGS=("$CONFIG"); WANT=(); fi
printf '| %-12s | %-70s | %6s | %-20s | %8s | %9s | %-24s |' family flags epochs "test NLL (nats ± SE)" bits/dim "train (s)" "score kind"
[[ $CONVERGE == 1 ]] && printf ' %s | %s | %s |' "best epoch" "stopped by" "samples/s"
echo
printf '|%s|%s|%s|%s|%s|%s|%s|' -------------- ------------------------------------------------------------------------ -------- ---------------------- ---------- ----------- --------------------------
[[ $CONVERGE == 1 ]] && printf '%s|%s|%s|' ------------ ------------ -----------
echo
for c in "${CONFIGS[@]}"; do
  IFS='|' read -r name epochs flags <<<"$c"
  if [[ ${#WANT[@]} -gt 0 && ! " ${WANT[*]} " =~ " ${name} " ]]; then continue; fi
  epochs=$(awk -v e="$epochs" -v s="$SCALE" 'BEGIN { n = int(e * s + 0.5); print (n < 1 ? 1 : n) }')
  if [[ $CONVERGE == 1 && $epochs -gt 1 ]]; then
    epochs=$MAX_EPOCHS
    flags="$flags --early_stopping_patience=$PATIENCE --max_seconds=$MAX_SECONDS"
  fi
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  JOB=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" $flags --epochs="$epochs" \
    --batch_size="$BATCH" --validation_fraction=0.1 --seed=1 | field id)
  if ! "${CTL[@]}" jobs watch "$JOB" >"$WORK/$name.watch" 2>&1; then
    printf '| %-12s | %-70s | %6s | %-20s | %8s | %9s | %-24s |\n' "$name" "$flags" "$epochs" "FAILED" - - -
    tail -2 "$WORK/$name.watch" >&2
    continue
  fi
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
  MODEL=$("${CTL[@]}" --json jobs get "$JOB" | field modelId)
  EXTRA=()
  [[ $name == vae* ]] && EXTRA=(--importance_samples=100)
  EVAL=$("${CTL[@]}" --json models evaluate "$MODEL" --dataset="$TEST" "${EXTRA[@]}")
  nll=$(echo "$EVAL" | field meanNll)
  se=$(echo "$EVAL" | field standardError)
  bpd=$(echo "$EVAL" | field bitsPerDim)
  kind=$(echo "$EVAL" | field scoreKind | sed 's/SCORE_KIND_//')
  k=$(echo "$EVAL" | field importanceSamples)
  [[ -n $k ]] && kind="$kind (k=$k)"
  ran=$epochs
  if [[ $CONVERGE == 1 ]]; then
    # Epochs run, the best one (its weights are published) and why training ended.
    "${CTL[@]}" --json jobs watch "$JOB" --from_seq=1 >"$WORK/$name.events"
    read -r ran best rate < <(/usr/bin/python3 - "$WORK/$name.events" <<'PYEOF'
import json, sys
ep = [json.loads(l)["epochSummary"] for l in open(sys.argv[1]) if '"epochSummary"' in l]
best = [e.get("epoch", 0) for e in ep if e.get("isBest")]
rates = sorted(e.get("samplesPerSecond", 0) for e in ep)
print(len(ep) or 1, best[-1] if best else "—", round(rates[len(rates) // 2]) if rates else "—")
PYEOF
    )
    reason=$("${CTL[@]}" --json jobs get "$JOB" | grep -o '"stopReason":"[^"]*' | sed 's/.*:"//')
  fi
  printf '| %-12s | %-70s | %6s | %-20s | %8.4f | %9s | %-24s |' "$name" "$flags" "$ran" \
    "$(printf '%.2f ± %.2f' "$nll" "${se:-0}")" "$bpd" "$secs" "$kind"
  [[ $CONVERGE == 1 ]] && printf ' %s | %s | %s |' "$best" "${reason:-—}" "$rate"
  echo
done
