#!/usr/bin/env bash
# The measured cost of TLS: single-record Score latency and batch-BATCH Score throughput through
# liblogp_client (bench/logp_bench latency / score-client), with logpd serving plaintext, TLS, and
# TLS with bearer-token authentication, side by side in one run on one data directory. Prints a
# machine line and one markdown table: measure | plaintext | TLS | TLS+token | the two ratios to
# plaintext. Measurement only: nothing here is a test.
#
#   bench/tls.sh                                      about 2.5 minutes at RUNS=3 (40 s a run)
#   flock /tmp/logp-build.lock bench/tls.sh           on a machine where builds run alongside
#
# It does not build (so that it can run under the build lock): it uses build/'s (or
# $LOGP_BUILD_DIR's) server/logpd, client/logpctl and bench/logp_bench, or LOGP_BIN_DIR's;
# `scripts/build.sh --target logpd logpctl logp_bench` makes them.
#
# Setup: test certificates (tests/security/make_test_certs.sh: EC P-256, CA 1, server.pem for
# localhost and 127.0.0.1) and a tokens file (one token, tenant default, role writer) in a
# temporary directory; a plaintext logpd uploads binarized Fashion-MNIST's training set (pixel >
# 127) and trains the scoring models, which stay in the data directory:
#   made       the demo's MADE (1 x 500, natural order, Adam 1e-3, batch 100), one epoch (540
#              steps): the network scripts/bench.sh scores, so its latency rows compare;
#   bernoulli  independent Bernoulli (pseudo-count 0.5, closed form): scoring costs almost
#              nothing, so what the transport costs shows most plainly.
# Then RUNS times, in turn: logpd plaintext, logpd TLS (--tls_cert_file, --tls_key_file), logpd
# TLS + --auth_tokens_file (the client sends the token), the order rotated by one each run so that
# no variant always comes first; on each, for each model, latency (LAT_N
# sequential single-record calls after 20 warm-up calls, on one connection: the TLS handshake is
# in the warm-up, not in the figures) and score-client at BATCH records per request (median of
# 0.5 s windows over SCORE_SECONDS). logpd and the client are one process each on this machine,
# over 127.0.0.1, logpd --compute_threads=1 and OPENBLAS_NUM_THREADS=1 for both.
# Figures are medians over the runs; the ratios are medians of the per-run ratios.
#
# Environment: RUNS (3), MODELS ("made bernoulli"), LAT_N (1000), BATCH (1000), SCORE_SECONDS (3),
#   OUT (./bench-out: tls-raw.jsonl and tls-table.md), LOGP_BIN_DIR, LOGP_BUILD_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS="${RUNS:-3}"
MODELS="${MODELS:-made bernoulli}"
LAT_N="${LAT_N:-1000}"
BATCH="${BATCH:-1000}"
SCORE_SECONDS="${SCORE_SECONDS:-3}"
OUT="${OUT:-$ROOT/bench-out}"
FMNIST=/usr/share/datasets/fashion-mnist
TEST="$FMNIST/t10k-images-idx3-ubyte.gz"
PY=/usr/bin/python3

source "$ROOT/bench/lib.sh"
logp_binaries tls.sh

mkdir -p "$OUT"
RAW="$OUT/tls-raw.jsonl"
: >"$RAW"
WORK=$(mktemp -d /tmp/logp-tlsbench.XXXXXX)
PID=
trap 'stop_logpd; rm -rf "$WORK"' EXIT

tests/security/make_test_certs.sh "$WORK/certs" >/dev/null
TOKEN="tls-bench-$RANDOM$RANDOM"
echo "$TOKEN default writer" >"$WORK/tokens"
chmod 600 "$WORK/tokens"

# start_logpd VARIANT: plain, tls or token (TLS + token authentication). Sets ADDR and CLIENT
# (the connection flags of logpctl and logp_bench for that variant).
start_logpd() {
  stop_logpd
  rm -f "$WORK/port"
  local flags=()
  CLIENT=()
  if [[ $1 != plain ]]; then
    flags+=(--tls_cert_file="$WORK/certs/server.pem" --tls_key_file="$WORK/certs/server.key")
    CLIENT+=(--tls_ca_file="$WORK/certs/ca.pem")
  fi
  if [[ $1 == token ]]; then
    flags+=(--auth_tokens_file="$WORK/tokens")
    CLIENT+=(--token="$TOKEN")
  fi
  OPENBLAS_NUM_THREADS=1 "$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 \
    --port_file="$WORK/port" --compute_threads=1 "${flags[@]}" >>"$WORK/logpd.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do [[ -s "$WORK/port" ]] && break; sleep 0.05; done
  [[ -s "$WORK/port" ]] || { echo "logpd did not start; see $WORK/logpd.log" >&2; exit 1; }
  ADDR="127.0.0.1:$(cat "$WORK/port")"
  # The variant is what it claims: a call without its TLS, or without its token, is refused.
  local weaker=() missing=TLS
  case $1 in
    tls) ;;
    token) weaker=(--tls_ca_file="$WORK/certs/ca.pem") missing="the token" ;;
    *) return 0 ;;
  esac
  if env -u LOGP_TOKEN "$LOGPCTL" --server="$ADDR" "${weaker[@]}" models list >/dev/null 2>&1; then
    echo "tls.sh: logpd ($1) answered a call without $missing" >&2
    exit 1
  fi
}

