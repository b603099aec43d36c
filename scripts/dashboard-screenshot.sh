#!/usr/bin/env bash
# Writes docs/dashboard.png: the dashboard with a training job, taken by dashboard_test (real
# logpd, headless Chromium) from the build in build/ (or $LOGP_BUILD_DIR).
# Usage: scripts/dashboard-screenshot.sh [OUT.png]   (after scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${LOGP_BUILD_DIR:-build}"
out="$(realpath -m "${1:-docs/dashboard.png}")"
LOGP_DASHBOARD_SCREENSHOT="$out" tests/dashboard/dashboard_test.sh "$PWD" \
  "$build/server/logpd" "$build/client/logpctl"
size=$(stat -c %s "$out")
echo "wrote $out ($size bytes)"
if ((size >= 300000)); then
  echo "error: $out is $size bytes, over 300 KB" >&2
  exit 1
fi
