#!/usr/bin/env bash
# Process-level test of three logpd replicas on one PostgreSQL catalogue (a private server,
# tests/postgres_server.sh) and one shared data directory, driven through logpctl:
#   - any replica answers for what another made (datasets, jobs, models, scores), and jobs
#     submitted round-robin (a --server list) each run once, on whichever replica claims them;
#   - kill -9 of the replica training a job: another replica resumes it from its checkpoint once
#     the lease expires; the job succeeds once, its model file is bit-identical to an
#     uninterrupted run's, its events run 1..N without gap or repeat, and a watcher on a
#     surviving replica sees the handover live;
#   - fencing: a replica stopped with SIGSTOP past its lease, whose job another replica took
#     over, is resumed (SIGCONT) and writes nothing more for the job;
#   - a cancel sent to one replica stops a job training on another.
# Prints the claim latency and the failover time it measured (figures, not assertions).
# Usage: replicas_test.sh LOGPD LOGPCTL POSTGRES_SERVER_SH
set -euo pipefail
LOGPD=$1
LOGPCTL=$2
PG=(bash "$3")
WORK=$(mktemp -d /tmp/logp-replicas.XXXXXX)
PGDIR=$(mktemp -d /tmp/logp-pg-XXXXXX)
declare -a PIDS=() PORTS=()
WATCHER=
cleanup() {
  for p in "${PIDS[@]}" $WATCHER; do
    [[ -n $p ]] && { kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; }
  done
  "${PG[@]}" stop "$PGDIR"
  [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT
source "$(dirname "$0")/lib.sh"
now_ms() { echo $(($(date +%s%N) / 1000000)); }

"${PG[@]}" start "$PGDIR" $$ || fail "PostgreSQL did not start"
"${PG[@]}" createdb "$PGDIR" logp
URI="postgresql://postgres@/logp?host=$PGDIR"
sql() { "${PG[@]}" psql "$PGDIR" logp -c "$1"; }
LEASE=2

start_replica() {  # start_replica I: replica rI on the shared directory
  launch "$WORK/log$1" "$WORK/data" --catalog="$URI" --replica_id="r$1" \
    --job_lease_seconds=$LEASE --checkpoint_interval_steps=100 --progress_interval_seconds=0.1
  PIDS[$1]=$PID
  PORTS[$1]=$(cat "$WORK/port")
}
ctl() {  # ctl I ARGS...: logpctl against replica rI
  local i=$1
  shift
  "$LOGPCTL" --server="127.0.0.1:${PORTS[$i]}" "$@"
}
replica_of() { ctl "$2" --json jobs get "$1" | field replicaId; }
wait_for() {  # wait_for TRIES DESCRIPTION COMMAND...: polls every 0.05 s
  local tries=$1 what=$2
  shift 2
  for _ in $(seq "$tries"); do
    "$@" && return 0
    sleep 0.05
  done
  fail "waited $((tries / 20)) s for $what"
}
# The events of a finished job, read from replica $2: seq 1..N, steps and epochs never twice, one
# end (check_events.py).
check_events() {
  ctl "$2" --json jobs watch "$1" --from_seq=1 >"$WORK/events.$1" || true
  python3 "$(dirname "$0")/check_events.py" "$WORK/events.$1" || fail "job $1: events broken"
  grep -q '"state":"JOB_STATE_SUCCEEDED"' "$WORK/events.$1" || fail "job $1 did not succeed"
}
model_hash() {  # model_hash JOB: sha256 of its published model file
  local m
  m=$("${RR[@]}" --json jobs get "$1" | field modelId)
  [[ $m == model-* ]] || fail "job $1 published no model"
  sha256sum "$WORK/data/models/$m.model" | cut -d' ' -f1
}

for i in 1 2 3; do start_replica $i; done
ALL="127.0.0.1:${PORTS[1]},127.0.0.1:${PORTS[2]},127.0.0.1:${PORTS[3]}"
RR=("$LOGPCTL" --server="$ALL")
grep -q "job manager: replica r2, 1 training slot(s), job leases of 2s" "$WORK/log2" ||
  fail "replica r2 did not say who it is"

# --- What one replica makes, every replica serves.
gen 7 3000 >"$WORK/train.csv"
DS=$("${RR[@]}" --json datasets upload "$WORK/train.csv" --kind=binary --name=train | field id)
[[ $DS == ds-* ]] || fail "upload gave no id"
HASH=$(ctl 1 --json datasets get "$DS" | field contentHash)
for i in 2 3; do
  [[ $(ctl $i --json datasets get "$DS" | field contentHash) == "$HASH" ]] ||
    fail "replica r$i does not serve dataset $DS"
done
SPEC=(--family=made --hidden_units=256 --num_masks=2 --order=random --dropout=0.2 --epochs=6
  --batch_size=10 --seed=3)

# Reference: the job uninterrupted. Claim latency: from CreateJob's answer to RUNNING.
t0=$(now_ms)
REF=$(ctl 1 --json jobs create --dataset="$DS" "${SPEC[@]}" | field id)
wait_for 400 "the reference job to start" bash -c "$(declare -f field); \"$LOGPCTL\" \
  --server=127.0.0.1:${PORTS[1]} --json jobs get $REF | field state | grep -q RUNNING"
echo "claim latency: $(($(now_ms) - t0)) ms from CreateJob to RUNNING (an idle replica, polled)"
ctl 2 jobs watch "$REF" >/dev/null || fail "the reference job did not succeed"
REF_HASH=$(model_hash "$REF")
check_events "$REF" 3
SCORE=$(ctl 1 models score "$(ctl 1 --json jobs get "$REF" | field modelId)" "$WORK/train.csv" \
  --kind=binary | sed -n 1,20p)
for i in 2 3; do
  [[ $(ctl $i models score "$(ctl $i --json jobs get "$REF" | field modelId)" "$WORK/train.csv" \
    --kind=binary | sed -n 1,20p) == "$SCORE" ]] || fail "replica r$i scores the model differently"
done

# Three jobs submitted round-robin: each runs once; together they used more than one replica.
declare -a RRJOBS=()
for n in 1 2 3; do
  RRJOBS+=("$("${RR[@]}" --json jobs create --dataset="$DS" --family=made --hidden_units=64 \
    --epochs=3 --seed=$n | field id)")
done
declare -A USED=()
for j in "${RRJOBS[@]}"; do
  "${RR[@]}" jobs watch "$j" >"$WORK/rr.$j" 2>&1 || fail "round-robin job $j did not succeed: $(cat "$WORK/rr.$j")"
  check_events "$j" 1
  r=$(grep JOB_STATE_RUNNING "$WORK/events.$j" | grep -o '"replicaId":"r[0-9]"' | head -1 |
    cut -d'"' -f4)
  USED[$r]=1
done
echo "round-robin jobs ran on replicas: ${!USED[*]}"
[[ ${#USED[@]} -ge 2 ]] || fail "three jobs at once all ran on one replica (${!USED[*]})"
[[ $(sql "SELECT count(*) FROM models") == 4 ]] || fail "not one model per job"

# --- kill -9 of the replica training a job: another resumes it within the lease.
J=$("${RR[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" | field id)
wait_for 1200 "job $J's first checkpoint" bash -c "[[ \$(\"$LOGPCTL\" --server=$ALL --json \
  jobs get $J | grep -o '\"checkpointStep\":\"[0-9]*' | grep -o '[0-9]*$') -ge 300 ]]"
OWNER=$(replica_of "$J" 1)
OWNER=${OWNER#r}
[[ $OWNER =~ ^[123]$ ]] || fail "job $J names no replica: '$OWNER'"
SURVIVOR=$((OWNER % 3 + 1))
ctl $SURVIVOR --json jobs watch "$J" --from_seq=1 >"$WORK/watch.$J" 2>&1 &
WATCHER=$!
sleep 0.3
CKPT=$(ctl $SURVIVOR --json jobs get "$J" | field checkpointStep)
t0=$(now_ms)
kill -9 "${PIDS[$OWNER]}"
wait "${PIDS[$OWNER]}" 2>/dev/null || true
PIDS[$OWNER]=
training_elsewhere() {
  local got r s
  got=$(ctl $SURVIVOR --json jobs get "$J")
  r=$(field replicaId <<<"$got")
  s=$(field step <<<"$got")
  [[ -n $r && $r != "r$OWNER" && $(field state <<<"$got") == JOB_STATE_RUNNING && ${s:-0} -gt $CKPT ]]
}
wait_for 1200 "job $J to train again on another replica" training_elsewhere
echo "failover: $(($(now_ms) - t0)) ms from kill -9 of r$OWNER to job $J training on" \
  "$(replica_of "$J" $SURVIVOR) past its checkpoint (step $CKPT; leases of ${LEASE}s)"
ctl $SURVIVOR jobs watch "$J" >/dev/null || fail "the resumed job did not succeed"
wait "$WATCHER" || fail "the watcher on r$SURVIVOR did not see the job succeed"
WATCHER=
check_events "$J" $SURVIVOR
grep -q "requeued after replica r$OWNER stopped renewing its lease" "$WORK/events.$J" ||
  fail "no handover event"
grep -q "requeued after replica r$OWNER stopped renewing its lease" "$WORK/watch.$J" ||
  fail "the live watcher on r$SURVIVOR did not see the handover"
cmp -s <(grep -o '"seq":"[0-9]*"' "$WORK/watch.$J") <(grep -o '"seq":"[0-9]*"' "$WORK/events.$J") ||
  fail "the live watcher saw other seq numbers than the stored history"
[[ $(model_hash "$J") == "$REF_HASH" ]] || fail "the resumed job's model differs from an uninterrupted run's"
[[ $(sql "SELECT count(*) FROM models WHERE position(convert_to('$J', 'UTF8') IN proto) > 0") \
  == 1 ]] ||
  fail "job $J was published more than once"
start_replica "$OWNER"  # back, under the same id

# --- Fencing: a replica paused past its lease, its job taken over, writes nothing when resumed.
F=$("${RR[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" --seed=5 | field id)
wait_for 1200 "job $F's first checkpoint" bash -c "[[ \$(\"$LOGPCTL\" --server=$ALL --json \
  jobs get $F | grep -o '\"checkpointStep\":\"[0-9]*' | grep -o '[0-9]*$') -ge 200 ]]"
STOPPED=$(replica_of "$F" 1)
STOPPED=${STOPPED#r}
OTHER=$((STOPPED % 3 + 1))
kill -STOP "${PIDS[$STOPPED]}"
taken_over() {
  local r
  r=$(ctl $OTHER --json jobs get "$F" | field replicaId)
  [[ -n $r && $r != "r$STOPPED" ]]
}
wait_for 1200 "job $F to move off the stopped replica r$STOPPED" taken_over
sleep 1
kill -CONT "${PIDS[$STOPPED]}"
wait_for 600 "r$STOPPED to notice it lost job $F" grep -q "lease of job $F lost" "$WORK/log$STOPPED"
ctl $OTHER jobs watch "$F" >/dev/null || fail "job $F did not succeed after the takeover"
check_events "$F" $OTHER
grep -q "requeued after replica r$STOPPED stopped renewing its lease" "$WORK/events.$F" ||
  fail "no takeover event for job $F"
# Nothing from r$STOPPED after the takeover: no state change of its, and (check_events) no step
# reported twice, as a stale writer's progress would be.
python3 "$(dirname "$0")/check_events.py" "$WORK/events.$F" --none_by="r$STOPPED" \
  --after="stopped renewing its lease" || fail "the fenced replica wrote for job $F"
[[ $(sql "SELECT count(*) FROM job_events WHERE job_id = '$F'") == \
  $(ctl 1 --json jobs get "$F" | field lastSeq) ]] || fail "job $F has events past its last_seq"
[[ -z $(ls "$WORK/data/checkpoints/$F" 2>/dev/null) ]] || fail "checkpoints of job $F left behind"
echo "fencing: r$STOPPED, stopped past its lease and resumed, wrote nothing for job $F"

# --- A cancel sent to one replica stops a job training on another.
C=$("${RR[@]}" --json jobs create --dataset="$DS" "${SPEC[@]}" --epochs=1000 | field id)
wait_for 600 "job $C to start" bash -c "\"$LOGPCTL\" --server=$ALL --json jobs get $C | \
  grep -q '\"replicaId\":\"r'"
AT=$(replica_of "$C" 1)
AT=${AT#r}
ctl $((AT % 3 + 1)) jobs cancel "$C" >/dev/null || fail "cancel refused"
wait_for 400 "job $C to be cancelled" bash -c "\"$LOGPCTL\" --server=$ALL --json jobs get $C | \
  grep -q JOB_STATE_CANCELLED"

for i in 1 2 3; do
  kill -TERM "${PIDS[$i]}"
  wait "${PIDS[$i]}" || fail "replica r$i exited with $? on SIGTERM"
  PIDS[$i]=
done
echo "1 passed, 0 failed"
