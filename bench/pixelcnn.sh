#!/usr/bin/env bash
# PixelCNN on binarized Fashion-MNIST (pixel > 127), issue 16 item 6, side by side with the
# plain-PyTorch reference of the same architecture (bench/reference/pixelcnn_pytorch.py):
#   1. training samples/s of the reference (SPEED_STEPS timed steps of BATCH records);
#   2. logp's pixelcnn family trained through the real service for MINUTES of training time
#      (default 60; the job's max_seconds) with early stopping after PATIENCE (5) epochs, on 90%
#      of the training set (10% validation), then the test NLL of the published (best) weights:
#      bench/zoo_fmnist.sh's table row, with the epochs run and the median samples/s;
#   3. with REFERENCE_MINUTES > 0, the reference trained that long and its test NLL.
# Environment: MINUTES, BATCH (64), FLAGS (more logpctl flags for the logp job, e.g.
#   "--hidden_units=256"), LR (0.001), SPEED_STEPS (20; 0 skips), REFERENCE_MINUTES (0),
#   THREADS (2, both sides: torch threads and OPENBLAS_NUM_THREADS; logpd gets
#   --compute_threads=THREADS), OMP_WAIT_POLICY (passive, both sides: OpenMP threads that do not
#   spin between parallel regions; logpd keeps 2 OpenMP threads only with it, see
#   models/compute_threads.cc), SAMPLES (1000: the in-process sampling row; 0 skips).
#   MINUTES=3 bench/pixelcnn.sh           a quick look
#   MINUTES=60 bench/pixelcnn.sh          the hour of the issue's target (< 97 nats)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MINUTES="${MINUTES:-60}" BATCH="${BATCH:-64}" LR="${LR:-0.001}" THREADS="${THREADS:-2}"
SPEED_STEPS="${SPEED_STEPS:-20}" REFERENCE_MINUTES="${REFERENCE_MINUTES:-0}"
export OPENBLAS_NUM_THREADS="$THREADS" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
BIN="${LOGP_BIN_DIR:-$ROOT/${LOGP_BUILD_DIR:-build}}"
[[ -n ${LOGP_BIN_DIR:-} ]] || scripts/build.sh --target pixelcnn_bench logpd logpctl >/dev/null
REF=(/usr/bin/python3 "$ROOT/bench/reference/pixelcnn_pytorch.py")

echo "machine: $(nproc) vCPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
if [[ $SPEED_STEPS -gt 0 ]]; then
  echo "PyTorch reference, $SPEED_STEPS steps of $BATCH, $THREADS threads:"
  "${REF[@]}" speed --threads "$THREADS" --batch "$BATCH" --steps "$SPEED_STEPS"
fi
echo "logp pixelcnn in process (OMP_WAIT_POLICY=$OMP_WAIT_POLICY):"
"$BIN/bench/pixelcnn_bench" train --threads="$THREADS" --batch="$BATCH" --seconds=10
if [[ ${SAMPLES:-1000} -gt 0 ]]; then
  "$BIN/bench/pixelcnn_bench" sample --threads="$THREADS" --n="${SAMPLES:-1000}" --old_n=5 --runs=1
fi
echo "logp pixelcnn, $MINUTES min of training, batch $BATCH:"
SECONDS_=$(awk -v m="$MINUTES" 'BEGIN { print m * 60 }')
LOGP_BIN_DIR="$BIN" LOGPD_FLAGS="--compute_threads=$THREADS" CONVERGE=1 MAX_SECONDS="$SECONDS_" BATCH="$BATCH" PATIENCE="${PATIENCE:-5}" \
  CONFIG="pixelcnn|1000|--family=pixelcnn --lr=$LR ${FLAGS:-}" bench/zoo_fmnist.sh
if [[ $REFERENCE_MINUTES != 0 ]]; then
  echo "PyTorch reference, $REFERENCE_MINUTES min of training, batch $BATCH:"
  "${REF[@]}" train --threads "$THREADS" --batch "$BATCH" --minutes "$REFERENCE_MINUTES"
fi
