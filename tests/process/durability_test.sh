#!/usr/bin/env bash
# Process-level durability test of the real logpd: kill -9 in the middle of training and restart
# (the job resumes from its checkpoint, its events continue without gap or repeat, its model is
# as good as an uninterrupted run's, datasets and models are bit-identical); SIGTERM (checkpoint,
# exit 0, resume); cancel in every state; a diverging job fails alone while another finishes;
# Score and Sample on a running job's checkpoint; a job killed with its server three times in a
# row is failed, not resumed again.
# Usage: durability_test.sh LOGPD LOGPCTL
set -euo pipefail
LOGPD=$1
LOGPCTL=$2
WORK=$(mktemp -d /tmp/logp-durable.XXXXXX)
PID=
trap '[[ -n $PID ]] && kill -9 $PID 2>/dev/null; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT
source "$(dirname "$0")/lib.sh"
now_ms() { echo $(($(date +%s%N) / 1000000)); }

start() {  # start N [extra logpd flags]
  local n=$1
  shift
  launch "$WORK/log$n" "$WORK/data" --progress_interval_seconds=0.05 \
    --checkpoint_interval_steps=100 "$@"
}
wait_state() {  # wait_state JOB STATE-REGEX [tries of 0.05 s]
  for _ in $(seq "${3:-600}"); do
    state "$1" | grep -Eq "$2" && return 0
    sleep 0.05
  done
  fail "job $1 never reached $2 (it is $(state "$1"))"
}
wait_checkpoint() {  # wait until the job has a checkpoint at or after step $2
  for _ in $(seq 600); do
    local c
    c=$(job "$1" | field checkpointStep)
    [[ -n $c && $c -ge $2 ]] && return 0
    sleep 0.05
  done
  fail "job $1 wrote no checkpoint"
}
# Events of a finished job: seq 1..N, progress steps and epochs never twice (check_events.py).
check_events() {
  "${CTL[@]}" --json jobs watch "$1" --from_seq=1 >"$WORK/events.$1" || true
  python3 "$(dirname "$0")/check_events.py" "$WORK/events.$1" || fail "job $1: events broken"
}
digest() { (cd "$WORK/data" && find datasets models -type f | sort | xargs sha256sum); }
# The newest checkpoint on disk of job $1 (read while logpd is down), as a step number.
newest_checkpoint() {
  ls "$WORK/data/checkpoints/$1" 2>/dev/null | grep '\.ckpt$' | sort | tail -1 | sed 's/\.ckpt$//;s/^0*//'
}

# 3,000 binary records of dim 64 with neighbour structure, and 1,000 more for testing.
gen 7 3000 >"$WORK/train.csv"
gen 8 1000 >"$WORK/test.csv"
SPEC=(--family=made --hidden_units=128 --epochs=40 --batch_size=10 --seed=3)

start 1
DS=$("${CTL[@]}" --json datasets upload "$WORK/train.csv" --kind=binary --name=train | field id)
TS=$("${CTL[@]}" --json datasets upload "$WORK/test.csv" --kind=binary --name=test | field id)
[[ $DS == ds-* && $TS == ds-* ]] || fail "uploads gave no ids"

# --- Reference: the same job, uninterrupted.
REF=$("${CTL[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" | field id)
"${CTL[@]}" jobs watch "$REF" >/dev/null || fail "reference job did not succeed"
REF_MODEL=$(job "$REF" | field modelId)
REF_EVAL=$("${CTL[@]}" --json models evaluate "$REF_MODEL" --dataset="$TS")
REF_NLL=$(echo "$REF_EVAL" | field meanNll)
REF_SE=$(echo "$REF_EVAL" | field standardError)
check_events "$REF"

# --- kill -9 in the middle of training.
J=$("${CTL[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" | field id)
wait_state "$J" RUNNING
wait_checkpoint "$J" 2000
# Score and Sample can use the running job's newest checkpoint.
"${CTL[@]}" --json models score "$J" "$WORK/test.csv" --kind=binary >"$WORK/probe" ||
  fail "Score on a running job failed"
grep -q '"checkpointStep"' "$WORK/probe" || fail "Score on a job did not name its checkpoint"
"${CTL[@]}" models sample "$J" --n=5 --output="$WORK/probe.csv" >/dev/null ||
  fail "Sample on a running job failed"
