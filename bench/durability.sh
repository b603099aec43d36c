#!/usr/bin/env bash
# What durability costs, on the demo's job (MADE 1x500, Adam 1e-3, batch 100, binarized
# Fashion-MNIST): checkpoint size and time (encoding on the training thread + durable write),
# training throughput with and without checkpoints every 100 steps, and the resume overhead
# after kill -9 (seconds from launching logpd again to the job training past its checkpoint).
#   bench/durability.sh            (LOGP_BIN_DIR=DIR: use DIR/server/logpd, DIR/client/logpctl)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN="${LOGP_BIN_DIR:-$ROOT/${LOGP_BUILD_DIR:-build}}"
[[ -n ${LOGP_BIN_DIR:-} ]] || scripts/build.sh --target logpd logpctl >/dev/null
FMNIST=/usr/share/datasets/fashion-mnist
WORK=$(mktemp -d /tmp/logp-durability.XXXXXX)
PID=
trap '[[ -n $PID ]] && kill -9 $PID 2>/dev/null; rm -rf "$WORK"' EXIT
field() { { grep -o "\"$1\":\"\?[^\",}]*" || true; } | head -1 | sed 's/.*:"\?//'; }
now() { date +%s.%N; }
start() {  # start LOGNAME [flags]
  local log=$1
  shift
  rm -f "$WORK/port"
  "$BIN/server/logpd" --data_dir="$WORK/data" --listen=127.0.0.1:0 --port_file="$WORK/port" \
    --progress_interval_seconds=1 "$@" >"$WORK/$log" 2>&1 &
  PID=$!
  for _ in $(seq 400); do [[ -s "$WORK/port" ]] && break; sleep 0.025; done
  CTL=("$BIN/client/logpctl" --server="127.0.0.1:$(cat "$WORK/port")")
}
SPEC=(--family=made --hidden_layers=1 --hidden_units=500 --lr=0.001 --batch_size=100
  --validation_fraction=0.1 --seed=1)
rate() {  # median training records/s over a finished job's progress and epoch events
  "${CTL[@]}" --json jobs watch "$1" --from_seq=1 | grep -o '"samplesPerSecond":[0-9.e+]*' |
    awk -F: '{ print $2 }' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

start log0 --checkpoint_interval_seconds=0
TRAIN=$("${CTL[@]}" --json datasets upload "$FMNIST/train-images-idx3-ubyte.gz" --kind=binary \
  --binarize_threshold=127 --name=train | field id)
# Throughput without checkpoints, then with one every 100 steps (540 steps per epoch).
A=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" "${SPEC[@]}" --epochs=2 | field id)
"${CTL[@]}" jobs watch "$A" >/dev/null
RATE_OFF=$(rate "$A")
kill -TERM $PID
wait $PID || true
start log1 --checkpoint_interval_steps=100 --checkpoint_interval_seconds=0
B=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" "${SPEC[@]}" --epochs=2 | field id)
"${CTL[@]}" jobs watch "$B" >/dev/null
RATE_ON=$(rate "$B")
# Checkpoint cost from logpd's log lines.
grep -o 'checkpoint at step [0-9]* ([0-9]* bytes): encoded in [0-9.e-]* ms, written in [0-9.e-]* ms' \
  "$WORK/log1" | awk '{ print $5, $9, $13 }' | tr -d '(' >"$WORK/ckpt"
read -r N BYTES ENC_MED ENC_P90 WR_MED WR_P90 < <(python3 - "$WORK/ckpt" <<'EOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
def pct(v, q):
    v = sorted(v); return v[min(len(v) - 1, int(q * len(v)))]
enc = [r[1] for r in rows]; wr = [r[2] for r in rows]
print(len(rows), int(rows[0][0]), statistics.median(enc), pct(enc, 0.9), statistics.median(wr), pct(wr, 0.9))
EOF
)

# Resume overhead after kill -9 (checkpoints every 100 steps).
C=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" "${SPEC[@]}" --epochs=3 | field id)
for _ in $(seq 2000); do
  c=$("${CTL[@]}" --json jobs get "$C" | field checkpointStep)
  [[ -n $c && $c -ge 300 ]] && break
  sleep 0.05
done
kill -9 $PID
wait $PID 2>/dev/null || true
CKPT=$(ls "$WORK/data/checkpoints/$C" | grep '\.ckpt$' | sort | tail -1 | sed 's/\.ckpt$//;s/^0*//')
t0=$(now)
start log2 --checkpoint_interval_steps=100 --checkpoint_interval_seconds=0
t_serving=$(now)
while true; do
  s=$("${CTL[@]}" --json jobs get "$C" | field step)
  [[ -n $s && $s -gt $CKPT ]] && break
  sleep 0.01
done
t_training=$(now)
"${CTL[@]}" jobs cancel "$C" >/dev/null
kill -TERM $PID
wait $PID || true
PID=

printf '| measure (demo MADE 1x500, batch 100, 784-D, this machine) | value |\n|---|---|\n'
printf '| checkpoint size | %.1f MB |\n' "$(echo "$BYTES / 1000000" | bc -l)"
printf '| checkpoint encode on the training thread, median / p90 (%d checkpoints) | %.1f / %.1f ms |\n' "$N" "$ENC_MED" "$ENC_P90"
printf '| checkpoint durable write (temp, fsync, rename), median / p90 | %.1f / %.1f ms |\n' "$WR_MED" "$WR_P90"
printf '| training throughput, no checkpoints (median progress window) | %.0f records/s |\n' "$RATE_OFF"
printf '| training throughput, a checkpoint every 100 steps | %.0f records/s |\n' "$RATE_ON"
printf '| kill -9 at step >= 300, restart: logpd serving again | %.2f s |\n' "$(echo "$t_serving - $t0" | bc -l)"
printf '| kill -9, restart: job training past its checkpoint (step %d) again | %.2f s |\n' "$CKPT" "$(echo "$t_training - $t0" | bc -l)"
