#!/usr/bin/env bash
# Issue 16, items 1 and 8 (a part of scripts/bench.sh; it runs alone too): training samples/s of
# the demo's MADE (1 x 500, natural order, Adam 1e-3, binarized Fashion-MNIST) at batch 100 and
# 1,000 with one thread, a logpd job (default masked-blocks path) against the tuned PyTorch loop
# (bench/reference/made_pytorch.py train --loop tuned), alternating, RUNS times; and the
# batch-1,000 efficiency: executed FLOP/s (logp_bench train-flops) over the fp32 matmul peak
# (logp_bench matmul-peak) measured in the same runs. Also the reference's two loops side by
# side at batch 100 (tuned vs plain), for the record.
#
# Prints table rows (| measure | logp | reference | ratio | target | met? |) on stdout, progress
# on stderr; raw JSON lines in $OUT/training.jsonl.
# Environment: LOGP_BIN_DIR (else ./build), OUT (./bench-out), QUICK (1: 20,000 records per run),
#   RUNS (3; QUICK: 1), PY (/usr/bin/python3), SAMPLES (records per training run, 300,000),
#   BLAS_CORETYPE (see bench/lib.sh blas_coretype; scripts/bench.sh has already applied it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source "$ROOT/bench/lib.sh"  # stop_logpd, field, logp_train, logp_binaries, blas_coretype
QUICK="${QUICK:-0}"
if [[ $QUICK == 1 ]]; then
  RUNS="${RUNS:-1}" SAMPLES="${SAMPLES:-20000}" WINDOW=0.25 PEAK_N=1024
else
  RUNS="${RUNS:-3}" SAMPLES="${SAMPLES:-300000}" WINDOW=1 PEAK_N=2048
fi
OUT="${OUT:-$ROOT/bench-out}"
PY="${PY:-/usr/bin/python3}"
REF="$ROOT/bench/reference/made_pytorch.py"
FMNIST=/usr/share/datasets/fashion-mnist
logp_binaries bench/training.sh
blas_coretype "$BENCH"
echo "training.sh: $BLAS_CORE_NOTE" >&2
"$PY" -c 'import torch' 2>/dev/null || { echo "training.sh: $PY cannot import torch" >&2; exit 1; }

mkdir -p "$OUT"
RAW="$OUT/training.jsonl"
: >"$RAW"
WORK=$(mktemp -d /tmp/logp-training.XXXXXX)
PID=
trap 'stop_logpd; rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS=1  # one thread on both sides, OpenBLAS's own pool included
record() { echo "{\"tag\": \"$1\", \"result\": $2}" >>"$RAW"; }
measure() {
  local out
  out=$("${@:2}") || { echo "training.sh: $1 failed" >&2; exit 1; }
  record "$1" "$out"
}

"$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 --port_file="$WORK/port" \
  --compute_threads=1 --progress_interval_seconds="$WINDOW" >>"$WORK/logpd.log" 2>&1 &
PID=$!
for _ in $(seq 200); do [[ -s "$WORK/port" ]] && break; sleep 0.05; done
[[ -s "$WORK/port" ]] || { echo "logpd did not start; see $WORK/logpd.log" >&2; exit 1; }
CTL=("$LOGPCTL" --server="127.0.0.1:$(cat "$WORK/port")")
SPEC=(--family=made --hidden_layers=1 --hidden_units=500 --lr=0.001 --validation_fraction=0.1
  --seed=1)
TRAIN=$("${CTL[@]}" --json datasets upload "$FMNIST/train-images-idx3-ubyte.gz" --kind=binary \
  --binarize_threshold=127 --name=train | field id)

for r in $(seq "$RUNS"); do
  echo "== training.sh run $r/$RUNS: matmul peak, batch 100 and 1000" >&2
  measure peak "$BENCH" matmul-peak --threads=1 --n="$PEAK_N"
  for b in 100 1000; do
    steps=$(((SAMPLES + b - 1) / b))
    measure "logp/$b" logp_train "$b" "$steps"
    measure "tuned/$b" "$PY" "$REF" train --loop tuned --batch "$b" --threads 1 \
      --steps "$steps" --window "$WINDOW"
    if [[ $b == 100 ]]; then
      measure "plain/$b" "$PY" "$REF" train --loop plain --batch "$b" --threads 1 \
        --steps "$steps" --window "$WINDOW"
    fi
  done
done

# The executed FLOPs per record of the model's architecture (a short job's published model).
JOB=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" "${SPEC[@]}" --batch_size=1000 \
  --epochs=1 --max_steps=2 | field id)
"${CTL[@]}" jobs watch "$JOB" >/dev/null
MODEL=$("${CTL[@]}" --json jobs get "$JOB" | field modelId)
[[ -n $MODEL ]] || { echo "training.sh: no model published by $JOB" >&2; exit 1; }
measure flops "$BENCH" train-flops --model_file="$WORK/data/models/$MODEL.model"
stop_logpd

"$PY" - "$RAW" <<'EOF'
import collections, json, statistics, sys
res = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    res[r["tag"]].append(r["result"])
def med(tag, key):
    v = [r[key] for r in res.get(tag, []) if key in r]
    return statistics.median(v) if v else None
def ratio(a, b, key):  # median of the per-run (paired, alternating) ratios
    v = [x[key] / y[key] for x, y in zip(res.get(a, []), res.get(b, [])) if y.get(key)]
    return statistics.median(v) if v else None
def f(v, fmt="{:,.0f}"):
    return "n/a" if v is None else fmt.format(v)
def met(ok):
    return "—" if ok is None else ("yes" if ok else "**no**")
rows = []
runs = len(res.get("peak", []))
for b, target in (("100", 2.5), ("1000", 2.0)):
    lg, py = med(f"logp/{b}", "samples_per_second"), med(f"tuned/{b}", "samples_per_second")
    q = ratio(f"logp/{b}", f"tuned/{b}", "samples_per_second")
    rows.append([f"training samples/s, batch {int(b):,}, 1 thread, vs the tuned PyTorch loop "
                 f"(median of {runs} paired runs)", f(lg), f(py), f(q, "{:.2f}×"),
                 f"≥ {target:g}×", met(None if q is None else q >= target)])
tu, pl = med("tuned/100", "samples_per_second"), med("plain/100", "samples_per_second")
q = ratio("tuned/100", "plain/100", "samples_per_second")
rows.append(["PyTorch reference, batch 100, 1 thread: tuned loop (reference column: plain loop)",
             f(tu), f(pl), f(q, "{:.2f}×"), "—", "—"])
peak = med("peak", "gflops_per_second")
fpr = res["flops"][0]["flops_per_record_blocks"] if res.get("flops") else None
sps = med("logp/1000", "samples_per_second")
if peak and fpr and sps:
    g = sps * fpr / 1e9
    rows.append([f"training efficiency, batch 1,000, 1 thread, masked blocks (default): executed "
                 f"GFLOP/s ({fpr / 1e6:.2f} MFLOP/record) ÷ matmul peak (reference column)",
                 f"{g:.1f} ({100 * g / peak:.0f}%)", f"{peak:.1f}", "—", "≥ 85%",
                 met(g / peak >= 0.85)])
for r in rows:
    print("| " + " | ".join(r) + " |")
EOF
