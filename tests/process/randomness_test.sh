#!/usr/bin/env bash
# Process-level test of per-job randomness: jobs that draw random numbers while training (MADE
# with dropout and random masks, VAEs) publish bit-identical models (sha256 of the stored model
# file) whether they train alone or side by side on two slots, with logpd killed by SIGKILL three
# times meanwhile, and, for four jobs on two slots, across a graceful restart.
# Usage: randomness_test.sh LOGPD LOGPCTL
set -euo pipefail
LOGPD=$1
LOGPCTL=$2
WORK=$(mktemp -d /tmp/logp-random.XXXXXX)
PID=
trap '[[ -n $PID ]] && kill -9 $PID 2>/dev/null; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT
source "$(dirname "$0")/lib.sh"
RUN=0
start() {  # start [extra logpd flags]
  RUN=$((RUN + 1))
  launch "$WORK/log$RUN" "$WORK/data" --training_slots=2 --checkpoint_interval_steps=200 "$@"
}
create() { "${CTL[@]}" --json jobs create --dataset="$DS" "$@" | field id; }
finish() {  # finish JOB: waits for success, prints the sha256 of its model file
  "${CTL[@]}" jobs watch "$1" >/dev/null || fail "job $1 did not succeed: $(job "$1")"
  local m
  m=$(job "$1" | field modelId)
  sha256sum "$WORK/data/models/$m.model" | cut -d' ' -f1
}
wait_checkpoint() {  # wait_checkpoint JOB STEP: a checkpoint at or after STEP, job still running
  for _ in $(seq 1200); do
    local c
    c=$(job "$1" | field checkpointStep)
    [[ -n $c && $c -ge $2 ]] && return 0
    state "$1" | grep -q RUNNING || fail "job $1 left RUNNING before its checkpoint at step $2"
    sleep 0.05
  done
  fail "job $1 wrote no checkpoint at step $2"
}

gen 7 3000 >"$WORK/train.csv"
MADE=(--family=made --hidden_units=256 --num_masks=2 --order=random --dropout=0.2 --epochs=8
  --batch_size=10)
VAE=(--family=vae --latent_dim=8 --hidden_units=256 --dropout=0.1 --epochs=8 --batch_size=10)

start
DS=$("${CTL[@]}" --json datasets upload "$WORK/train.csv" --kind=binary --name=train | field id)
[[ $DS == ds-* ]] || fail "upload gave no id"

# --- Each job alone, one after another.
declare -A ALONE
for name in made3 vae4 made5 vae6; do
  case $name in
    made*) spec=("${MADE[@]}") ;;
    vae*) spec=("${VAE[@]}") ;;
  esac
  J=$(create "${spec[@]}" --seed="${name: -1}")
  ALONE[$name]=$(finish "$J")
done
echo "alone: ${ALONE[*]}"

# --- Two jobs side by side on two slots, logpd killed with SIGKILL three times.
A=$(create "${MADE[@]}" --seed=3)
B=$(create "${VAE[@]}" --seed=4)
# Kills at checkpoints 200, 400 and 600 of 2,400 steps: the MADE trains about twice as fast as
# the VAE, and must still be running when the VAE reaches its third checkpoint (at 400, 800 and
# 1,200, an unloaded machine let it finish first).
for i in 1 2 3; do
  wait_checkpoint "$A" $((i * 200))
  wait_checkpoint "$B" $((i * 200))
  state "$A" | grep -q RUNNING || fail "job $A finished before kill $i"
  state "$B" | grep -q RUNNING || fail "job $B finished before kill $i"
  kill -9 "$PID"
  wait "$PID" 2>/dev/null || true
  start
done
HA=$(finish "$A")
HB=$(finish "$B")
[[ $HA == "${ALONE[made3]}" ]] || fail "MADE trained beside a VAE with 3 crashes differs from alone"
[[ $HB == "${ALONE[vae4]}" ]] || fail "VAE trained beside a MADE with 3 crashes differs from alone"
grep -q "resum" "$WORK/log4" || fail "the last start resumed nothing"
echo "side by side with 3 SIGKILLs: identical"

# --- Four jobs on two slots, a graceful restart while two train and two wait.
declare -A J4
for name in made3 vae4 made5 vae6; do
  case $name in
    made*) spec=("${MADE[@]}") ;;
    vae*) spec=("${VAE[@]}") ;;
  esac
  J4[$name]=$(create "${spec[@]}" --seed="${name: -1}")
done
wait_checkpoint "${J4[made3]}" 400
kill -TERM "$PID"
wait "$PID" || fail "logpd did not exit 0 on SIGTERM"
start
for name in made3 vae4 made5 vae6; do
  H=$(finish "${J4[$name]}")
  [[ $H == "${ALONE[$name]}" ]] || fail "$name: four jobs on two slots with a restart differ from alone"
done
echo "four jobs on two slots with a graceful restart: identical"
kill -TERM "$PID"
wait "$PID" || fail "logpd did not exit 0 on SIGTERM"
PID=
echo "PASS"
