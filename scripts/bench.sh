#!/usr/bin/env bash
# logp against a plain PyTorch script doing the same work, side by side in one run (the issue's
# performance targets). Prints a machine line and one markdown table: measure | logp | PyTorch |
# ratio | target | met?. Measurement only: nothing here is a test.
#
#   scripts/bench.sh                 full run: the table below in about 10-15 minutes on 2 vCPUs,
#                                    then the round-two parts (DEFAULT_PARTS at the end), of
#                                    which PixelCNN's hour and the continuous families' runs to
#                                    convergence take hours: PARTS="bench/training.sh ..." picks
#   QUICK=1 scripts/bench.sh         smoke run (few steps, short windows; numbers mean little)
#   TLS=1 scripts/bench.sh           then bench/tls.sh too: the cost of TLS and token
#                                    authentication on Score latency and batch-1,000 throughput
#                                    (about 3 more minutes; it runs alone as well)
#
# What is measured (MADE 1 x 500, natural order, Adam 1e-3, binarized Fashion-MNIST, pixel > 127):
#   1. training samples/s: a logp job (logpd --compute_threads=T, restarted per T; median of its
#      progress events' samples_per_second, dropping the first window and every window that spans
#      an epoch end's validation pass) vs bench/reference/made_pytorch.py (median of 1 s windows
#      after 20 warm-up steps), for each "batch:threads" of TRAIN_CONFIGS, alternating, RUNS times;
#   2. efficiency: training FLOP/s over the fp32 matmul peak logp_bench measures in this run,
#      counting the matrix products actually executed per record: dense (the script, and logpd
#      --block_products=false, run DENSE_BATCH records per step), 2 FLOPs per multiply-add,
#      forward (2 D H), weight gradients (2 D H) and the hidden layer's input gradient (2 D H; the
#      input needs none): 5 * 2 * D * H = 3.92 MFLOP at D = 784, H = 500; logpd's default skips
#      the blocks the masks zero out (logp_bench train-flops counts what is left);
#   3. scoring records/s through liblogp_client (logp_bench score-client) vs in-process scoring of
#      the same model (LibTorch: logp_bench score-inprocess; the PyTorch script), 1 thread;
#   4. single-record Score latency p50/p99, idle and while a training job runs on the server;
#   5. peak RSS (VmHWM) of a freshly started logpd training the demo's job (checkpointing every
#      300 steps), vs the script's.
#
# Environment: RUNS (3; QUICK: 1), TRAIN_CONFIGS ("100:1 1000:1 100:2"), DENSE_BATCH (1000: the
#   batch of the dense-products runs, logpd --block_products=false, 1 thread; empty: none),
#   SAMPLES (records per
#   training run, 300000; QUICK: 20000), SCORE_BATCHES ("1 100 1000 10000"),
#   PIN_BLAS (1: OPENBLAS_NUM_THREADS=T for every process, so that "T threads" holds for OpenBLAS's
#   own pool too; 0: leave it), BLAS_CORETYPE (auto: when OpenBLAS falls back to its Prescott
#   kernel on a CPU with AVX-512 / AVX2, OPENBLAS_CORETYPE=SkylakeX / Haswell for both sides;
#   keep: never; NAME: that core; bench/lib.sh blas_coretype), OUT (./bench-out: raw JSON lines and the table),
#   LOGP_BIN_DIR=DIR (use DIR/server/logpd, DIR/client/logpctl, DIR/bench/logp_bench; no build).
# PyTorch side: Debian's python3-torch in /usr/bin/python3 (LOGP_WITH_TORCH_PYTHON=1
#   scripts/install-deps.sh installs it); without it, or with PYTORCH=0, only logp's side is
#   measured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUICK="${QUICK:-0}"
if [[ $QUICK == 1 ]]; then
  RUNS="${RUNS:-1}" SAMPLES="${SAMPLES:-20000}" SCORE_SECONDS=0.6 WINDOW=0.25 LAT_N=200 PEAK_N=1024
else
  RUNS="${RUNS:-3}" SAMPLES="${SAMPLES:-300000}" SCORE_SECONDS=3 WINDOW=1 LAT_N=2000 PEAK_N=2048
fi
TRAIN_CONFIGS="${TRAIN_CONFIGS:-100:1 1000:1 100:2}"
DENSE_BATCH="${DENSE_BATCH-1000}"
SCORE_BATCHES="${SCORE_BATCHES:-1 100 1000 10000}"
PIN_BLAS="${PIN_BLAS:-1}"
OUT="${OUT:-$ROOT/bench-out}"
FMNIST=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
REF="$ROOT/bench/reference/made_pytorch.py"

