#!/usr/bin/env bash
# Process-level test of a shutdown with client channels open: SIGTERM reaches a logpd that is
# training a job while 20 idle channels are connected (from a client that never notices the
# server's GOAWAY, as an idle gRPC client does until its channel next polls, every 5 s by
# default), a WatchJob stream is read, another one's client is stopped (SIGSTOP), a Sample stream's
# client is stopped with its TCP window full, and a Score and an Evaluate are in flight.
# logpd must exit 0 within 5 s (its grace period is 30 s: waiting for any of those clients would
# take that long), the streams and calls must end UNAVAILABLE, every client must end, and the next
# start must serve and resume the interrupted job.
# Usage: shutdown_test.sh LOGPD LOGPCTL IDLE_CHANNELS
set -euo pipefail
LOGPD=$1
LOGPCTL=$2
IDLE_CHANNELS=$3
MAX_MS=5000
WORK=$(mktemp -d /tmp/logp-shutdown.XXXXXX)
trap 'kill -CONT $(jobs -p) 2>/dev/null || true; kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
source "$(dirname "$0")/lib.sh"

# wait_gone SECONDS PID...: waits until every PID has exited; fails naming the first that has not.
wait_gone() {
  local seconds=$1
  shift
  for _ in $(seq $((seconds * 10))); do
    local alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  for p in "$@"; do kill -0 "$p" 2>/dev/null && fail "client $p still running ${seconds}s after the shutdown"; done
}

gen 5 20000 >"$WORK/data.csv"
head -10 "$WORK/data.csv" >"$WORK/small.csv"
launch "$WORK/log1" "$WORK/data" --shutdown_grace_seconds=30 --progress_interval_seconds=0.1 \
  --max_samples=10000000
ADDR=127.0.0.1:$(cat "$WORK/port")
DS=$("${CTL[@]}" --json datasets upload "$WORK/data.csv" --kind=binary --name=shutdown | field id)
[[ $DS == ds-* ]] || fail "upload gave no id"
# A MADE whose scoring is slow (1024 hidden units, 8 masks; one step of training is enough), and
# a Bernoulli model whose sampling is fast (a stream that fills any window).
J=$("${CTL[@]}" --json jobs create --dataset="$DS" --family=made --hidden_units=1024 --num_masks=8 \
  --max_steps=1 | field id)
"${CTL[@]}" jobs watch "$J" >/dev/null || fail "the MADE job did not succeed"
SLOW=$(job "$J" | field modelId)
J=$("${CTL[@]}" --json jobs create --dataset="$DS" --family=bernoulli | field id)
"${CTL[@]}" jobs watch "$J" >/dev/null || fail "the Bernoulli job did not succeed"
FAST=$(job "$J" | field modelId)
SCORE1=$("${CTL[@]}" models score "$SLOW" "$WORK/small.csv" --kind=binary)
# The job the shutdown interrupts.
J=$("${CTL[@]}" --json jobs create --dataset="$DS" --family=made --hidden_units=64 \
  --epochs=10000 --batch_size=1 | field id)
for _ in $(seq 100); do [[ $(state "$J") == JOB_STATE_RUNNING ]] && break; sleep 0.1; done
[[ $(state "$J") == JOB_STATE_RUNNING ]] || fail "the long job never ran"

GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS=3600000 "$IDLE_CHANNELS" --server="$ADDR" \
  --channels=20 --ready_file="$WORK/idle_ready" >"$WORK/idle.out" 2>&1 &
IDLE=$!
"${CTL[@]}" jobs watch "$J" >"$WORK/watch.out" 2>&1 &
WATCH=$!
"${CTL[@]}" jobs watch "$J" >"$WORK/stopped_watch.out" 2>&1 &
STOPPED_WATCH=$!
"${CTL[@]}" models sample "$FAST" --n=10000000 --output="$WORK/samples.csv" \
  >"$WORK/sample.out" 2>&1 &
STOPPED_SAMPLE=$!
"${CTL[@]}" models score "$SLOW" "$WORK/data.csv" --kind=binary >"$WORK/score.out" 2>&1 &
SCORE=$!
"${CTL[@]}" models evaluate "$SLOW" --dataset="$DS" >"$WORK/evaluate.out" 2>&1 &
EVALUATE=$!
for _ in $(seq 200); do
  [[ -s "$WORK/idle_ready" && -s "$WORK/watch.out" && -s "$WORK/stopped_watch.out" ]] && break
  sleep 0.05
done
[[ -s "$WORK/idle_ready" ]] || fail "the idle channels did not connect: $(cat "$WORK/idle.out")"
[[ -s "$WORK/stopped_watch.out" ]] || fail "the watchers receive nothing"
kill -STOP "$STOPPED_WATCH"
sleep 1  # the Sample stream fills the socket buffers and the HTTP/2 window
kill -STOP "$STOPPED_SAMPLE"
sleep 1
for p in $SCORE $EVALUATE; do kill -0 $p 2>/dev/null || fail "a call ended before the shutdown"; done

t0=$(date +%s%N)
kill -TERM "$PID"
wait "$PID" || fail "logpd exited with $? on SIGTERM"
ms=$((($(date +%s%N) - t0) / 1000000))
echo "SIGTERM to exit with channels open: $ms ms"
((ms < MAX_MS)) || fail "shutdown took $ms ms"
grep -q "stopped cleanly\|stopped without waiting" "$WORK/log1" || fail "no stop log line"
kill -CONT "$STOPPED_WATCH" "$STOPPED_SAMPLE"
wait_gone 30 "$WATCH" "$STOPPED_WATCH" "$STOPPED_SAMPLE" "$SCORE" "$EVALUATE"
kill "$IDLE"
grep -q "UNAVAILABLE: server is shutting down" "$WORK/watch.out" ||
  fail "the watch stream did not end UNAVAILABLE: $(tail -1 "$WORK/watch.out")"
for f in score evaluate; do
  grep -q UNAVAILABLE "$WORK/$f.out" || fail "$f did not end UNAVAILABLE: $(tail -1 "$WORK/$f.out")"
done

# The next start serves, and the interrupted job resumes from its checkpoint.
launch "$WORK/log2" "$WORK/data" --progress_interval_seconds=0.1
[[ $("${CTL[@]}" models score "$SLOW" "$WORK/small.csv" --kind=binary) == "$SCORE1" ]] ||
  fail "scores changed across the restart"
[[ $(state "$J") =~ JOB_STATE_(QUEUED|RUNNING) ]] || fail "the job was not requeued: $(state "$J")"
"${CTL[@]}" jobs cancel "$J" >/dev/null
"${CTL[@]}" --json jobs watch "$J" >"$WORK/events" || true
grep -q "interrupted by server shutdown; resumes from the checkpoint at step [1-9]" \
  "$WORK/events" || fail "no interruption event with a checkpoint"
grep -q "resuming from the checkpoint at step [1-9]" "$WORK/events" || fail "no resumption event"
kill -TERM "$PID"
wait "$PID" || fail "the second logpd exited with $?"
grep -q "stopped cleanly" "$WORK/log2" || fail "the second logpd did not stop cleanly"
echo "1 passed, 0 failed"
