#!/usr/bin/env bash
# Dynamic batching of Score (issue 16, item 2), a part of scripts/bench.sh: N concurrent clients
# each sending single-record Score calls in a closed loop (bench/score_load: gRPC's async API,
# one connection per client) against logpd with batching off (--score_batch_max_delay_us=0:
# one forward pass per call, as before batching) and on (--score_batch_max_delay_us=1000, 256 records), for
# N in CLIENTS. Prints table rows (| measure | logp | reference | ratio | target | met? |, the
# reference being batching off) on stdout, progress on stderr; raw JSON lines in
# $OUT/serving-raw.jsonl. Measurement only: nothing here is a test.
#
#   bench/serving.sh                      alone (about 4 minutes at RUNS=3)
#   PARTS=bench/serving.sh scripts/bench.sh
#
# Model: MADE 1 x 500 on binarized Fashion-MNIST (pixel > 127), trained 100 steps (scoring cost
# does not depend on the weights). logpd --compute_threads=$THREADS, OPENBLAS_NUM_THREADS=$THREADS;
# client and server share this machine's cores. Each run restarts logpd per mode, the order of
# the modes swapped every run; figures are medians over RUNS runs (ratios: medians of the
# per-run ratios).
#
# Environment: RUNS (3; QUICK: 1), CLIENTS ("1 4 16 32 64"), SECONDS_PER (5; QUICK: 1), THREADS
#   (1), ON_FLAGS (extra logpd flags with batching on), OFF_FLAGS (with it off), OUT
#   (./bench-out), LOGP_BIN_DIR, LOGP_BUILD_DIR, PY (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUICK="${QUICK:-0}"
if [[ $QUICK == 1 ]]; then RUNS="${RUNS:-1}"; else RUNS="${RUNS:-3}"; fi
CLIENTS="${CLIENTS:-1 4 16 32 64}"
if [[ $QUICK == 1 ]]; then SECONDS_PER="${SECONDS_PER:-1}"; else SECONDS_PER="${SECONDS_PER:-5}"; fi
THREADS="${THREADS:-1}"
ON_FLAGS="${ON_FLAGS:-}"
OFF_FLAGS="${OFF_FLAGS:-}"
OUT="${OUT:-$ROOT/bench-out}"
PY="${PY:-/usr/bin/python3}"
FMNIST=/usr/share/datasets/fashion-mnist

source "$ROOT/bench/lib.sh"
logp_binaries serving.sh
LOAD="$(dirname "$BENCH")/score_load"
[[ -x $LOAD ]] || { echo "serving.sh: no $LOAD; scripts/build.sh --target score_load" >&2; exit 1; }

mkdir -p "$OUT"
RAW="$OUT/serving-raw.jsonl"
: >"$RAW"
WORK=$(mktemp -d /tmp/logp-serving.XXXXXX)
PID=
trap 'stop_logpd; rm -rf "$WORK"' EXIT

# start_logpd off|on: a fresh logpd on the same data directory; sets ADDR.
start_logpd() {
  stop_logpd
  rm -f "$WORK/port"
  local flags
  if [[ $1 == off ]]; then flags="--score_batch_max_delay_us=0 $OFF_FLAGS"; else flags="--score_batch_max_delay_us=1000 $ON_FLAGS"; fi
  # shellcheck disable=SC2086
  OPENBLAS_NUM_THREADS=$THREADS "$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 \
    --port_file="$WORK/port" --compute_threads="$THREADS" $flags >>"$WORK/logpd.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do [[ -s "$WORK/port" ]] && break; sleep 0.05; done
  [[ -s "$WORK/port" ]] || { echo "logpd did not start; see $WORK/logpd.log" >&2; exit 1; }
  ADDR="127.0.0.1:$(cat "$WORK/port")"
}

