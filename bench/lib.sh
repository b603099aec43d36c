# Shell helpers of the benchmark scripts (sourced; they set PID to the logpd they start).
# stop_logpd: SIGTERM to $PID and wait for it (nothing when it is not running).
stop_logpd() {
  if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID"
    wait "$PID" || true
  fi
  PID=
}
# field NAME: the value of the first "NAME": field of the JSON on stdin (string or number).
field() { { grep -o "\"$1\":\"\?[^\",}]*" || true; } | head -1 | sed 's/.*:"\?//'; }
# logp_binaries SCRIPT: sets LOGPD, LOGPCTL and BENCH from LOGP_BIN_DIR, else $ROOT/build (or
# $ROOT/$LOGP_BUILD_DIR); exits saying how to build them when one is missing.
logp_binaries() {
  local bin="${LOGP_BIN_DIR:-$ROOT/${LOGP_BUILD_DIR:-build}}" b
  LOGPD="$bin/server/logpd"
  LOGPCTL="$bin/client/logpctl"
  BENCH="$bin/bench/logp_bench"
  for b in "$LOGPD" "$LOGPCTL" "$BENCH"; do
    [[ -x $b ]] || { echo "$1: no $b; scripts/build.sh --target logpd logpctl logp_bench" >&2; exit 1; }
  done
}
