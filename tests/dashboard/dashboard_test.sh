#!/usr/bin/env bash
# ctest's dashboard_test: tests/dashboard/dashboard_test.mjs (the web dashboard in headless
# Chromium against a real logpd) with the npm packages of tests/dashboard, which
# scripts/install-deps.sh installs. Skipped (77) only where there is no node or no chromium at
# all; fails when the packages are missing or stale.
#   tests/dashboard/dashboard_test.sh REPO_ROOT LOGPD LOGPCTL
set -euo pipefail
repo="${1:?usage: dashboard_test.sh REPO_ROOT LOGPD LOGPCTL}"
logpd="${2:?usage: dashboard_test.sh REPO_ROOT LOGPD LOGPCTL}"
logpctl="${3:?usage: dashboard_test.sh REPO_ROOT LOGPD LOGPCTL}"
dir="$repo/tests/dashboard"
chromium="${LOGP_CHROMIUM:-/usr/bin/chromium}"
if ! command -v node >/dev/null || [[ ! -x "$chromium" ]]; then
  echo "skipped: needs node and $chromium (Debian: scripts/install-deps.sh installs both)"
  exit 77
fi
if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.logp-installed-lock.json"; then
  echo "FAIL: $dir/node_modules does not hold the packages of its package-lock.json;" \
    "run scripts/install-deps.sh"
  exit 1
fi
exec node "$dir/dashboard_test.mjs" "$logpd" "$logpctl"
