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
