#!/usr/bin/env bash
# Part of scripts/bench.sh (issue 16, item 3: NADE at MADE speed): NADE D = 784, H = 500,
# natural order, binarized Fashion-MNIST, one thread, in process (bench/nade_bench): training
# records/s at batch 100 (Adam step included) and scoring records/s at batch 1,000, the
# hand-written pass (models/families/nade_kernels.h) against the previous autograd path,
# medians of RUNS paired rounds. Prints rows | measure | logp | reference | ratio | target | met? |.
# Environment: LOGP_BIN_DIR (default build/), OUT (raw JSON lines), QUICK (1: 1 s windows), RUNS.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${LOGP_BIN_DIR:-$(pwd)/${LOGP_BUILD_DIR:-build}}"
OUT="${OUT:-$(pwd)/bench-out}"
RUNS="${RUNS:-3}"
SECONDS_PER=3
[[ ${QUICK:-0} == 1 ]] && SECONDS_PER=1
[[ -n ${LOGP_BIN_DIR:-} ]] || scripts/build.sh --target nade_bench >/dev/null
mkdir -p "$OUT"
echo "nade_bench: $RUNS paired rounds of ${SECONDS_PER} s per measurement" >&2
"$BIN/bench/nade_bench" --threads=1 --rounds="$RUNS" --seconds="$SECONDS_PER" | tee "$OUT/nade.jsonl" >&2
python3 - "$OUT/nade.jsonl" <<'PY'
import json, statistics, sys
rates = {}
for line in open(sys.argv[1]):
    j = json.loads(line)
    rates.setdefault((j["measure"], j["path"]), []).append(j["records_per_second"])
med = {k: statistics.median(v) for k, v in rates.items()}
rows = [("NADE 784 x 500 training records/s, batch 100, 1 thread (vs autograd path)", "train",
         lambda r: r >= 10000, "≥ 10,000 records/s"),
        ("NADE 784 x 500 scoring records/s, batch 1,000, 1 thread (vs previous path)", "score",
         None, "—")]
for label, m, met, target in rows:
    a, b = med[(m, "kernels")], med[(m, "autograd")]
    ok = "—" if met is None else ("yes" if met(a) else "**no**")
    print(f"| {label} | {a:,.0f} | {b:,.0f} | {a / b:.1f}× | {target} | {ok} |")
PY
