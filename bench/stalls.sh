#!/usr/bin/env bash
# Issue 16, item 5 ("no stalls"): single-record Score latency through liblogp_client (bench/logp_bench
# latency) over LAT_N sequential calls, with logpd idle and while a job trains; p50, p99, p99.9 and
# max, and whether gRPC's 100 ms sleeps are gone (strace). A part of scripts/bench.sh: prints rows
# | measure | logp | reference | ratio | target | met? | (no header) on stdout, progress on stderr.
# Measurement only: nothing here is a test.
#
#   PARTS=bench/stalls.sh scripts/bench.sh                  through the round-two table
#   flock /tmp/logp-build.lock bench/stalls.sh              alone (about 3 minutes at RUNS=1)
#   REF_LOGPD=/path/to/old/logpd bench/stalls.sh            with a "reference" column: another logpd
#                                                           (e.g. one built before the change)
#
# Setup: a logpd (plaintext, 127.0.0.1, --compute_threads=1, OPENBLAS_NUM_THREADS=1 for it and
# the client) uploads binarized Fashion-MNIST's training set and trains the demo's MADE (1 x 500,
# Adam 1e-3, batch 100) for one epoch; the latency calls score records of the test set with it.
# Then RUNS times, for logp and (with REF_LOGPD) the reference in turn on the same data
# directory: LAT_N calls idle, then a job of 1,000 epochs starts and, once it has taken a step,
# LAT_N calls while it trains; the job is cancelled. The p50, p99 and p99.9 rows are medians over
# the runs; the max row is the largest call of all runs (a stall is what it is about).
# Then, unless STRACE=0 (or without strace), one more idle + training round of STRACE_N calls with
# `strace -f -T -e trace=clock_nanosleep -p PID` attached to logpd: the row counts the
# clock_nanosleep calls of 90 ms or more (gRPC 1.51's callback-API "nexting" threads sleep 100 ms;
# their wake-ups were what stalled a call). strace slows logpd down: its calls are not in the
# latency rows.
#
# Environment: RUNS (1), QUICK (1: LAT_N 2,000 and STRACE_N 1,000), LAT_N (20,000), STRACE_N
#   (5,000), STRACE (1), REF_LOGPD (none), OUT (./bench-out: stalls-raw.jsonl, stalls-strace-*.txt),
#   LOGP_BIN_DIR, LOGP_BUILD_DIR, PY (/usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS="${RUNS:-1}"
QUICK="${QUICK:-0}"
if [[ $QUICK == 1 ]]; then
  LAT_N="${LAT_N:-2000}" STRACE_N="${STRACE_N:-1000}"
else
  LAT_N="${LAT_N:-20000}" STRACE_N="${STRACE_N:-5000}"
fi
STRACE="${STRACE:-1}"
REF_LOGPD="${REF_LOGPD:-}"
OUT="${OUT:-$ROOT/bench-out}"
PY="${PY:-/usr/bin/python3}"
FMNIST=/usr/share/datasets/fashion-mnist
TEST="$FMNIST/t10k-images-idx3-ubyte.gz"

source "$ROOT/bench/lib.sh"
logp_binaries stalls.sh
[[ -z $REF_LOGPD || -x $REF_LOGPD ]] || { echo "stalls.sh: no $REF_LOGPD" >&2; exit 1; }
command -v strace >/dev/null || STRACE=0

mkdir -p "$OUT"
RAW="$OUT/stalls-raw.jsonl"
: >"$RAW"
WORK=$(mktemp -d /tmp/logp-stalls.XXXXXX)
PID=
STRACE_PID=
trap '[[ -n $STRACE_PID ]] && kill -INT "$STRACE_PID" 2>/dev/null; stop_logpd; rm -rf "$WORK"' EXIT

# start_logpd BINARY: sets PID, ADDR and CTL.
start_logpd() {
  stop_logpd
  rm -f "$WORK/port"
  OPENBLAS_NUM_THREADS=1 "$1" --data_dir="$WORK/data" --listen=127.0.0.1:0 \
    --port_file="$WORK/port" --compute_threads=1 >>"$WORK/logpd.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do [[ -s "$WORK/port" ]] && break; sleep 0.05; done
  [[ -s "$WORK/port" ]] || { echo "logpd did not start; see $WORK/logpd.log" >&2; exit 1; }
  ADDR="127.0.0.1:$(cat "$WORK/port")"
  CTL=("$LOGPCTL" --server="$ADDR")
}
SPEC=(--family=made --hidden_layers=1 --hidden_units=500 --lr=0.001 --validation_fraction=0.1
  --seed=1)
