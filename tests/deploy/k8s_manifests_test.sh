#!/usr/bin/env bash
# ctest k8s_manifests_test: deploy/k8s checked offline by tests/deploy/k8s_manifests_test.mjs
# with deploy/k8s/validate's npm packages, which scripts/install-deps.sh installs. Skipped (77)
# only where there is no node at all; fails when the packages are missing or stale.
#   tests/deploy/k8s_manifests_test.sh REPO_ROOT
set -euo pipefail
repo="${1:?usage: k8s_manifests_test.sh REPO_ROOT}"
validator="$repo/deploy/k8s/validate"
if ! command -v node >/dev/null; then
  echo "skipped: no node here (Debian: apt-get install nodejs npm; then scripts/install-deps.sh)"
  exit 77
fi
if ! cmp -s "$validator/package-lock.json" "$validator/node_modules/.logp-installed-lock.json"; then
  echo "FAIL: $validator/node_modules does not hold the packages of its package-lock.json;" \
    "run scripts/install-deps.sh"
  exit 1
fi
exec node "$repo/tests/deploy/k8s_manifests_test.mjs" "$repo"
