#!/usr/bin/env bash
# The known-truth table: data drawn from a known distribution, a model trained on it, and its
# test NLL minus the true distribution's NLL on the same test records (paired; an estimate of
# KL(P_data‖P_θ), ≥ 0 up to noise). The experiments are the suite's known-truth tests; this
# script runs them and collects the figures they print.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${LOGP_BUILD_DIR:-build}/tests"
scripts/build.sh --target simple_families_test autoregressive_test flows_vae_test >/dev/null
echo "| truth | model | test NLL − true NLL (nats ± SE) |"
echo "|---|---|---|"
"$BIN/simple_families_test" --gtest_filter='*KnownTruth*' 2>&1 |
  sed -n 's/^\(EM\|gradient\): KL estimate \([-0-9.e]*\) +- \([0-9.e]*\) nats/| 5-D 3-component Gaussian mixture (4,000 train) | mixture K=3 full, \1 | \2 ± \3 |/p'
"$BIN/autoregressive_test" --gtest_filter='*KnownTruth*' 2>&1 |
  sed -n 's/^known truth (random FVSBN, D=20, entropy \([0-9.]*\) nats): \([a-z]*\) test NLL - true NLL = \([-0-9.e]*\) +- \([0-9.e]*\) nats/| random FVSBN, D = 20, entropy \1 nats (4,500 train) | \2 | \3 ± \4 |/p'
"$BIN/flows_vae_test" --gtest_filter='*KnownTruth*' 2>&1 |
  sed -n 's/^\([a-z_]*\): test NLL - true NLL = \([-0-9.e]*\) +- \([0-9.e]*\)/| correlated 2-D Gaussian (4,000 train) | \1 | \2 ± \3 |/p'