if [[ -z ${LOGP_BIN_DIR:-} ]]; then
  scripts/install-deps.sh >/dev/null
  scripts/build.sh --target logpd logpctl logp_bench >/dev/null
fi
BIN="${LOGP_BIN_DIR:-$ROOT/${LOGP_BUILD_DIR:-build}}"
LOGPD="$BIN/server/logpd"
BENCH="$BIN/bench/logp_bench"
source "$ROOT/bench/lib.sh"  # stop_logpd, field, logp_train, blas_coretype
blas_coretype "$BENCH"  # OPENBLAS_CORETYPE for both sides when OpenBLAS falls back to Prescott
HAVE_TORCH=0
if [[ ${PYTORCH:-1} == 1 ]] && "$PY" -c 'import torch' 2>/dev/null; then HAVE_TORCH=1; fi

mkdir -p "$OUT"
RAW="$OUT/raw.jsonl"
: >"$RAW"
WORK=$(mktemp -d /tmp/logp-perf.XXXXXX)
PID=
trap 'stop_logpd; rm -rf "$WORK"' EXIT
blas_env() { if [[ $PIN_BLAS == 1 ]]; then echo "OPENBLAS_NUM_THREADS=$1"; else echo "PIN_BLAS=0"; fi; }
# record TAG JSON: one line of raw.jsonl.
record() { echo "{\"tag\": \"$1\", \"result\": $2}" >>"$RAW"; }
# measure TAG COMMAND...: runs the command (it prints one JSON object) and records its output.
measure() {
  local out
  out=$("${@:2}") || { echo "bench: $1 failed" >&2; exit 1; }
  record "$1" "$out"
}

start_logpd() {  # start_logpd THREADS [more logpd flags...]
  stop_logpd
  rm -f "$WORK/port"
  env "$(blas_env "$1")" "$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 \
    --port_file="$WORK/port" --compute_threads="$1" --progress_interval_seconds="$WINDOW" \
    "${@:2}" >>"$WORK/logpd.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do [[ -s "$WORK/port" ]] && break; sleep 0.05; done
  [[ -s "$WORK/port" ]] || { echo "logpd did not start; see $WORK/logpd.log" >&2; exit 1; }
  ADDR="127.0.0.1:$(cat "$WORK/port")"
  CTL=("$BIN/client/logpctl" --server="$ADDR")
}

SPEC=(--family=made --hidden_layers=1 --hidden_units=500 --lr=0.001 --validation_fraction=0.1
  --seed=1)
steps_for() { echo $(((SAMPLES + $1 - 1) / $1)); }

# logp_train BATCH STEPS (bench/lib.sh): a job of STEPS steps; prints its samples/s as JSON.

echo "== setup: logpd, binarized Fashion-MNIST" >&2
start_logpd 1
TRAIN=$("${CTL[@]}" --json datasets upload "$FMNIST/train-images-idx3-ubyte.gz" --kind=binary \
  --binarize_threshold=127 --name=train | field id)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# 1 + 2. Training throughput and the matmul peak, alternating logp and PyTorch.
