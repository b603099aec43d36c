#!/usr/bin/env bash
# logpctl models explain end to end on a real logpd: an 8x8 IDX image set (binarised), a MADE
# trained on it, then the PNG heat map of one record (checked by check_explain_png.py: size,
# the record's pixels, the hottest pixel where the lowest term is), the table of least likely
# pixels, the table for non-image data, and the errors (record index outside the file, --output
# without an image shape, a MADE ensemble without per-dimension terms).
# Usage: explain_test.sh LOGPD LOGPCTL [PYTHON]
set -euo pipefail
LOGPD=$1
LOGPCTL=$2
PYTHON=${3:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/logp-explain.XXXXXX)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
source "$HERE/lib.sh"
json_field() { grep -o "\"$1\":\"[^\"]*\"" | head -1 | cut -d'"' -f4; }

launch "$WORK/log" "$WORK/data" --http_listen=127.0.0.1:0 --http_port_file="$WORK/http_port"
# 400 images of 8x8: a vertical bar of 255s in a random column (and a random row lit at times).
"$PYTHON" - "$WORK/bars.idx" <<'PY'
import random, struct, sys
random.seed(7)
n, h, w = 400, 8, 8
out = bytearray(struct.pack(">IIII", 0x803, n, h, w))
for _ in range(n):
    col, row = random.randrange(w), random.randrange(h) if random.random() < 0.3 else -1
    out += bytes(255 if x == col or y == row else 0 for y in range(h) for x in range(w))
open(sys.argv[1], "wb").write(out)
PY
DS=$("${CTL[@]}" --json datasets upload "$WORK/bars.idx" --kind=binary --binarize_threshold=127 |
  json_field id)
[[ -n $DS ]] || fail "upload failed"
train() {
  local job
  job=$("${CTL[@]}" --json jobs create --dataset="$1" --epochs=5 --batch_size=50 --seed=1 "${@:2}" |
    json_field id)
  "${CTL[@]}" jobs watch "$job" >/dev/null || fail "job $job did not succeed"
  "${CTL[@]}" --json jobs get "$job" | json_field modelId
}
MODEL=$(train "$DS" --family=made --hidden_units=64 --lr=0.01)

# Record 3, with one of its pixels flipped so that it breaks the bar pattern.
"$PYTHON" - "$WORK/bars.idx" "$WORK/one.idx" "$WORK/one.csv" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
img = bytearray(data[16 + 3 * 64:16 + 4 * 64])
img[2 * 8 + 5] = 255 - img[2 * 8 + 5]
open(sys.argv[2], "wb").write(struct.pack(">IIII", 0x803, 1, 8, 8) + img)
open(sys.argv[3], "w").write(",".join("1" if v > 127 else "0" for v in img) + "\n")
PY
"${CTL[@]}" --json models explain "$MODEL" --input="$WORK/one.idx" --binarize_threshold=127 \
  --output="$WORK/heat.png" >"$WORK/explain.json" || fail "explain --json failed"
"$PYTHON" "$HERE/check_explain_png.py" "$WORK/heat.png" "$WORK/explain.json" \
  "$(cat "$WORK/one.csv")" 8 8 || fail "PNG check failed"
# The terms sum to the record's log p; the flipped pixel (row 2, col 5) is the least likely.
"$PYTHON" - "$WORK/explain.json" <<'PY' || fail "terms do not sum to log p"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["leastLikely"][0]["dim"] == 2 * 8 + 5, r["leastLikely"][0]
assert len(r["dimensionLogProb"]) == 64 and len(r["leastLikely"]) == 10, r
assert abs(sum(r["dimensionLogProb"]) - r["logProb"]) < 1e-4, (sum(r["dimensionLogProb"]), r["logProb"])
assert all(a["logProb"] <= b["logProb"] for a, b in zip(r["leastLikely"], r["leastLikely"][1:]))
PY
# The table: rank, dim, row, col, value, log p; --top lines.
"${CTL[@]}" models explain "$MODEL" --input="$WORK/bars.idx" --binarize_threshold=127 --record=3 \
  --top=4 >"$WORK/table.txt" || fail "explain table failed"
grep -q "natural variable order" "$WORK/table.txt" || fail "no order in $(cat "$WORK/table.txt")"
[[ $(grep -cE '^ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[01] +-?[0-9.]+$' "$WORK/table.txt") == 4 ]] ||
  fail "table: $(cat "$WORK/table.txt")"

# REST: the same terms for {"rows": ..., "perDimension": true}.
for _ in $(seq 100); do [[ -s "$WORK/http_port" ]] && break; sleep 0.05; done
curl -sf "http://127.0.0.1:$(cat "$WORK/http_port")/v1/models/$MODEL:score" \
  -d "{\"rows\": [[$(cat "$WORK/one.csv")]], \"perDimension\": true}" >"$WORK/rest.json" ||
  fail "REST score failed"
"$PYTHON" - "$WORK/rest.json" "$WORK/explain.json" <<'PY' || fail "REST terms differ"
import json, sys
rest, cli = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert len(rest["dimensionLogProb"]) == 64, rest
assert max(abs(a - b) for a, b in zip(rest["dimensionLogProb"], cli["dimensionLogProb"])) < 1e-6
PY

# The sample grid shares the PNG writer: 4 grey 8x8 tiles with 1-pixel margins.
"${CTL[@]}" models sample "$MODEL" --n=4 --png="$WORK/grid.png" >/dev/null || fail "sample --png"
"$PYTHON" - "$WORK/grid.png" <<'PY' || fail "sample grid PNG"
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
assert (width, height, depth, colour) == (4 * 8 + 3, 8, 8, 0), (width, height, depth, colour)
PY

# Errors.
expect_error() {
  local code=$1
  shift
  if "${CTL[@]}" "$@" >"$WORK/out" 2>"$WORK/err"; then fail "$* succeeded"; fi
  grep -q "error: $code" "$WORK/err" || fail "$*: $(cat "$WORK/err")"
}
expect_error INVALID_ARGUMENT models explain "$MODEL" --input="$WORK/one.idx" \
  --binarize_threshold=127 --record=1
awk 'BEGIN { srand(2); for (r = 0; r < 200; r++) { a = rand() - rand()
  printf "%.6f,%.6f,%.6f\n", a, 2 * a + rand(), rand() } }' >"$WORK/plain.csv"
PLAIN=$("${CTL[@]}" --json datasets upload "$WORK/plain.csv" --kind=continuous | json_field id)
GAUSS=$(train "$PLAIN" --family=gaussian_mixture --components=2 --covariance=full)
expect_error FAILED_PRECONDITION models explain "$GAUSS" --input="$WORK/plain.csv" \
  --output="$WORK/no.png"
[[ ! -e $WORK/no.png ]] || fail "a PNG was written for a model without image shape"
"${CTL[@]}" models explain "$GAUSS" --input="$WORK/plain.csv" --record=5 --top=3 >"$WORK/t2.txt" ||
  fail "explain of non-image data failed"
[[ $(grep -cE '^ +[0-9]+ +[0-2] +-?[0-9.e+-]+ +-?[0-9.]+$' "$WORK/t2.txt") == 3 ]] ||
  fail "non-image table: $(cat "$WORK/t2.txt")"
ENSEMBLE=$(train "$DS" --family=made --hidden_units=16 --num_masks=2)
expect_error FAILED_PRECONDITION models explain "$ENSEMBLE" --input="$WORK/one.idx" \
  --binarize_threshold=127
grep -q "num_masks = 2" "$WORK/err" || fail "ensemble error: $(cat "$WORK/err")"
echo "explain process test passed"
