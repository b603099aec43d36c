#!/usr/bin/env bash
# Process-level test of the real binaries: logpd starts on a data directory, serves logpctl,
# exits 0 on SIGTERM in the middle of training, and on restart still has its dataset, its
# finished job and model, and re-queues the interrupted job.
# Usage: logpd_process_test.sh LOGPD LOGPCTL
set -euo pipefail
LOGPD=$1
LOGPCTL=$2
WORK=$(mktemp -d /tmp/logp-proc.XXXXXX)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; echo "--- logpd log"; cat "$WORK"/log* || true; exit 1; }

start() {
  rm -f "$WORK/port"
  "$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 --port_file="$WORK/port" \
    --progress_interval_seconds=0.1 >"$WORK/log$1" 2>&1 &
  PID=$!
  for _ in $(seq 100); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
  [[ -s "$WORK/port" ]] || fail "logpd did not start"
  CTL=("$LOGPCTL" --server="127.0.0.1:$(cat "$WORK/port")")
}
json_field() { grep -o "\"$1\":\"[^\"]*\"" | head -1 | cut -d'"' -f4; }

# 2,000 binary records of dim 64.
awk 'BEGIN { srand(7); for (r = 0; r < 2000; r++) { line = ""; for (c = 0; c < 64; c++)
  line = line (c ? "," : "") (rand() < 0.3 ? 1 : 0); print line } }' >"$WORK/data.csv"

start 1
# logpctl health: what the image's HEALTHCHECK and the probes run.
[[ $("${CTL[@]}" health) == SERVING ]] || fail "health did not say SERVING"
[[ $("${CTL[@]}" --json health) == '{"status": "SERVING"}' ]] || fail "health --json"
rc=0
"${CTL[@]}" health no.such.Service >/dev/null 2>"$WORK/health.err" || rc=$?
[[ $rc == 1 ]] && grep -q NOT_FOUND "$WORK/health.err" || fail "unknown service: exit $rc"
rc=0
"${CTL[@]}" health a b 2>/dev/null || rc=$?
[[ $rc == 2 ]] || fail "health with two arguments: exit $rc, not the usage exit 2"
DS=$("${CTL[@]}" --json datasets upload "$WORK/data.csv" --kind=binary --name=proc | json_field id)
[[ $DS == ds-* ]] || fail "upload gave no id"
HASH=$("${CTL[@]}" --json datasets get "$DS" | json_field contentHash)
J1=$("${CTL[@]}" --json jobs create --dataset="$DS" --family=bernoulli | json_field id)
"${CTL[@]}" jobs watch "$J1" >/dev/null || fail "bernoulli job did not succeed"
M1=$("${CTL[@]}" --json jobs get "$J1" | json_field modelId)
SCORE1=$("${CTL[@]}" models score "$M1" "$WORK/data.csv" --kind=binary | sed -n 1,5p)
# A long job, interrupted by SIGTERM once it is training.
J2=$("${CTL[@]}" --json jobs create --dataset="$DS" --family=made --hidden_units=64 \
  --epochs=10000 --batch_size=1 | json_field id)
for _ in $(seq 100); do
  "${CTL[@]}" --json jobs get "$J2" | grep -q JOB_STATE_RUNNING && break
  sleep 0.1
done
"${CTL[@]}" --json jobs get "$J2" | grep -q JOB_STATE_RUNNING || fail "job 2 never ran"
sleep 0.5
t0=$(date +%s%N)
kill -TERM "$PID"
wait "$PID" || fail "logpd exited with $? on SIGTERM"
ms=$((($(date +%s%N) - t0) / 1000000))
echo "SIGTERM to exit: $ms ms"
[[ $ms -lt 15000 ]] || fail "shutdown took $ms ms"
grep -q "stopped cleanly" "$WORK/log1" || fail "no clean-stop log line"
rc=0
"${CTL[@]}" health >/dev/null 2>"$WORK/health.err" || rc=$?
[[ $rc == 1 ]] && grep -q UNAVAILABLE "$WORK/health.err" || fail "health of a stopped server: exit $rc"

start 2
[[ $("${CTL[@]}" --json datasets get "$DS" | json_field contentHash) == "$HASH" ]] ||
  fail "dataset changed across restart"
"${CTL[@]}" --json jobs get "$J1" | grep -q JOB_STATE_SUCCEEDED || fail "job 1 lost its state"
[[ $("${CTL[@]}" models score "$M1" "$WORK/data.csv" --kind=binary | sed -n 1,5p) == "$SCORE1" ]] ||
  fail "model scores changed across restart"
"${CTL[@]}" --json jobs get "$J2" | grep -Eq "JOB_STATE_(QUEUED|RUNNING)" || fail "job 2 not requeued"
"${CTL[@]}" --json jobs watch "$J2" --from_seq=1 >"$WORK/events" &
WATCH=$!
"${CTL[@]}" jobs cancel "$J2" >/dev/null
wait "$WATCH" || true
grep -q "requeued after a server restart\|interrupted by server shutdown" "$WORK/events" ||
  fail "no requeue event"
grep -q JOB_STATE_CANCELLED "$WORK/events" || fail "job 2 did not end CANCELLED"
# Event numbers are 1, 2, 3, ... with no gap or repeat across the restart.
grep -o '"seq":"[0-9]*"' "$WORK/events" | cut -d'"' -f4 |
  awk '{ if ($1 != NR) { print "gap at " NR ": " $1; bad = 1 } } END { exit bad }' ||
  fail "event sequence broken"
kill -TERM "$PID"
wait "$PID" || fail "second logpd exited with $?"
echo "1 passed, 0 failed"