[[ $(wc -l <"$WORK/probe.csv") -ge 5 ]] || fail "Sample on a running job gave too few rows"
BEFORE=$(digest)
STEP_AT_KILL=$(job "$J" | field step)
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
CKPT=$(newest_checkpoint "$J")
echo "killed -9 at step $STEP_AT_KILL; newest checkpoint on disk: step $CKPT"
[[ -n $CKPT && $CKPT -gt 0 ]] || fail "no checkpoint on disk after the crash"
t0=$(now_ms)
start 2
[[ $(digest) == "$BEFORE" ]] || fail "datasets or models changed across the crash"
# Resume overhead: from launching logpd to the job training past its checkpoint again.
for _ in $(seq 400); do
  s=$(job "$J" | field step)
  [[ $(state "$J") == JOB_STATE_RUNNING && -n $s && $s -gt $CKPT ]] && break
  sleep 0.025
done
echo "resume overhead: $(($(now_ms) - t0)) ms from restart to training again (checkpoint at step $CKPT)"
"${CTL[@]}" jobs watch "$J" >/dev/null || fail "resumed job did not succeed"
check_events "$J"
grep -q "resumes from the checkpoint at step $CKPT" "$WORK/events.$J" || fail "no resume event"
NLL=$("${CTL[@]}" --json models evaluate "$(job "$J" | field modelId)" --dataset="$TS" | field meanNll)
echo "test NLL: uninterrupted $REF_NLL ± $REF_SE, killed and resumed $NLL"
python3 -c "import sys; a, b, se = map(float, sys.argv[1:]); sys.exit(abs(a - b) > se)" \
  "$REF_NLL" "$NLL" "$REF_SE" || fail "resumed model's NLL $NLL not within SE of $REF_NLL"
[[ -z $(ls "$WORK/data/checkpoints/$J" 2>/dev/null) ]] || fail "checkpoints of a finished job left"

# --- SIGTERM: checkpoint, exit 0 within a bound, resume on the next start.
K=$("${CTL[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" --epochs=10000 | field id)
wait_state "$K" RUNNING
sleep 0.5
t0=$(now_ms)
kill -TERM "$PID"
wait "$PID" || fail "logpd exited with $? on SIGTERM"
echo "SIGTERM to exit: $(($(now_ms) - t0)) ms"
grep -q "stopped cleanly" "$WORK/log2" || fail "no clean-stop log line"
CKPT=$(newest_checkpoint "$K")
[[ -n $CKPT && $CKPT -gt 0 ]] || fail "SIGTERM wrote no checkpoint"
start 3 --training_slots=2
wait_state "$K" RUNNING
"${CTL[@]}" --json jobs watch "$K" --from_seq=1 >"$WORK/events.K" &
WATCH=$!
sleep 0.3

# --- Cancel in every state. Running: within a second, no model.
t0=$(now_ms)
"${CTL[@]}" jobs cancel "$K" >/dev/null || fail "cancel of a running job failed"
wait_state "$K" CANCELLED 40
echo "cancel of a running job took effect in $(($(now_ms) - t0)) ms"
wait "$WATCH" || true
grep -q "interrupted by server shutdown; resumes from the checkpoint at step $CKPT" "$WORK/events.K" ||
  fail "no shutdown event"
grep -q "resuming from the checkpoint at step $CKPT" "$WORK/events.K" || fail "K did not resume"
[[ -z $(job "$K" | field modelId) ]] || fail "a cancelled job published a model"
# Finished: FAILED_PRECONDITION.
"${CTL[@]}" jobs cancel "$K" 2>"$WORK/err" && fail "cancelling a cancelled job succeeded"
grep -q FAILED_PRECONDITION "$WORK/err" || fail "cancel of a finished job: $(cat "$WORK/err")"
# Queued: two long jobs fill both slots, a third waits; cancelled, it never runs.
L1=$("${CTL[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" --epochs=10000 | field id)
L2=$("${CTL[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" --epochs=10000 | field id)
Q=$("${CTL[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" | field id)
[[ $(state "$Q") == JOB_STATE_QUEUED ]] || fail "third job not queued"
"${CTL[@]}" jobs cancel "$Q" >/dev/null
[[ $(state "$Q") == JOB_STATE_CANCELLED ]] || fail "queued job not cancelled at once"
"${CTL[@]}" --json jobs watch "$Q" --from_seq=1 >"$WORK/events.Q" || true
grep -q JOB_STATE_RUNNING "$WORK/events.Q" && fail "a cancelled queued job ran"
"${CTL[@]}" jobs cancel "$L1" >/dev/null
"${CTL[@]}" jobs cancel "$L2" >/dev/null
wait_state "$L1" CANCELLED
wait_state "$L2" CANCELLED

