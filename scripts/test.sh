#!/usr/bin/env bash
# The one test command (README, CI): installs what is missing, builds, runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh
scripts/build.sh
built=$(date +%s)
echo "build finished in $((built - start)) s"
cd "${LOGP_BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 "$@"
echo "suite finished in $(($(date +%s) - built)) s"
