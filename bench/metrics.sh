#!/usr/bin/env bash
# The measured cost of the Prometheus metrics (logpd --metrics, on by default: the RPC
# interceptor that counts and times every call): single-record Score latency through
# liblogp_client (bench/logp_bench latency), logpd with --metrics=false and --metrics=true side by
# side in one run on one data directory. Prints a machine line and one markdown table:
# measure | metrics off | metrics on | ratio on/off. Measurement only: nothing here is a test.
#
#   bench/metrics.sh                                   about 2 minutes at RUNS=20
#   flock /tmp/logp-build.lock bench/metrics.sh        on a machine where builds run alongside
#
# It does not build: it uses build/'s (or $LOGP_BUILD_DIR's, or LOGP_BIN_DIR's) server/logpd,
# client/logpctl, bench/logp_bench and bench/metrics_overhead.
#
# Setup: a logpd uploads binarized Fashion-MNIST's training set (pixel > 127) and trains
# independent Bernoulli (pseudo-count 0.5, closed form): scoring it costs almost nothing, so what
# the interceptor adds shows most plainly (MODELS="bernoulli made" adds the demo's MADE 1 x 500,
# one epoch). Then RUNS times, off and on in turn (the order swapped every run): a fresh logpd,
# LAT_N sequential single-record calls after 20 warm-up calls on one connection. logpd and the
# client are one process each on this machine, over 127.0.0.1, logpd --compute_threads=1 and
# OPENBLAS_NUM_THREADS=1 for both. Figures are medians over the runs (the ratio: the median of
# the per-run ratios), and the fastest run's p50, the floor that other processes disturb least.
# Then bench/metrics_overhead (one process, two in-process servers on one Core, one with the
# interceptor, blocks of calls alternating): the interceptor's cost per call in microseconds,
# below the noise of the figures above.
#
# Environment: RUNS (20), MODELS ("bernoulli"), LAT_N (2000), OUT (./bench-out: metrics-raw.jsonl
#   and metrics-table.md), LOGP_BIN_DIR, LOGP_BUILD_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS="${RUNS:-20}"
MODELS="${MODELS:-bernoulli}"
LAT_N="${LAT_N:-2000}"
OUT="${OUT:-$ROOT/bench-out}"
FMNIST=/usr/share/datasets/fashion-mnist
TEST="$FMNIST/t10k-images-idx3-ubyte.gz"
PY=/usr/bin/python3

source "$ROOT/bench/lib.sh"
logp_binaries metrics.sh
OVERHEAD="$(dirname "$BENCH")/metrics_overhead"
if [[ ! -x $OVERHEAD ]]; then
  echo "metrics.sh: no $OVERHEAD; scripts/build.sh --target metrics_overhead" >&2
  exit 1
fi

mkdir -p "$OUT"
RAW="$OUT/metrics-raw.jsonl"
: >"$RAW"
WORK=$(mktemp -d /tmp/logp-metricsbench.XXXXXX)
PID=
trap 'stop_logpd; rm -rf "$WORK"' EXIT

# start_logpd off|on: sets ADDR.
start_logpd() {
  stop_logpd
  rm -f "$WORK/port"
  local metrics=false
  [[ $1 == on ]] && metrics=true
  OPENBLAS_NUM_THREADS=1 "$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 \
    --port_file="$WORK/port" --compute_threads=1 --metrics="$metrics" >>"$WORK/logpd.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do [[ -s "$WORK/port" ]] && break; sleep 0.05; done
  [[ -s "$WORK/port" ]] || { echo "logpd did not start; see $WORK/logpd.log" >&2; exit 1; }
  ADDR="127.0.0.1:$(cat "$WORK/port")"
}

T_SETUP=$(date +%s)
echo "== setup: logpd, binarized Fashion-MNIST, models: $MODELS" >&2
start_logpd off
CTL=("$LOGPCTL" --server="$ADDR")
TRAIN=$("${CTL[@]}" --json datasets upload "$FMNIST/train-images-idx3-ubyte.gz" --kind=binary \
  --binarize_threshold=127 --name=train | field id)
declare -A MODEL
for m in $MODELS; do
  case $m in
    made) spec=(--family=made --hidden_layers=1 --hidden_units=500 --lr=0.001) ;;
    bernoulli) spec=(--family=bernoulli --pseudo_count=0.5) ;;
    *) echo "metrics.sh: unknown model '$m' (made, bernoulli)" >&2; exit 1 ;;
  esac
  job=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" "${spec[@]}" --batch_size=100 \
    --epochs=1 --validation_fraction=0.1 --seed=1 | field id)
  "${CTL[@]}" jobs watch "$job" >/dev/null
  MODEL[$m]=$("${CTL[@]}" --json jobs get "$job" | field modelId)
  [[ -n ${MODEL[$m]} ]] || { echo "no model published by $job ($m)" >&2; exit 1; }
done
stop_logpd
echo "== setup took $(($(date +%s) - T_SETUP)) s" >&2
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)

measure() {
  local out
  out=$("${@:2}") || { echo "metrics.sh: $1 failed" >&2; exit 1; }
  echo "{\"tag\": \"$1\", \"result\": $out}" >>"$RAW"
}
for r in $(seq "$RUNS"); do
  variants=(off on)
  ((r % 2 == 0)) && variants=(on off)
  for v in "${variants[@]}"; do
    echo "== run $r/$RUNS: metrics $v" >&2
    start_logpd "$v"
    for m in $MODELS; do
      measure "latency/$m/$v" env OPENBLAS_NUM_THREADS=1 "$BENCH" latency --server="$ADDR" \
        --model="${MODEL[$m]}" --data="$TEST" --n="$LAT_N"
    done
    stop_logpd
  done
done
SECS=$(($(date +%s) - T0))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), nproc" \
    "$(nproc), $(date -u '+%Y-%m-%d %H:%M UTC'); load average $LOAD_START at start," \
    "$LOAD_END at end"
  echo "runs: $RUNS (metrics off and on in turn, swapped every run; ${SECS} s)," \
    "latency n = $LAT_N sequential single-record Score calls per run"
  echo
  "$PY" - "$RAW" "$MODELS" <<'PYEOF'
import collections, json, statistics, sys
res = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    res[r["tag"]].append(r["result"])
names = {"made": "MADE 1×500", "bernoulli": "Bernoulli"}
def med(tag, key, of=statistics.median):
    v = [r[key] for r in res.get(tag, [])]
    return of(v) if v else None
def ratio(a, b, key):
    v = [x[key] / y[key] for x, y in zip(res.get(a, []), res.get(b, [])) if y[key]]
    return f"{statistics.median(v):.3f}×" if v else "n/a"
print("| measure | metrics off | metrics on | ratio on/off |")
print("|---|---|---|---|")
for m in sys.argv[2].split():
    for key, what, of in (("p50_ms", "p50", statistics.median),
                          ("p99_ms", "p99", statistics.median),
                          ("p50_ms", "p50 of the fastest run", min)):
        off, on = med(f"latency/{m}/off", key, of), med(f"latency/{m}/on", key, of)
        cell = lambda c: "n/a" if c is None else f"{c:.3f}"
        r = ratio(f"latency/{m}/on", f"latency/{m}/off", key) if of is not min else (
            f"{on / off:.3f}×" if off else "n/a")
        print(f"| single-record Score {what} (ms), {names.get(m, m)} | {cell(off)} | {cell(on)}"
              f" | {r} |")
PYEOF
  echo
  OPENBLAS_NUM_THREADS=1 "$OVERHEAD" 2>>"$WORK/overhead.log"
} | tee "$OUT/metrics-table.md"