# latency TAG N: N single-record calls, one JSON line into the raw file.
latency() {
  local out
  out=$(OPENBLAS_NUM_THREADS=1 "$BENCH" latency --server="$ADDR" --model="$MODEL" \
    --data="$TEST" --n="$2") || { echo "stalls.sh: $1 failed" >&2; exit 1; }
  echo "{\"tag\": \"$1\", \"result\": $out}" >>"$RAW"
}
# round VARIANT N: N calls idle, then N while a job trains (it is cancelled after).
round() {
  echo "== $1: $2 calls idle" >&2
  latency "$1/idle" "$2"
  local job state
  job=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" "${SPEC[@]}" --batch_size=100 \
    --epochs=1000 | field id)
  for _ in $(seq 600); do
    [[ $("${CTL[@]}" --json jobs get "$job" | field step) -gt 0 ]] 2>/dev/null && break
    sleep 0.05
  done
  echo "== $1: $2 calls while $job trains" >&2
  latency "$1/training" "$2"
  state=$("${CTL[@]}" --json jobs get "$job" | field state)
  "${CTL[@]}" jobs cancel "$job" >/dev/null
  [[ $state == JOB_STATE_RUNNING ]] || echo "stalls.sh: warning: the job was $state" >&2
}

echo "== setup: binarized Fashion-MNIST, MADE 1x500 for one epoch" >&2
start_logpd "$LOGPD"
TRAIN=$("${CTL[@]}" --json datasets upload "$FMNIST/train-images-idx3-ubyte.gz" --kind=binary \
  --binarize_threshold=127 --name=train | field id)
SETUP_JOB=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" "${SPEC[@]}" --batch_size=100 \
  --epochs=1 | field id)
"${CTL[@]}" jobs watch "$SETUP_JOB" >/dev/null
MODEL=$("${CTL[@]}" --json jobs get "$SETUP_JOB" | field modelId)
[[ -n $MODEL ]] || { echo "stalls.sh: no model published by $SETUP_JOB" >&2; exit 1; }

VARIANTS=(logp)
[[ -n $REF_LOGPD ]] && VARIANTS+=(reference)
binary_of() { if [[ $1 == logp ]]; then echo "$LOGPD"; else echo "$REF_LOGPD"; fi; }
for r in $(seq "$RUNS"); do
  for v in "${VARIANTS[@]}"; do
    echo "== run $r/$RUNS: $v" >&2
    start_logpd "$(binary_of "$v")"
    round "$v" "$LAT_N"
  done
done

if [[ $STRACE == 1 ]]; then
  for v in "${VARIANTS[@]}"; do
    start_logpd "$(binary_of "$v")"
    TRACE="$OUT/stalls-strace-$v.txt"
    strace -f -T -e trace=clock_nanosleep -o "$TRACE" -p "$PID" 2>"$WORK/strace.err" &
    STRACE_PID=$!
    for _ in $(seq 100); do grep -q attached "$WORK/strace.err" && break; sleep 0.05; done
    sleep 1  # every thread attached
    round "strace-$v" "$STRACE_N"
    kill -INT "$STRACE_PID"
    wait "$STRACE_PID" || true
    STRACE_PID=
    # Sleeps of 90 ms or more (strace -T ends a finished call's line with <seconds> in it).
    read -r long total < <(grep 'clock_nanosleep' "$TRACE" | grep -o '<[0-9.]*>$' | tr -d '<>' |
      awk '{ n++; if ($1 >= 0.09) l++ } END { print l + 0, n + 0 }')
    echo "{\"tag\": \"strace/$v\", \"result\": {\"long_sleeps\": $long, \"sleeps\": $total}}" \
      >>"$RAW"
  done
fi
stop_logpd

"$PY" - "$RAW" "$LAT_N" "$STRACE_N" "$RUNS" <<'EOF'
import collections, json, statistics, sys
res = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    res[r["tag"]].append(r["result"])
n, strace_n, runs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
have_ref = "reference/idle" in res
def value(tag, key):
    v = [r[key] for r in res.get(tag, [])]
    if not v:
        return None
    return max(v) if key == "max_ms" else statistics.median(v)
def cell(v, fmt="{:.2f}"):
    return "—" if v is None else fmt.format(v)
rows = []
for load, what in (("idle", "idle"), ("training", "while a job trains")):
    for key, name, target in (("p50_ms", "p50", None), ("p99_ms", "p99", None),
                              ("p999_ms", "p99.9", 5.0), ("max_ms", "max", 100.0)):
        a = value(f"logp/{load}", key)
        b = value(f"reference/{load}", key) if have_ref else None
        ratio = f"{a / b:.2f}×" if a is not None and b else "—"
        if target is None:
            tcell, met = "—", "—"
        elif key == "max_ms":
            tcell, met = "< 100 ms", "yes" if a is not None and a < target else "**no**"
        else:
            tcell, met = f"≤ {target:g} ms", "yes" if a is not None and a <= target else "**no**"
        rows.append([f"single-record Score {name} (ms), {what}, {n:,} calls × {runs} runs",
                     cell(a), cell(b), ratio, tcell, met])
if "strace/logp" in res:
    a = res["strace/logp"][0]
    b = res["strace/reference"][0] if "strace/reference" in res else None
    rows.append([f"clock_nanosleep ≥ 90 ms in logpd (strace, 2 × {strace_n:,} calls)",
                 f"{a['long_sleeps']} (of {a['sleeps']})",
                 "—" if b is None else f"{b['long_sleeps']} (of {b['sleeps']})", "—", "0",
                 "yes" if a["long_sleeps"] == 0 else "**no**"])
for r in rows:
    print("| " + " | ".join(r) + " |")
EOF
