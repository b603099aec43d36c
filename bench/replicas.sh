#!/usr/bin/env bash
# Replicas over PostgreSQL, measured: claim latency, failover time, and scoring throughput with 1,
# 2 and 3 logpd replicas behind one round-robin client. Prints a machine line and markdown
# tables. Measurement only: nothing here is a test (tests/process/replicas_test.sh is the test).
#
#   bench/replicas.sh                             about 3 minutes at RUNS=3
#   flock /tmp/logp-build.lock bench/replicas.sh  on a machine where builds run alongside
#
# It does not build: it uses build/'s (or $LOGP_BUILD_DIR's, or LOGP_BIN_DIR's) server/logpd,
# client/logpctl and bench/logp_bench (`scripts/build.sh --target logpd logpctl logp_bench`).
#
# Setup: a private PostgreSQL server (tests/postgres_server.sh, a Unix socket), one shared data
# directory, binarized Fashion-MNIST's training set (pixel > 127) and the demo's MADE (1 x 500,
# Adam 1e-3, batch 100) trained one epoch, the network scripts/bench.sh scores.
#   claim      CLAIM_JOBS Bernoulli jobs one after another on idle replicas: from the job's
#              "queued" event to its RUNNING event (server times; a slot is woken by the
#              catalogue's notification, or finds the job at its next one-second look).
#   failover   RUNS times: a long MADE job, kill -9 of the replica training it, time until the
#              job trains again elsewhere past its checkpoint (leases of FAILOVER_LEASE s).
#   scoring    RUNS times, for 1, 2 and 3 replicas (each logpd --compute_threads=1,
#              OPENBLAS_NUM_THREADS=1): logp_bench score-client with CLIENTS callers on one
#              round-robin channel over the replicas' addresses, BATCH records per request, for
#              SCORE_SECONDS; medians over the runs.
# The machine has 2 vCPUs (about one physical core): a third replica shares the cores with the
# other two, so the scoring figures say what replicas cost and give here, not what they give on
# machines of their own.
#
# Environment: RUNS (3), CLAIM_JOBS (10), FAILOVER_LEASE (5), CLIENTS (6), BATCH (100),
#   SCORE_SECONDS (5), OUT (./bench-out: replicas-raw.jsonl, replicas-table.md), LOGP_BIN_DIR,
#   LOGP_BUILD_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS="${RUNS:-3}"
CLAIM_JOBS="${CLAIM_JOBS:-10}"
FAILOVER_LEASE="${FAILOVER_LEASE:-5}"
CLIENTS="${CLIENTS:-6}"
BATCH="${BATCH:-100}"
SCORE_SECONDS="${SCORE_SECONDS:-5}"
OUT="${OUT:-$ROOT/bench-out}"
FMNIST=/usr/share/datasets/fashion-mnist
TEST="$FMNIST/t10k-images-idx3-ubyte.gz"
PY=/usr/bin/python3
source "$ROOT/bench/lib.sh"
logp_binaries replicas.sh
mkdir -p "$OUT"
RAW="$OUT/replicas-raw.jsonl"
: >"$RAW"
WORK=$(mktemp -d /tmp/logp-replbench.XXXXXX)
PGDIR=$(mktemp -d /tmp/logp-pg-XXXXXX)
PG=(bash "$ROOT/tests/postgres_server.sh")
declare -a PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do
    [[ -n $p ]] && kill -0 "$p" 2>/dev/null && { kill -TERM "$p"; wait "$p" || true; }
  done
  PIDS=()
}
trap 'for p in "${PIDS[@]}"; do [[ -n $p ]] && kill -9 "$p" 2>/dev/null; done; "${PG[@]}" stop "$PGDIR"; rm -rf "$WORK"' EXIT
"${PG[@]}" start "$PGDIR" $$ >/dev/null
"${PG[@]}" createdb "$PGDIR" logp
URI="postgresql://postgres@/logp?host=$PGDIR"

start_replicas() {  # start_replicas N [logpd flags]: replicas r1..rN; sets ADDRS (a list)
  local n=$1
  shift
  stop_all
  ADDRS=
  for i in $(seq "$n"); do
    rm -f "$WORK/port"
    OPENBLAS_NUM_THREADS=1 "$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 \
      --port_file="$WORK/port" --catalog="$URI" --replica_id="r$i" --compute_threads=1 "$@" \
      >>"$WORK/log$i" 2>&1 &
    PIDS[$i]=$!
    for _ in $(seq 200); do [[ -s "$WORK/port" ]] && break; sleep 0.05; done
    [[ -s "$WORK/port" ]] || { echo "replica r$i did not start; see $WORK/log$i" >&2; exit 1; }
    PORT[$i]=$(cat "$WORK/port")
    ADDRS+="${ADDRS:+,}127.0.0.1:${PORT[$i]}"
  done
  CTL=("$LOGPCTL" --server="$ADDRS")
}

echo "== setup: PostgreSQL, binarized Fashion-MNIST, the demo's MADE" >&2
start_replicas 1
TRAIN=$("${CTL[@]}" --json datasets upload "$FMNIST/train-images-idx3-ubyte.gz" --kind=binary \
  --binarize_threshold=127 --name=train | field id)
JOB=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" --family=made --hidden_layers=1 \
  --hidden_units=500 --lr=0.001 --batch_size=100 --epochs=1 --seed=1 | field id)