THREAD_SET=$(for c in $TRAIN_CONFIGS; do echo "${c#*:}"; done | sort -nu)
for t in $THREAD_SET; do
  start_logpd "$t"
  for r in $(seq "$RUNS"); do
    echo "== threads $t, run $r/$RUNS: matmul peak, training" >&2
    measure "peak/logp/$t" env "$(blas_env "$t")" "$BENCH" matmul-peak --threads="$t" \
      --n="$PEAK_N"
    if [[ $HAVE_TORCH == 1 ]]; then
      measure "peak/py/$t" env "$(blas_env "$t")" "$PY" "$REF" matmul-peak --threads "$t" \
        --n "$PEAK_N"
    fi
    for c in $TRAIN_CONFIGS; do
      b=${c%:*}
      [[ ${c#*:} == "$t" ]] || continue
      steps=$(steps_for "$b")
      measure "train/logp/$b/$t" logp_train "$b" "$steps"
      if [[ $HAVE_TORCH == 1 ]]; then
        measure "train/py/$b/$t" env "$(blas_env "$t")" "$PY" "$REF" train --batch "$b" \
          --threads "$t" --steps "$steps" --window "$WINDOW"
      fi
    done
  done
done

# logpd's default skips the matrix blocks MADE's masks zero out; the dense products (what a
# LibTorch loop or the script executes) are measured too, for the efficiency row.
if [[ -n $DENSE_BATCH ]]; then
  start_logpd 1 --block_products=false
  for r in $(seq "$RUNS"); do
    echo "== dense products, batch $DENSE_BATCH, run $r/$RUNS" >&2
    measure "train/logp-dense/$DENSE_BATCH/1" logp_train "$DENSE_BATCH" "$(steps_for "$DENSE_BATCH")"
  done
fi

# 3 + 4. Scoring and latency (one thread) with a published model of the demo's job.
start_logpd 1
echo "== scoring model: a short training job" >&2
JOB=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" "${SPEC[@]}" --batch_size=100 \
  --epochs=1 --max_steps="$(steps_for 100)" | field id)
"${CTL[@]}" jobs watch "$JOB" >/dev/null
MODEL=$("${CTL[@]}" --json jobs get "$JOB" | field modelId)
[[ -n $MODEL ]] || { echo "no model published by $JOB" >&2; exit 1; }
measure "flops" "$BENCH" train-flops --model_file="$WORK/data/models/$MODEL.model"
TEST="$FMNIST/t10k-images-idx3-ubyte.gz"
for r in $(seq "$RUNS"); do
  echo "== scoring, run $r/$RUNS" >&2
  for b in $SCORE_BATCHES; do
    measure "score/client/$b" "$BENCH" score-client --server="$ADDR" --model="$MODEL" \
      --data="$TEST" --batch="$b" --seconds="$SCORE_SECONDS"
    measure "score/libtorch/$b" env "$(blas_env 1)" "$BENCH" score-inprocess --threads=1 \
      --model_file="$WORK/data/models/$MODEL.model" --data="$TEST" --batch="$b" \
      --seconds="$SCORE_SECONDS"
    if [[ $HAVE_TORCH == 1 ]]; then
      measure "score/py/$b" env "$(blas_env 1)" "$PY" "$REF" score --threads 1 --batch "$b" \
        --seconds "$SCORE_SECONDS"
    fi
  done
done
echo "== latency: idle, then while a job trains" >&2
measure "latency/idle" "$BENCH" latency --server="$ADDR" --model="$MODEL" --data="$TEST" \
  --n="$LAT_N"
JOB=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" "${SPEC[@]}" --batch_size=100 \
  --epochs=1000 | field id)
for _ in $(seq 600); do
  [[ $("${CTL[@]}" --json jobs get "$JOB" | field step) -gt 0 ]] 2>/dev/null && break
  sleep 0.05
done
measure "latency/training" "$BENCH" latency --server="$ADDR" --model="$MODEL" --data="$TEST" \
  --n="$LAT_N"
STATE=$("${CTL[@]}" --json jobs get "$JOB" | field state)
"${CTL[@]}" jobs cancel "$JOB" >/dev/null
record "latency/training_job" "{\"state_after\": \"$STATE\"}"

# 5. Peak RSS: a freshly started logpd (the dataset is already stored) trains the demo's job,
# with a checkpoint every 300 steps so that the peak includes checkpoint encoding and writing.
if [[ $QUICK == 1 ]]; then RSS_STEPS=100; else RSS_STEPS=1080; fi  # 2 epochs of 540 steps
echo "== peak RSS: the demo's job, $RSS_STEPS steps" >&2
start_logpd 1 --checkpoint_interval_steps=300
JOB=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" "${SPEC[@]}" --batch_size=100 \
  --epochs=20 --max_steps="$RSS_STEPS" | field id)
"${CTL[@]}" jobs watch "$JOB" >/dev/null
HWM=$(awk '/^VmHWM:/ { print $2 / 1024 }' "/proc/$PID/status")
record "rss/logp" "{\"peak_rss_mb\": $HWM, \"steps\": $RSS_STEPS}"
stop_logpd
if [[ $HAVE_TORCH == 1 ]]; then
  measure "rss/py" env "$(blas_env 1)" "$PY" "$REF" train --batch 100 --threads 1 \
    --steps "$RSS_STEPS" --warmup 0 --validate
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# The table.
{
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), nproc" \
    "$(nproc), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
    "$(date -u '+%Y-%m-%d %H:%M UTC'); load average $LOAD_START at start, $LOAD_END at end;" \
    "$BLAS_CORE_NOTE"
  echo "runs: $RUNS (alternating logp / PyTorch), $SAMPLES records per training run," \
    "OpenBLAS threads pinned to T: $([[ $PIN_BLAS == 1 ]] && echo yes || echo no)," \
    "OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}, QUICK=$QUICK"
  if [[ ${PYTORCH:-1} != 1 ]]; then
    echo "note: PYTORCH=0: logp side only"
  elif [[ $HAVE_TORCH != 1 ]]; then
    echo "note: $PY cannot import torch (LOGP_WITH_TORCH_PYTHON=1 scripts/install-deps.sh" \
      "installs python3-torch): logp side only"
  fi
  echo
  "$PY" - "$RAW" <<'EOF'
import collections, json, statistics, sys
res = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    res[r["tag"]].append(r["result"])
def med(tag, key):
    v = [r[key] for r in res.get(tag, []) if key in r]
    return statistics.median(v) if v else None
def ratio(a_tag, b_tag, key, key_b=None):
    # Median of the per-run (paired, alternating) ratios.
    a, b = res.get(a_tag, []), res.get(b_tag, [])
    v = [x[key] / y[key_b or key] for x, y in zip(a, b) if y.get(key_b or key)]
    return statistics.median(v) if v else None
def f(v, fmt="{:,.0f}"):
    return "n/a" if v is None else fmt.format(v)
def met(ok):
    return "—" if ok is None else ("yes" if ok else "**no**")
rows = []
flops = res.get("flops", [{}])[0]
blocks_flops = flops.get("flops_per_record_blocks")
dense_flops = flops.get("flops_per_record_dense", 3.92e6)
for tag in [t.split("/", 2)[2] for t in res if t.startswith("train/logp/")]:
    b, t = tag.split("/")
    lg, py = med(f"train/logp/{tag}", "samples_per_second"), med(f"train/py/{tag}", "samples_per_second")
    q = ratio(f"train/logp/{tag}", f"train/py/{tag}", "samples_per_second")
    rows.append([f"training samples/s, batch {b}, {t} thread{'s' if t != '1' else ''}",
                 f(lg), f(py), f(q, "{:.2f}×"), "≥ 1.5×", met(None if q is None else q >= 1.5)])
for t in sorted({t.split("/")[2] for t in res if t.startswith("peak/logp/")}):
    lg, py = med(f"peak/logp/{t}", "gflops_per_second"), med(f"peak/py/{t}", "gflops_per_second")
    q = ratio(f"peak/logp/{t}", f"peak/py/{t}", "gflops_per_second")
    rows.append([f"fp32 matmul peak GFLOP/s, {t} thread{'s' if t != '1' else ''} (torch::mm / torch.mm)",
                 f(lg, "{:.1f}"), f(py, "{:.1f}"), f(q, "{:.2f}×"), "—", "—"])
for tag in [t.split("/", 2)[2] for t in res if t.startswith("train/logp-dense/")]:
    b, t = tag.split("/")
    lg, py = med(f"train/logp-dense/{tag}", "samples_per_second"), med(f"train/py/{tag}", "samples_per_second")
    rows.append([f"training samples/s, batch {b}, {t} thread, dense products (--block_products=false)",
                 f(lg), f(py), f(None if lg is None or not py else lg / py, "{:.2f}×"), "—", "—"])
peak = med("peak/logp/1", "gflops_per_second")
def eff_row(what, sps, py_sps, flops_per_record, target):
    if sps is None or not peak or not flops_per_record:
        return
    lg = sps * flops_per_record / 1e9
    py = None if py_sps is None else py_sps * 3.92e6 / 1e9
    rows.append([what, f"{lg:.1f} ({100 * lg / peak:.0f}%)",
                 "n/a" if py is None else f"{py:.1f} ({100 * py / peak:.0f}%)",
                 f(None if py is None else lg / py, "{:.2f}×"), "≥ 85%" if target else "—",
                 met(lg / peak >= 0.85 if target else None)])
py1000 = med("train/py/1000/1", "samples_per_second")
eff_row("training efficiency, batch 1000, 1 thread, dense products: GFLOP/s ÷ matmul peak",
        med("train/logp-dense/1000/1", "samples_per_second"), py1000, dense_flops, True)
for b in ("1000", "100"):
    eff_row(f"training efficiency, batch {b}, 1 thread, masked blocks skipped (default): "
            "executed GFLOP/s ÷ matmul peak", med(f"train/logp/{b}/1", "samples_per_second"),
            med(f"train/py/{b}/1", "samples_per_second"), blocks_flops, b == "1000")
batches = sorted({int(t.split("/")[2]) for t in res if t.startswith("score/client/")})
for b in batches:
    cl, py = med(f"score/client/{b}", "records_per_second"), med(f"score/py/{b}", "records_per_second")
    q = ratio(f"score/client/{b}", f"score/py/{b}", "records_per_second")
    target = b >= 1000
    rows.append([f"Score through liblogp_client, batch {b:,} (records/s) vs script in-process",
                 f(cl), f(py), f(q, "{:.2f}×"), "≥ 1×" if target else "—",
                 met(None if q is None or not target else q >= 1.0)])
for b in batches:
    lt, py = med(f"score/libtorch/{b}", "records_per_second"), med(f"score/py/{b}", "records_per_second")
    q = ratio(f"score/libtorch/{b}", f"score/py/{b}", "records_per_second")
    rows.append([f"in-process LibTorch LogProb, batch {b:,} (records/s) vs script in-process",
                 f(lt), f(py), f(q, "{:.2f}×"), "—", "—"])
for tag, what, limit in (("idle", "no job running", 1.0), ("training", "a training job running", 5.0)):
    r = res.get(f"latency/{tag}")
    if not r:
        continue
    r = r[0]
    rows.append([f"single-record Score p50 / p99 (ms), {what}",
                 f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}", "—", "—", f"p99 ≤ {limit:g} ms",
                 met(r["p99_ms"] <= limit)])
lg, py = med("rss/logp", "peak_rss_mb"), med("rss/py", "peak_rss_mb")
if lg is not None:
    rows.append(["peak RSS (MB) training the demo's MADE on 60k records", f(lg), f(py),
                 f(None if py is None else lg / py, "{:.2f}×"), "≤ 300 MB", met(lg <= 300)])
print("| measure | logp | PyTorch | ratio | target | met? |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
print("\nTraining FLOPs are the matrix-product FLOPs executed per record. Dense (the script,"
      " logpd --block_products=false): 5 * 2 * D*H = 3.92 MFLOP (D = 784, H = 500; forward, both"
      " weight gradients, and the hidden layer's input gradient -- the input needs none)."
      + ("" if not blocks_flops else
         f" logpd's default skips the blocks MADE's masks zero out: {blocks_flops / 1e6:.2f} MFLOP"
         f" ({100 * blocks_flops / dense_flops:.0f}% of dense; logp_bench train-flops)."))
state = res.get("latency/training_job", [{}])[0].get("state_after")
if state and state != "JOB_STATE_RUNNING":
    print(f"\nwarning: the training job was {state} when the latency measurement ended")
EOF
} | tee "$OUT/table.md"

# Round two (issue 16): each part is a script of its own that measures one target side by side
# and prints rows of the table above (| measure | logp | reference | ratio | target | met? |, no
# header) on stdout, its progress on stderr. It gets LOGP_BIN_DIR, OUT, QUICK, RUNS and PY.
# PARTS="" runs none; PARTS="bench/x.sh" only that one.
DEFAULT_PARTS=(
  bench/training.sh  # items 1 and 8: training vs the tuned reference, efficiency at b1000
  bench/stalls.sh  # item 5: Score p99.9 and max idle and training, 100 ms sleeps (strace)
  bench/sampling.sh  # item 4: incremental sampling vs the per-dimension sampler
  bench/nade.sh  # item 3: NADE training and scoring, hand-written pass vs autograd
  bench/serving.sh  # item 2: Score throughput and p99 over 1-64 clients, batching off vs on
  bench/pixelcnn.sh  # item 6: PixelCNN speed, test NLL after an hour (and the reference's 40
                     # minutes), sampling; about 2 h 10 min (QUICK: about 10 min)
  bench/continuous.sh  # item 7: continuous families to early stopping, up to 1 h each
)
PARTS=(${PARTS-${DEFAULT_PARTS[@]}})
if [[ ${#PARTS[@]} -gt 0 ]]; then
  {
    echo
    echo "| measure | logp | reference | ratio | target | met? |"
    echo "|---|---|---|---|---|---|"
    for part in "${PARTS[@]}"; do
      echo "== $part" >&2
      LOGP_BIN_DIR="$BIN" OUT="$OUT" QUICK="$QUICK" RUNS="$RUNS" PY="$PY" "$part" ||
        echo "| $part failed (see stderr) | — | — | — | — | **no** |"
    done
  } | tee -a "$OUT/table.md"
fi

if [[ ${TLS:-0} == 1 ]]; then
  echo "== bench/tls.sh: the cost of TLS" >&2
  if [[ $QUICK == 1 ]]; then
    LOGP_BIN_DIR="$BIN" OUT="$OUT" RUNS="$RUNS" SCORE_SECONDS="$SCORE_SECONDS" LAT_N="$LAT_N" \
      bench/tls.sh
  else
    LOGP_BIN_DIR="$BIN" OUT="$OUT" RUNS="$RUNS" bench/tls.sh
  fi
fi
