#!/usr/bin/env bash
# Process-level test of WatchJob at scale (a test of correctness, not of timing): the real logpd
# trains a job while 1,000 watchers follow it (watch_many: client callback API, 10 connections).
# Every stream must receive its whole part of the event sequence with no gap or repeat, ending
# with the final state change; the job must succeed; and logpd's thread count while the streams
# are open must stay far below one thread per watcher.
# Usage: watchers_test.sh LOGPD LOGPCTL WATCH_MANY
set -euo pipefail
LOGPD=$1
LOGPCTL=$2
WATCH_MANY=$3
WATCHERS=1000
MAX_THREADS=200
WORK=$(mktemp -d /tmp/logp-watchers.XXXXXX)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
fail() {
  echo "FAIL: $*"
  echo "--- watch_many"; cat "$WORK/watch_many.out" 2>/dev/null || true
  echo "--- logpd log (tail)"; tail -30 "$WORK/log" || true
  exit 1
}
threads_of() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }
json_field() { grep -o "\"$1\":\"[^\"]*\"" | head -1 | cut -d'"' -f4; }

"$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 --port_file="$WORK/port" \
  --progress_interval_seconds=0.1 >"$WORK/log" 2>&1 &
PID=$!
for _ in $(seq 100); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
[[ -s "$WORK/port" ]] || fail "logpd did not start"
ADDR="127.0.0.1:$(cat "$WORK/port")"
CTL=("$LOGPCTL" --server="$ADDR")

# 1,000 binary records of dim 32.
awk 'BEGIN { srand(11); for (r = 0; r < 1000; r++) { line = ""; for (c = 0; c < 32; c++)
  line = line (c ? "," : "") (rand() < 0.3 ? 1 : 0); print line } }' >"$WORK/data.csv"
DS=$("${CTL[@]}" --json datasets upload "$WORK/data.csv" --kind=binary --name=watchers |
  json_field id)
[[ $DS == ds-* ]] || fail "upload gave no id"
echo "logpd threads before the watchers: $(threads_of "$PID")"

# A small MADE that trains for some seconds (225 steps per epoch: it must outlast the 1,000 streams'
# start, about 9 s here with WatchJob's one async polling thread replaying history to the streams
# already open), so there are hundreds of events: an epoch summary every few tens of ms and a
# progress event every 0.1 s. Under the sanitizers
# (LOGP_SANITIZE=1 scripts/test.sh) each step is several times slower: fewer epochs keep the
# run about as long, so the watchers' timeout still fits.
EPOCHS=300
[[ ${LOGP_SANITIZE:-0} == 1 ]] && EPOCHS=60
J=$("${CTL[@]}" --json jobs create --dataset="$DS" --family=made --hidden_units=16 \
  --epochs="$EPOCHS" --batch_size=4 | json_field id)
[[ $J == job-* ]] || fail "job not created"

# Every 10th watcher starts at seq 5, every 10th leaves after 40 events; the rest watch it all.
"$WATCH_MANY" --server="$ADDR" --job="$J" --watchers="$WATCHERS" --channels=10 \
  --middle_every=10 --middle_seq=5 --leave_every=10 --leave_after=40 \
  --ready_file="$WORK/ready" --timeout_seconds=200 >"$WORK/watch_many.out" 2>&1 &
WM=$!
MAX=0
while kill -0 "$WM" 2>/dev/null; do
  T=$(threads_of "$PID")
  ((T > MAX)) && MAX=$T
  if [[ -s "$WORK/ready" && -z ${OPEN:-} ]]; then
    OPEN=$(cat "$WORK/ready")
    STATE=$("${CTL[@]}" --json jobs get "$J" | json_field state)
    echo "logpd threads with $OPEN watch streams open: $T (job $STATE)"
    [[ $STATE == JOB_STATE_RUNNING ]] || fail "the job was $STATE, not training, with the streams open"
    ((OPEN >= WATCHERS * 9 / 10)) || fail "only $OPEN streams open at once"
    ((T < MAX_THREADS)) || fail "logpd has $T threads with $OPEN streams open"
  fi
  sleep 0.2
done
wait "$WM" && WM_RC=0 || WM_RC=$?
cat "$WORK/watch_many.out"
echo "logpd threads, most seen while watched: $MAX"
[[ -n ${OPEN:-} ]] || fail "the streams never were all open"
((WM_RC == 0)) || fail "watch_many exited with $WM_RC"
((MAX < MAX_THREADS)) || fail "logpd reached $MAX threads"
"${CTL[@]}" --json jobs get "$J" | grep -q JOB_STATE_SUCCEEDED || fail "the job did not succeed"
grep -q "from the start: 800/800 ok" "$WORK/watch_many.out" || fail "unexpected watcher split"

kill -TERM "$PID"
wait "$PID" || fail "logpd exited with $? on SIGTERM"
echo "1 passed, 0 failed"
