# Helpers shared by the process tests. The sourcing script sets LOGPD, LOGPCTL and WORK (its
# scratch directory, where logpd's logs go as log*).

fail() {
  echo "FAIL: $*"
  echo "--- logpd logs (tail)"
  tail -n 30 "$WORK"/log* || true
  exit 1
}

# launch LOG DATA_DIR [logpd flags]: starts logpd on a free loopback port in the background
# and waits for it; sets PID and CTL (logpctl pointed at it).
launch() {
  local log=$1 data=$2
  shift 2
  rm -f "$WORK/port"
  "$LOGPD" --data_dir="$data" --listen=127.0.0.1:0 --port_file="$WORK/port" "$@" >"$log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do [[ -s "$WORK/port" ]] && break; sleep 0.05; done
  [[ -s "$WORK/port" ]] || fail "logpd did not start"
  CTL=("$LOGPCTL" --server="127.0.0.1:$(cat "$WORK/port")")
}

# The first value of a JSON field in stdin ("" if none).
field() { { grep -o "\"$1\":\"\?[^\",}]*" || true; } | head -1 | sed 's/.*:"\?//'; }
job() { "${CTL[@]}" --json jobs get "$1"; }
state() { job "$1" | field state; }

# gen SEED N: N binary records of dim 64 as CSV, with neighbour structure (a column is 1 with
# probability 0.7 after a 1, 0.2 after a 0).
gen() {
  awk -v seed="$1" -v n="$2" 'BEGIN { srand(seed); for (r = 0; r < n; r++) { line = ""; p = 0.3
    for (c = 0; c < 64; c++) { v = rand() < p ? 1 : 0; p = v ? 0.7 : 0.2; line = line (c ? "," : "") v }
    print line } }'
}
