#!/usr/bin/env bash
# The out-of-distribution benchmark (README "Out-of-distribution benchmark"): builds ood_bench
# and runs it on Fashion-MNIST (classes 0-4 in, 5-9 out), printing the tables as Markdown.
#   bench/ood.sh [ood_bench flags, e.g. --made_epochs=10 --vae_epochs=10 --threads=2]
# LOGP_BIN_DIR=DIR runs DIR/bench/ood_bench as it is (no build). Takes a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${LOGP_BIN_DIR:-$(pwd)/${LOGP_BUILD_DIR:-build}}"
[[ -n ${LOGP_BIN_DIR:-} ]] || scripts/build.sh --target ood_bench >/dev/null
exec "$BIN/bench/ood_bench" "$@"
