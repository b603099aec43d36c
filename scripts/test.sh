#!/usr/bin/env bash
# The one test command (README, CI): installs what is missing, builds, runs the whole suite, then
# runs every fuzz target briefly (scripts/fuzz.sh).
# Switches (environment):
#   LOGP_FUZZ_SECONDS=N  seconds per fuzz target (default 25; 0 skips fuzzing and its build);
#                        the model target only replays its corpus (LOGP_FUZZ_REPLAY= fuzzes it).
#   LOGP_SANITIZE=1      builds the suite with -fsanitize=address,undefined into build-asan/
#                        (or $LOGP_BUILD_DIR) and runs it there; no fuzzing unless asked for.
# Extra arguments go to ctest (e.g. -L unit, -LE process).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
fuzz_seconds="${LOGP_FUZZ_SECONDS:-25}"
if [[ "${LOGP_SANITIZE:-0}" == "1" ]]; then
  export LOGP_BUILD_DIR="${LOGP_BUILD_DIR:-build-asan}"
  export LOGP_CMAKE_ARGS="${LOGP_CMAKE_ARGS:-} -DLOGP_SANITIZE=ON -DLOGP_BUILD_BENCH=OFF"
  # Leak checking is off: LibTorch, gRPC and protobuf keep process-lifetime allocations that
  # LeakSanitizer reports at exit. ASan's memory errors and every UBSan report stay fatal.
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:detect_odr_violation=0}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  fuzz_seconds="${LOGP_FUZZ_SECONDS:-0}"
fi
scripts/install-deps.sh
scripts/build.sh
built=$(date +%s)
echo "build finished in $((built - start)) s"
(cd "${LOGP_BUILD_DIR:-build}" && ctest --output-on-failure --timeout 600 "$@")
suite=$(date +%s)
echo "suite finished in $((suite - built)) s"
if [[ "$fuzz_seconds" != "0" ]]; then
  # The model target only replays its corpus here: mutated LibTorch archives still reach crashes
  # inside LibTorch 1.13 within minutes (fuzz/findings/), which would make CI fail at random.
  LOGP_FUZZ_REPLAY="${LOGP_FUZZ_REPLAY-model}" scripts/fuzz.sh "$fuzz_seconds"
  echo "fuzzing finished in $(($(date +%s) - suite)) s"
fi