"${CTL[@]}" jobs watch "$JOB" >/dev/null
MODEL=$("${CTL[@]}" --json jobs get "$JOB" | field modelId)
"$PY" -c "
import random; random.seed(1)
for _ in range(2000): print(','.join('1' if random.random() < 0.3 else '0' for _ in range(16)))" \
  >"$WORK/small.csv"
SMALL=$("${CTL[@]}" --json datasets upload "$WORK/small.csv" --kind=binary --name=small | field id)

# --- Claim latency, with 1 and with 3 idle replicas.
claim_latency() {  # prints the ms from "queued" to RUNNING of one job
  local j
  j=$("${CTL[@]}" --json jobs create --dataset="$SMALL" --family=bernoulli | field id)
  "${CTL[@]}" --json jobs watch "$j" --from_seq=1 >"$WORK/claim.json"
  "$PY" - "$WORK/claim.json" <<'EOF'
import json, sys
from datetime import datetime
t = {}
for line in open(sys.argv[1]):
    e = json.loads(line)
    s = e.get("stateChange", {}).get("state")
    if s and s not in t:
        t[s] = datetime.fromisoformat(e["time"][:26].rstrip("Z"))
print(round((t["JOB_STATE_RUNNING"] - t["JOB_STATE_QUEUED"]).total_seconds() * 1000, 1))
EOF
}
for n in 1 3; do
  start_replicas "$n"
  for _ in $(seq "$CLAIM_JOBS"); do
    echo "{\"measure\": \"claim_ms\", \"replicas\": $n, \"value\": $(claim_latency)}" >>"$RAW"
    sleep 0.3
  done
done

# --- Failover: kill -9 of the replica training a job, until it trains again elsewhere.
for r in $(seq "$RUNS"); do
  start_replicas 3 --job_lease_seconds="$FAILOVER_LEASE" --checkpoint_interval_steps=50
  j=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" --family=made --hidden_units=500 \
    --batch_size=100 --epochs=100 --seed=$r | field id)
  for _ in $(seq 600); do
    c=$("${CTL[@]}" --json jobs get "$j" | field checkpointStep)
    [[ -n $c && $c -ge 50 ]] && break
    sleep 0.1
  done
  owner=$("${CTL[@]}" --json jobs get "$j" | field replicaId)
  i=${owner#r}
  ckpt=$("${CTL[@]}" --json jobs get "$j" | field checkpointStep)
  t0=$(date +%s%N)
  kill -9 "${PIDS[$i]}"
  wait "${PIDS[$i]}" 2>/dev/null || true
  PIDS[$i]=
  for _ in $(seq 1200); do
    got=$("${CTL[@]}" --json jobs get "$j")
    rr=$(field replicaId <<<"$got")
    s=$(field step <<<"$got")
    [[ -n $rr && $rr != "$owner" && ${s:-0} -gt $ckpt ]] && break
    sleep 0.05
  done
  ms=$((($(date +%s%N) - t0) / 1000000))
  echo "{\"measure\": \"failover_ms\", \"lease_s\": $FAILOVER_LEASE, \"value\": $ms}" >>"$RAW"
  "${CTL[@]}" jobs cancel "$j" >/dev/null || true
done

# --- Scoring throughput through one round-robin channel over 1, 2, 3 replicas.
for r in $(seq "$RUNS"); do
  for n in 1 2 3; do
    start_replicas "$n"
    out=$("$BENCH" score-client --server="$ADDRS" --model="$MODEL" --data="$TEST" \
      --batch="$BATCH" --clients="$CLIENTS" --seconds="$SCORE_SECONDS")
    echo "{\"measure\": \"score_rps\", \"replicas\": $n, \"run\": $r, \"result\": $out}" >>"$RAW"
  done
done
stop_all

"$PY" - "$RAW" "$OUT/replicas-table.md" "$CLIENTS" "$BATCH" "$FAILOVER_LEASE" <<'EOF'
import json, statistics, sys, os
raw, table, clients, batch, lease = sys.argv[1:]
rows = [json.loads(l) for l in open(raw)]
med = statistics.median
out = [f"machine: {os.cpu_count()} vCPUs, {open('/proc/loadavg').read().split()[0]} load", ""]
out += ["| claim latency (queued → RUNNING) | median | max |", "|---|---:|---:|"]
for n in (1, 3):
    v = [r["value"] for r in rows if r["measure"] == "claim_ms" and r["replicas"] == n]
    out.append(f"| {n} idle replica{'s' if n > 1 else ''} | {med(v):.1f} ms | {max(v):.1f} ms |")
v = [r["value"] for r in rows if r["measure"] == "failover_ms"]
out += ["", f"| failover (kill -9 → training elsewhere), leases of {lease} s | median | min | max |",
        "|---|---:|---:|---:|", f"| {len(v)} runs | {med(v)/1000:.2f} s | {min(v)/1000:.2f} s | {max(v)/1000:.2f} s |"]
out += ["", f"| scoring, {clients} callers, batch {batch} | records/s (median) | × 1 replica |",
        "|---|---:|---:|"]
base = None
for n in (1, 2, 3):
    v = [r["result"]["records_per_second"] for r in rows if r["measure"] == "score_rps" and r["replicas"] == n]
    m = med(v)
    base = base or m
    out.append(f"| {n} replica{'s' if n > 1 else ''} | {m:,.0f} | {m / base:.2f} |")
text = "\n".join(out)
print(text)
open(table, "w").write(text + "\n")
EOF
