#!/usr/bin/env bash
# Configures and builds logp into build/ (or $LOGP_BUILD_DIR). Uses ccache when present.
# Usage: scripts/build.sh [extra cmake --build args]; LOGP_CMAKE_ARGS adds configure arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${LOGP_BUILD_DIR:-build}"
JOBS="${LOGP_BUILD_JOBS:-$(nproc)}"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${LOGP_BUILD_TYPE:-RelWithDebInfo}" \
  -DLOGP_BUILD_TESTS="${LOGP_BUILD_TESTS:-ON}" ${LOGP_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" "$@"
