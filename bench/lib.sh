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
# blas_coretype BENCH: Debian's OpenBLAS 0.3.21 may not recognise a newer x86 core and fall back
# to its slowest kernel (Prescott: a fifth of the matmul peak). When it does on a CPU with
# AVX-512 (AVX2), export OPENBLAS_CORETYPE=SkylakeX (Haswell), so that logp and the reference,
# started from this shell, both use it. BLAS_CORETYPE=keep: leave OpenBLAS's choice;
# BLAS_CORETYPE=NAME: OPENBLAS_CORETYPE=NAME. An OPENBLAS_CORETYPE already set is kept. Sets
# BLAS_CORE_NOTE for the machine line. BENCH is logp_bench (it links the same OpenBLAS).
blas_coretype() {
  local detected flags
  if [[ -n ${OPENBLAS_CORETYPE:-} ]]; then
    BLAS_CORE_NOTE="OpenBLAS core $OPENBLAS_CORETYPE (OPENBLAS_CORETYPE set by the caller)"
    return
  fi
  detected=$(OPENBLAS_VERBOSE=2 "$1" matmul-peak --n=64 --repeats=1 2>&1 >/dev/null |
    grep -o 'Core: [A-Za-z0-9]*' | head -1 | cut -d' ' -f2)
  detected=${detected:-unknown}
  flags=$(grep -m1 '^flags' /proc/cpuinfo)
  case ${BLAS_CORETYPE:-auto} in
    keep) BLAS_CORE_NOTE="OpenBLAS core $detected (detected; BLAS_CORETYPE=keep)" ;;
    auto)
      if [[ $detected == Prescott && $flags == *" avx512f "* ]]; then
        export OPENBLAS_CORETYPE=SkylakeX
      elif [[ $detected == Prescott && $flags == *" avx2 "* ]]; then
        export OPENBLAS_CORETYPE=Haswell
      fi
      if [[ -n ${OPENBLAS_CORETYPE:-} ]]; then
        BLAS_CORE_NOTE="OpenBLAS core $OPENBLAS_CORETYPE for both sides (detected $detected;"
        BLAS_CORE_NOTE+=" BLAS_CORETYPE=keep to leave it)"
      else
        BLAS_CORE_NOTE="OpenBLAS core $detected (detected)"
      fi
      ;;
    *)
      export OPENBLAS_CORETYPE=$BLAS_CORETYPE
      BLAS_CORE_NOTE="OpenBLAS core $OPENBLAS_CORETYPE for both sides (BLAS_CORETYPE; detected $detected)"
      ;;
  esac
}
# logp_train BATCH STEPS: a training job of STEPS steps on $TRAIN (the binarized Fashion-MNIST
# training set, 60,000 records, 10% held out) with "${SPEC[@]}" through "${CTL[@]}"; prints its
# samples/s as JSON: the median of its progress events, dropping the first window and windows
# that begin at an epoch end (they include the validation pass). Uses $WORK and $PY.
logp_train() {
  local job
  job=$("${CTL[@]}" --json jobs create --dataset="$TRAIN" "${SPEC[@]}" --batch_size="$1" \
    --epochs=1000 --max_steps="$2" | field id)
  "${CTL[@]}" --json jobs watch "$job" --from_seq=1 >"$WORK/watch.json"
  # Steps per epoch: 54,000 training records (60,000 less the 10% validation split).
  "$PY" - "$WORK/watch.json" $(((54000 + $1 - 1) / $1)) "$1" <<'EOF'
import json, statistics, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
spe, batch = int(sys.argv[2]), int(sys.argv[3])
final = [e["stateChange"]["state"] for e in events if "stateChange" in e][-1]
if final != "JOB_STATE_SUCCEEDED":
    sys.exit(f"training job ended {final}")
prog = [(int(e["progress"]["step"]), e["progress"]["samplesPerSecond"])
        for e in events if "progress" in e]
# Drop the first window (job start) and windows that begin at an epoch end: they include the
# validation pass that follows it.
kept = [r for i, (s, r) in enumerate(prog) if i > 0 and prog[i - 1][0] % spe != 0]
rates = kept or [r for _, r in prog]
sps = statistics.median(rates)
print(json.dumps({"batch": batch, "steps": prog[-1][0] if prog else 0, "windows": len(rates),
                  "samples_per_second": sps, "gflops_per_second": sps * 3920000 / 1e9}))
EOF
}