echo "== serving: setup (MADE 1 x 500, 100 steps)" >&2
start_logpd off
CTL=("$LOGPCTL" --server="$ADDR")
TRAIN=$("${CTL[@]}" --json datasets upload "$FMNIST/train-images-idx3-ubyte.gz" --kind=binary \
  --binarize_threshold=127 --name=train | field id)
JOB=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" --family=made --hidden_layers=1 \
  --hidden_units=500 --lr=0.001 --validation_fraction=0.1 --seed=1 --batch_size=100 \
  --epochs=1 --max_steps=100 | field id)
"${CTL[@]}" jobs watch "$JOB" >/dev/null
MODEL=$("${CTL[@]}" --json jobs get "$JOB" | field modelId)
[[ -n $MODEL ]] || { echo "serving.sh: no model published by $JOB" >&2; exit 1; }

for r in $(seq "$RUNS"); do
  if ((r % 2)); then modes="off on"; else modes="on off"; fi
  for mode in $modes; do
    start_logpd "$mode"
    for c in $CLIENTS; do
      echo "== serving: run $r/$RUNS, batching $mode, $c clients" >&2
      line=$(OPENBLAS_NUM_THREADS=1 "$LOAD" --server="$ADDR" --model="$MODEL" \
        --data="$FMNIST/t10k-images-idx3-ubyte.gz" --clients="$c" --seconds="$SECONDS_PER" \
        --warmup_seconds=1) || { echo "serving.sh: score_load failed" >&2; exit 1; }
      echo "{\"tag\": \"$mode/$c\", \"run\": $r, \"result\": $line}" >>"$RAW"
    done
  done
done
stop_logpd

"$PY" - "$RAW" "$CLIENTS" "$THREADS" <<'EOF'
import collections, json, statistics, sys
res = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    res[r["tag"]].append(r["result"])
clients = [int(c) for c in sys.argv[2].split()]
threads = sys.argv[3]
def med(tag, key):
    v = [r[key] for r in res.get(tag, []) if r.get(key) is not None]
    return statistics.median(v) if v else None
def ratio(a, b, key):
    v = [x[key] / y[key] for x, y in zip(res.get(a, []), res.get(b, [])) if y.get(key)]
    return statistics.median(v) if v else None
def f(v, fmt="{:,.0f}"):
    return "n/a" if v is None else fmt.format(v)
for c in clients:
    on, off = f"on/{c}", f"off/{c}"
    q = ratio(on, off, "records_per_second")
    target = "≥ 4×" if c == 32 else "—"
    met = "—" if c != 32 or q is None else ("yes" if q >= 4 else "**no**")
    print(f"| Score records/s, {c} single-record client{'s' if c > 1 else ''}, batching on "
          f"(reference: off), logpd {threads} thread{'s' if threads != '1' else ''} | "
          f"{f(med(on, 'records_per_second'))} | {f(med(off, 'records_per_second'))} | "
          f"{f(q, '{:.2f}×')} | {target} | {met} |")
for c in clients:
    on, off = f"on/{c}", f"off/{c}"
    p99 = med(on, "p99_ms")
    target = "p99 ≤ 5 ms" if c == 32 else "—"
    met = "—" if c != 32 or p99 is None else ("yes" if p99 <= 5 else "**no**")
    print(f"| Score latency p50 / p99 / p99.9 (ms), {c} client{'s' if c > 1 else ''}, batching on "
          f"(reference: off) | {f(med(on, 'p50_ms'), '{:.2f}')} / {f(p99, '{:.2f}')} / "
          f"{f(med(on, 'p999_ms'), '{:.2f}')} | {f(med(off, 'p50_ms'), '{:.2f}')} / "
          f"{f(med(off, 'p99_ms'), '{:.2f}')} / {f(med(off, 'p999_ms'), '{:.2f}')} | — | "
          f"{target} | {met} |")
errors = sum(r.get("errors", 0) for v in res.values() for r in v)
if errors:
    print(f"| Score calls that failed during the serving runs | {errors} | — | — | 0 | **no** |")
EOF
