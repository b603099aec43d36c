#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (into build-fuzz/, or $LOGP_FUZZ_BUILD_DIR) and
# runs each for SECONDS (default 60) from a scratch copy of its seed corpus fuzz/corpus/<target>/,
# so that the committed corpora stay as they are. Prints a table and exits non-zero if any
# target crashed (the reproducer is kept under the scratch directory and named in the output).
# Usage: scripts/fuzz.sh [SECONDS]   (0: build only)
# Environment: LOGP_FUZZ_TARGETS="records model" runs a subset; LOGP_FUZZ_NO_BUILD=1 skips the
# build; LOGP_FUZZ_REPLAY="model" only replays those targets' corpora; LOGP_FUZZ_WORK=dir keeps
# corpora, logs and crashes there (default: a new temporary dir);
# LOGP_FUZZ_RSS_MB (default 2560) is each run's memory limit.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
BUILD_DIR="${LOGP_FUZZ_BUILD_DIR:-build-fuzz}"
TARGETS=(${LOGP_FUZZ_TARGETS:-records data_files model create_dataset auth_files json_rows})
RSS_MB="${LOGP_FUZZ_RSS_MB:-2560}"

if [[ "${LOGP_FUZZ_NO_BUILD:-0}" != "1" ]]; then
  start=$(date +%s)
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DLOGP_BUILD_TESTS=OFF -DLOGP_BUILD_BENCH=OFF -DLOGP_BUILD_FUZZERS=ON >/dev/null
  cmake --build "$BUILD_DIR" -j "${LOGP_BUILD_JOBS:-$(nproc)}" --target fuzzers
  echo "fuzz: build finished in $(($(date +%s) - start)) s"
fi
[[ "$SECONDS_PER_TARGET" == "0" ]] && exit 0

WORK="${LOGP_FUZZ_WORK:-$(mktemp -d /tmp/logp-fuzz.XXXXXX)}"
mkdir -p "$WORK"
# Leak checking stays on; UBSan reports abort (the build also makes them non-recoverable).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:detect_odr_violation=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0}"

rows=()
failed=0
for t in "${TARGETS[@]}"; do
  bin="$BUILD_DIR/fuzz/${t}_fuzzer"
  corpus="$WORK/corpus/$t"
  artifacts="$WORK/artifacts/$t/"
  log="$WORK/$t.log"
  mkdir -p "$corpus" "$artifacts"
  cp -r "fuzz/corpus/$t/." "$corpus/"
  dict=()
  [[ -f "fuzz/$t.dict" ]] && dict=(-dict="fuzz/$t.dict")
  # LibTorch allocates a zip record by the size its directory declares (4 GB for a corrupt
  # entry) and touches only what it extracts: for the model target, only the RSS limit counts.
  extra=()
  [[ $t == model ]] && extra=(-malloc_limit_mb=65536)
  # Targets in LOGP_FUZZ_REPLAY only run their corpus once, unmutated (no new inputs).
  [[ " ${LOGP_FUZZ_REPLAY:-} " == *" $t "* ]] && extra+=(-runs=0)
  echo "fuzz: $t for ${SECONDS_PER_TARGET} s (log $log)"
  rc=0
  t0=$(date +%s)
  "$bin" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb="$RSS_MB" -timeout=30 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts" "${dict[@]}" "${extra[@]}" \
    "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  secs=$(($(date +%s) - t0))
  crashes=$(find "$artifacts" -type f | wc -l)
  if [[ $rc -ne 0 && $crashes -eq 0 ]]; then crashes=1; fi  # e.g. a fuzzer that could not start
  if [[ $crashes -ne 0 ]]; then
    failed=1
    echo "fuzz: $t FAILED (exit $rc); the end of its log:"
    grep -v '^#[0-9]' "$log" | tail -40
    for f in "$artifacts"*; do
      [[ -f "$f" ]] && echo "fuzz: reproduce with: $bin $f"
    done
  fi
  rows+=("$(printf '%-16s %8s %12s %10s %8s %8s' "$t" "${secs:-?}" "${execs:-?}" "${rate:-?}" \
    "$(find "$corpus" -type f | wc -l)" "$crashes")")
done

printf '%-16s %8s %12s %10s %8s %8s\n' target seconds executions exec/s corpus crashes
printf '%s\n' "${rows[@]}"
echo "fuzz: corpora, logs and crashes in $WORK"
exit $failed