# --- A diverging job fails alone while another finishes (two slots).
awk 'BEGIN { for (r = 0; r < 200; r++) printf "%g,%g,%g\n", 1e25 * (r % 7 + 1), -1e25, 3e24 }' >"$WORK/huge.csv"
HUGE=$("${CTL[@]}" --json datasets upload "$WORK/huge.csv" --kind=continuous --name=huge | field id)
GOOD=$("${CTL[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" --epochs=5 | field id)
BAD=$("${CTL[@]}" --json jobs create --dataset="$HUGE" --family=made --hidden_units=8 | field id)
wait_state "$BAD" "FAILED|SUCCEEDED"
[[ $(state "$BAD") == JOB_STATE_FAILED ]] || fail "diverging job did not fail"
job "$BAD" | grep -q "loss is inf at step 1" || fail "failure does not say what happened: $(job "$BAD")"
"${CTL[@]}" jobs watch "$GOOD" >/dev/null || fail "the other job did not finish"
"${CTL[@]}" --json datasets get "$DS" >/dev/null || fail "server not serving after a failure"
[[ -z $(ls "$WORK/data/checkpoints" 2>/dev/null) ]] || fail "checkpoints left: $(ls "$WORK/data/checkpoints")"

# --- A job running when logpd is killed three times in a row, with no newer checkpoint in
# between, is failed at the next start instead of being resumed into the same crash again.
NOCKPT=(--checkpoint_interval_steps=1000000000 --checkpoint_interval_seconds=0)
kill -TERM "$PID"
wait "$PID" || fail "logpd exited with $?"
start 4 "${NOCKPT[@]}"
C=$("${CTL[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" --epochs=10000 | field id)
for i in 1 2 3; do
  wait_state "$C" RUNNING
  kill -9 "$PID"
  wait "$PID" 2>/dev/null || true
  start $((4 + i)) "${NOCKPT[@]}"
  [[ $i -lt 3 && $(job "$C" | field crashCount) != "$i" ]] && fail "crash $i not counted: $(job "$C")"
done
wait_state "$C" FAILED 100
job "$C" | grep -q "interrupted by 3 crashes in a row" || fail "no crash-loop reason: $(job "$C")"
[[ $(job "$C" | field crashCount) == 3 ]] || fail "crash count is not 3: $(job "$C")"
"${CTL[@]}" --json datasets get "$DS" >/dev/null || fail "server not serving after failing the job"

# --- logpctl --request_id: a repeated create returns the first result, across a kill -9 too;
# another spec under the same id is ALREADY_EXISTS.
R1=$("${CTL[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" --request_id=nightly-1 | field id)
R2=$("${CTL[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" --request_id=nightly-1 | field id)
[[ $R1 == job-* && $R1 == "$R2" ]] || fail "a repeated create made $R1 and $R2"
U1=$("${CTL[@]}" --json datasets upload "$WORK/train.csv" --kind=binary --request_id=up-1 | field id)
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
start 8
R3=$("${CTL[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" --request_id=nightly-1 | field id)
U2=$("${CTL[@]}" --json datasets upload "$WORK/train.csv" --kind=binary --request_id=up-1 | field id)
[[ $R3 == "$R1" && $U1 == ds-* && $U2 == "$U1" ]] ||
  fail "after a restart the creates made $R3 (first $R1) and $U2 (first $U1)"
OUT=$("${CTL[@]}" jobs create --dataset="$DS" "${SPEC[@]}" --epochs=7 --request_id=nightly-1 2>&1) &&
  fail "another spec under a used request_id was accepted"
grep -q ALREADY_EXISTS <<<"$OUT" || fail "another spec under a used request_id: $OUT"

kill -TERM "$PID"
wait "$PID" || fail "logpd exited with $?"
PID=
echo "1 passed, 0 failed"
