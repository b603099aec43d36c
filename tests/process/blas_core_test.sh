#!/usr/bin/env bash
# Process-level test of logpd's OpenBLAS kernel check (models/blas_core.h): with an
# openblas_get_corename that reports the SSE3 "Prescott" fallback (LD_PRELOAD of old_blas_core.so),
# logpd on a CPU with AVX2 or AVX-512 executes itself once more with OPENBLAS_CORETYPE set (same
# pid), says so in its log, and serves; a user's OPENBLAS_CORETYPE and LOGP_BLAS_CORE=keep are
# kept.
# Usage: blas_core_test.sh LOGPD LOGPCTL OLD_BLAS_CORE_SO
set -euo pipefail
LOGPD=$1
LOGPCTL=$2
SHIM=$3
WORK=$(mktemp -d /tmp/logp-blascore.XXXXXX)
PID=
trap '[[ -n $PID ]] && kill -9 $PID 2>/dev/null; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT
source "$(dirname "$0")/lib.sh"

if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo &&
  grep -qw avx512dq /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo &&
  grep -qw avx512cd /proc/cpuinfo; then
  WANT=SkylakeX
elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  WANT=Haswell
else
  WANT=
fi

# serve RUN [env...]: logpd with the shim and the given environment; checks it serves, stops it
# with SIGTERM, and leaves its log in $WORK/logRUN.
serve() {
  local run=$1
  shift
  rm -f "$WORK/port"
  env -u OPENBLAS_CORETYPE -u LOGP_BLAS_CORE -u LOGP_BLAS_REEXEC LD_PRELOAD="$SHIM" "$@" \
    "$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 --port_file="$WORK/port" \
    >"$WORK/log$run" 2>&1 &
  PID=$!
  for _ in $(seq 200); do [[ -s "$WORK/port" ]] && break; sleep 0.05; done
  [[ -s "$WORK/port" ]] || fail "logpd did not start (run $run)"
  "$LOGPCTL" --server="127.0.0.1:$(cat "$WORK/port")" datasets list >/dev/null ||
    fail "logpd does not serve (run $run)"
  # The pid is the one started: the second run replaced the first, it did not fork.
  [[ "$(readlink /proc/$PID/exe)" == "$(readlink -f "$LOGPD")" ]] ||
    fail "pid $PID is not logpd (run $run)"
  kill -TERM $PID
  wait $PID || fail "logpd did not exit 0 on SIGTERM (run $run)"
  PID=
}

serve 1
if [[ -n $WANT ]]; then
  grep -q "OpenBLAS kernels: $WANT (OPENBLAS_CORETYPE=$WANT set by logpd" "$WORK/log1" ||
    fail "logpd did not move from Prescott to $WANT"
  [[ $(grep -c "OpenBLAS kernels:" "$WORK/log1") == 1 ]] || fail "more than one kernel line"
else
  grep -q "OpenBLAS kernels: Prescott$" "$WORK/log1" || fail "Prescott was not kept on a CPU without AVX2"
fi

serve 2 OPENBLAS_CORETYPE=Nehalem
grep -q "OpenBLAS kernels: Nehalem$" "$WORK/log2" || fail "a user's OPENBLAS_CORETYPE was not kept"

serve 3 LOGP_BLAS_CORE=keep
grep -q "OpenBLAS kernels: Prescott$" "$WORK/log3" || fail "LOGP_BLAS_CORE=keep was not obeyed"
echo "PASS (CPU wants ${WANT:-no change})"
