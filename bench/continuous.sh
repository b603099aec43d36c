#!/usr/bin/env bash
# Part of scripts/bench.sh (issue 16, item 7): the dequantised, logit-transformed Fashion-MNIST
# table of bench/zoo_fmnist.sh (DATA=continuous) trained to convergence: every gradient-trained
# family runs until PATIENCE (5) epochs bring no better validation NLL, for at most MAX_SECONDS
# (3600) of training each (the Gaussian is fitted in closed form in one pass). One row per family:
# its test NLL (nats, in the uploaded data space [0, 256)^784) with the epochs run, the best
# epoch and why training ended; the target is early stopping within the hour. Takes up to an
# hour per family (QUICK=1: MAX_SECONDS=60, smoke only). NAMES="made-gauss maf-5" runs those only.
# Prints table rows on stdout, progress on stderr. Environment: LOGP_BIN_DIR, QUICK, PATIENCE,
# MAX_SECONDS, NAMES, BATCH (100).
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK="${QUICK:-0}"
if [[ $QUICK == 1 ]]; then D_MAX=60; else D_MAX=3600; fi
export MAX_SECONDS="${MAX_SECONDS:-$D_MAX}" PATIENCE="${PATIENCE:-5}" BATCH="${BATCH:-100}"
# shellcheck disable=SC2086
DATA=continuous CONVERGE=1 bench/zoo_fmnist.sh ${NAMES:-} | tee /dev/stderr |
  while IFS='|' read -r _ name _ epochs nll _ secs _ best reason _; do
  name=$(echo "$name" | xargs)
  [[ -z $name || $name == family || $name == -* ]] && continue
  epochs=$(echo "$epochs" | xargs) reason=$(echo "$reason" | xargs) best=$(echo "$best" | xargs)
  nll=$(echo "$nll" | xargs) secs=$(echo "$secs" | xargs)
  if [[ $epochs == 1 && $reason != early* ]]; then
    ok="—" what="one pass (closed form)"
  elif [[ $reason == early* ]]; then
    ok=yes what="$epochs epochs, best $best, early stopping, ${secs} s"
  else
    ok="**no**" what="$epochs epochs, best $best, stopped by ${reason:-failure}, ${secs} s"
  fi
  echo "| continuous Fashion-MNIST $name, converged: test NLL (nats; $what) | $nll | — | — |" \
    "early stopping ≤ ${MAX_SECONDS} s | $ok |"
done
