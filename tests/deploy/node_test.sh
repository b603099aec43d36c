#!/usr/bin/env bash
# ctest's k8s_manifests_test and compose_files_test: a test of tests/deploy in node, with
# deploy/k8s/validate's npm packages, which scripts/install-deps.sh installs. Skipped (77) only
# where there is no node at all; fails when the packages are missing or stale.
#   tests/deploy/node_test.sh REPO_ROOT TEST.mjs
set -euo pipefail
repo="${1:?usage: node_test.sh REPO_ROOT TEST.mjs}"
test="${2:?usage: node_test.sh REPO_ROOT TEST.mjs}"
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
exec node "$repo/tests/deploy/$test" "$repo"
