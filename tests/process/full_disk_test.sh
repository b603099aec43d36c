#!/usr/bin/env bash
# Process-level test on a really full file system: logpd's data directory is a small tmpfs
# mounted in a private mount namespace (unshare -m; needs root, else the test is skipped with
# exit 77). The disk is filled while a job trains: an upload gets RESOURCE_EXHAUSTED "no space
# left on device" and leaves nothing, the job's stream says its checkpoints fail, logpd keeps
# serving; once space returns the job checkpoints again and finishes, and everything stored
# before is bit-identical, also after a restart.
# Usage: full_disk_test.sh LOGPD LOGPCTL
set -euo pipefail
if [[ -z ${LOGP_IN_MOUNT_NS:-} ]]; then
  if ! unshare -m --propagation private true 2>/dev/null; then
    echo "SKIP: cannot make a private mount namespace (unshare -m needs root)"
    exit 77
  fi
  exec unshare -m --propagation private env LOGP_IN_MOUNT_NS=1 bash "$0" "$@"
fi
LOGPD=$1
LOGPCTL=$2
WORK=$(mktemp -d /tmp/logp-full.XXXXXX)
PID=
cleanup() {
  [[ -n $PID ]] && kill -9 "$PID" 2>/dev/null
  umount "$WORK/disk" 2>/dev/null || true
  [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT
source "$(dirname "$0")/lib.sh"
mkdir -p "$WORK/disk"
mount -t tmpfs -o size=24m tmpfs "$WORK/disk"
DATA="$WORK/disk/data"
RUN=0
start() {
  RUN=$((RUN + 1))
  launch "$WORK/log$RUN" "$DATA" --progress_interval_seconds=0.2 \
    --checkpoint_interval_steps=300 --checkpoint_interval_seconds=0
}
digest() { (cd "$DATA" && find datasets models -type f | sort | xargs -r sha256sum); }
gen 1 2000 >"$WORK/train.csv"
gen 2 200000 >"$WORK/big.csv"  # 1.6 MB stored: more than the space left once the disk is full

start
DS=$("${CTL[@]}" --json datasets upload "$WORK/train.csv" --kind=binary --name=train | field id)
[[ $DS == ds-* ]] || fail "upload gave no id"
J=$("${CTL[@]}" --json jobs create --dataset="$DS" --family=made --hidden_units=512 \
  --epochs=10000 --max_steps=6000 --batch_size=10 --seed=5 | field id)
for _ in $(seq 600); do
  c=$(job "$J" | field checkpointStep)
  [[ -n $c && $c -ge 300 ]] && break
  sleep 0.05
done
[[ -n $c && $c -ge 300 ]] || fail "no first checkpoint"
BEFORE=$(digest)

# --- Fill the disk while the job trains.
dd if=/dev/zero of="$WORK/disk/filler" bs=64k 2>/dev/null || true
df -h "$WORK/disk" | tail -1
"${CTL[@]}" datasets upload "$WORK/big.csv" --kind=binary --name=big 2>"$WORK/err" &&
  fail "an upload to a full disk succeeded"
grep -q "RESOURCE_EXHAUSTED" "$WORK/err" || fail "upload to a full disk: $(cat "$WORK/err")"
grep -q "no space left on device" "$WORK/err" || fail "upload error does not say why: $(cat "$WORK/err")"
[[ -z $(ls "$DATA/tmp") ]] || fail "the failed upload left $(ls "$DATA/tmp")"
"${CTL[@]}" --json datasets list | grep -q "\"$DS\"" || fail "not serving while the disk is full"
[[ $("${CTL[@]}" --json datasets list | grep -c '"id"') == 1 ]] || fail "a half dataset is visible"
"${CTL[@]}" --json jobs watch "$J" --from_seq=1 >"$WORK/events" &
WATCH=$!
for _ in $(seq 600); do
  grep -q "not written: no space left on device" "$WORK/events" && break
  sleep 0.05
done
grep -q "not written: no space left on device" "$WORK/events" ||
  fail "the job's stream does not say its checkpoint failed"
[[ $(state "$J") == JOB_STATE_RUNNING ]] || fail "the job stopped on a full disk: $(job "$J")"

# --- Space returns: the job checkpoints again and finishes.
rm -f "$WORK/disk/filler"
AT=$(job "$J" | field checkpointStep)
wait "$WATCH" || fail "the job did not succeed after space returned: $(job "$J")"
[[ $(state "$J") == JOB_STATE_SUCCEEDED ]] || fail "job ended $(state "$J")"
grep -q '"seq":"1"' "$WORK/events" || fail "no history"
MODEL=$(job "$J" | field modelId)
"${CTL[@]}" models score "$MODEL" "$WORK/train.csv" --kind=binary --output="$WORK/scores" >/dev/null ||
  fail "the model does not score"
AFTER=$(digest)
diff <(echo "$BEFORE") <(echo "$AFTER" | grep -v "models/$MODEL") ||
  fail "stored files changed across the full disk"
"${CTL[@]}" datasets upload "$WORK/big.csv" --kind=binary --name=big >/dev/null ||
  fail "upload after space returned failed"

# --- A restart finds the same catalogue: the job succeeded, its events have no gap.
kill -TERM "$PID"
wait "$PID" || fail "logpd exited with $? on SIGTERM"
start
[[ $(state "$J") == JOB_STATE_SUCCEEDED ]] || fail "after restart the job is $(state "$J")"
"${CTL[@]}" --json jobs watch "$J" --from_seq=1 >"$WORK/events2" || fail "watch after restart"
grep -o '"seq":"[0-9]*"' "$WORK/events2" | cut -d'"' -f4 |
  awk '{ if ($1 != NR) { print "seq gap at " NR ": " $1; bad = 1 } } END { exit bad }' ||
  fail "the stored event history has a gap"
[[ $(digest | grep -v "models/$MODEL" | grep -c datasets/) == 2 ]] || fail "datasets missing"
kill -TERM "$PID"
wait "$PID" || fail "logpd exited with $?"
PID=
echo "checkpoint at step $AT when space returned; PASS"
