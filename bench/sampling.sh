#!/usr/bin/env bash
# Part of scripts/bench.sh (issue 16, item 4): sequential sampling of the binary autoregressive
# families in process, D = 784, H = 500 (bench/sampling_bench.cc): 10,000 samples with the
# incremental samplers (median of RUNS calls) against the per-dimension reference sampler of
# before on fewer records (QUICK: 100, else 1,000; scaled per record). Rows for 1 thread, then
# THREADS (2) threads. Prints table rows on stdout, a timer profile of the MADE sampler on stderr.
# Environment: LOGP_BIN_DIR (else build/, built here), QUICK, RUNS, THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${LOGP_BIN_DIR:-$(pwd)/${LOGP_BUILD_DIR:-build}}"
[[ -n ${LOGP_BIN_DIR:-} ]] || scripts/build.sh --target sampling_bench >/dev/null
QUICK="${QUICK:-0}"
RUNS="${RUNS:-3}"
if [[ $QUICK == 1 ]]; then OLD_N=100; else OLD_N=1000; fi
"$BIN/bench/sampling_bench" --n=10000 --old_n="$OLD_N" --runs="$RUNS" --threads=1 --profile
"$BIN/bench/sampling_bench" --n=10000 --old_n=0 --runs="$RUNS" --threads="${THREADS:-2}" \
  --families=made,nade,fvsbn