T_SETUP=$(date +%s)
echo "== setup: certificates, plaintext logpd, binarized Fashion-MNIST, models: $MODELS" >&2
start_logpd plain
CTL=("$LOGPCTL" --server="$ADDR")
TRAIN=$("${CTL[@]}" --json datasets upload "$FMNIST/train-images-idx3-ubyte.gz" --kind=binary \
  --binarize_threshold=127 --name=train | field id)
declare -A MODEL
for m in $MODELS; do
  case $m in
    made) spec=(--family=made --hidden_layers=1 --hidden_units=500 --lr=0.001) ;;
    bernoulli) spec=(--family=bernoulli --pseudo_count=0.5) ;;
    *) echo "tls.sh: unknown model '$m' (made, bernoulli)" >&2; exit 1 ;;
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
# CPU ticks of the whole machine (user, nice, system, irq, softirq) and of this script with the
# processes it has waited for: their difference is what other processes took during the runs.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
own_ticks() { sed 's/.*) //' /proc/$$/stat | awk '{ print $12 + $13 + $14 + $15 }'; }
BUSY0=$(busy_ticks) OWN0=$(own_ticks)

# measure TAG COMMAND...: runs the command (it prints one JSON object) into raw.jsonl.
measure() {
  local out
  out=$("${@:2}") || { echo "tls.sh: $1 failed" >&2; exit 1; }
  echo "{\"tag\": \"$1\", \"result\": $out}" >>"$RAW"
}
for r in $(seq "$RUNS"); do
  variants=(plain tls token)
  rot=$(((r - 1) % 3))
  for v in "${variants[@]:rot}" "${variants[@]:0:rot}"; do
    echo "== run $r/$RUNS: $v" >&2
    start_logpd "$v"
    for m in $MODELS; do
      measure "latency/$m/$v" env OPENBLAS_NUM_THREADS=1 "$BENCH" latency --server="$ADDR" \
        "${CLIENT[@]}" --model="${MODEL[$m]}" --data="$TEST" --n="$LAT_N"
      measure "score/$m/$v" env OPENBLAS_NUM_THREADS=1 "$BENCH" score-client --server="$ADDR" \
        "${CLIENT[@]}" --model="${MODEL[$m]}" --data="$TEST" --batch="$BATCH" \
        --seconds="$SCORE_SECONDS"
    done
    stop_logpd
  done
done
SECS=$(($(date +%s) - T0))
OTHER_CPU=$(awk -v b="$(($(busy_ticks) - BUSY0))" -v o="$(($(own_ticks) - OWN0))" \
  -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", (b - o) / hz }')
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), nproc" \
    "$(nproc), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
    "$(date -u '+%Y-%m-%d %H:%M UTC'); load average $LOAD_START at start, $LOAD_END at end"
  echo "runs: $RUNS (plaintext, TLS, TLS+token in turn, rotated; ${SECS} s), latency n = $LAT_N," \
    "score-client batch $BATCH for ${SCORE_SECONDS} s, $(openssl version | cut -d' ' -f1-2)" \
    "(test certificates: EC P-256)"
  echo "other processes used $OTHER_CPU CPU-seconds of the $(($(nproc) * SECS)) the machine had" \
    "during the runs"
  echo
  "$PY" - "$RAW" "$MODELS" "$BATCH" <<'EOF'
import collections, json, statistics, sys
res = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    res[r["tag"]].append(r["result"])
models, batch = sys.argv[2].split(), int(sys.argv[3])
names = {"made": "MADE 1×500", "bernoulli": "Bernoulli"}
variants = ("plain", "tls", "token")
def med(tag, key):
    v = [r[key] for r in res.get(tag, [])]
    return statistics.median(v) if v else None
def ratio(tag_a, tag_b, key):
    # Median of the per-run ratios (the variants run in turn within each run).
    v = [a[key] / b[key] for a, b in zip(res.get(tag_a, []), res.get(tag_b, [])) if b[key]]
    return f"{statistics.median(v):.2f}×" if v else "n/a"
print("| measure | plaintext | TLS | TLS+token | ratio TLS/plain | ratio TLS+token/plain |")
print("|---|---|---|---|---|---|")
for m in models:
    for kind, key, what, fmt in (
            ("latency", "p50_ms", "single-record Score p50 (ms)", "{:.3f}"),
            ("latency", "p99_ms", "single-record Score p99 (ms)", "{:.3f}"),
            ("score", "records_per_second", f"Score records/s, batch {batch:,}", "{:,.0f}")):
        cells = [med(f"{kind}/{m}/{v}", key) for v in variants]
        print(f"| {what}, {names.get(m, m)} | "
              + " | ".join("n/a" if c is None else fmt.format(c) for c in cells)
              + f" | {ratio(f'{kind}/{m}/tls', f'{kind}/{m}/plain', key)}"
              + f" | {ratio(f'{kind}/{m}/token', f'{kind}/{m}/plain', key)} |")
EOF
} | tee "$OUT/tls-table.md"
