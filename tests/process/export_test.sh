#!/usr/bin/env bash
# TorchScript export end to end: for every family (MAF and RealNVP with and without batch norm
# and preprocessing too), trains a tiny model on a real logpd, exports it with logpctl models
# export, and checks the file with Debian's python3-torch (check_export.py): log_prob equals the
# server's Score within 1e-5 relative, sample is seeded.
# Also: an unknown model id is NOT_FOUND and leaves no file behind.
# Usage: export_test.sh LOGPD LOGPCTL [PYTHON]
set -euo pipefail
LOGPD=$1
LOGPCTL=$2
PYTHON=${3:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/logp-export.XXXXXX)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
source "$HERE/lib.sh"
"$PYTHON" -c 'import torch' 2>/dev/null || fail "$PYTHON cannot import torch (apt-get install python3-torch)"
json_field() { grep -o "\"$1\":\"[^\"]*\"" | head -1 | cut -d'"' -f4; }

launch "$WORK/log" "$WORK/data"
# 300 records each: binary dim 8, categorical dim 5 with K = 3, continuous dim 3, and
# continuous 8-bit values (dim 4) for the preprocessing.
awk 'BEGIN { srand(3); for (r = 0; r < 300; r++) { line = ""; p = 0.3
  for (c = 0; c < 8; c++) { v = rand() < p ? 1 : 0; p = v ? 0.7 : 0.2; line = line (c ? "," : "") v }
  print line } }' >"$WORK/binary.csv"
# 100 binary records of dim 600, for a model whose file (2.9 MB) takes several 1 MiB chunks.
awk 'BEGIN { srand(8); for (r = 0; r < 100; r++) { line = ""; for (c = 0; c < 600; c++)
  line = line (c ? "," : "") (rand() < 0.3 ? 1 : 0); print line } }' >"$WORK/wide.csv"
awk 'BEGIN { srand(4); for (r = 0; r < 300; r++) { line = ""; for (c = 0; c < 5; c++)
  line = line (c ? "," : "") int(rand() * rand() * 3); print line } }' >"$WORK/categorical.csv"
awk 'BEGIN { srand(5); for (r = 0; r < 300; r++) { a = rand() - rand(); b = rand()
  printf "%.6f,%.6f,%.6f\n", a, a * 2 + b, b - 3 } }' >"$WORK/continuous.csv"
awk 'BEGIN { srand(6); for (r = 0; r < 300; r++) { a = int(rand() * 200)
  printf "%d,%d,%d,%d\n", a, 255 - a, int(rand() * 256), int(a / 2) } }' >"$WORK/pixels.csv"

upload() {
  "${CTL[@]}" --json datasets upload "$WORK/$1.csv" --kind="$2" "${@:3}" | json_field id
}
DS_binary=$(upload binary binary)
DS_wide=$(upload wide binary)
DS_categorical=$(upload categorical categorical --num_categories=3)
DS_continuous=$(upload continuous continuous)
DS_pixels=$(upload pixels continuous)

# check NAME DATA KIND DIM K FAMILY [jobs create flags]
check() {
  local name=$1 data=$2 kind=$3 dim=$4 k=$5 family=$6
  shift 6
  local ds_var="DS_$data" job model
  job=$("${CTL[@]}" --json jobs create --dataset="${!ds_var}" --family="$family" --epochs=2 \
    --batch_size=50 --seed=1 "$@" | json_field id)
  "${CTL[@]}" jobs watch "$job" >/dev/null || fail "$name: job $job did not succeed"
  model=$("${CTL[@]}" --json jobs get "$job" | json_field modelId)
  last_model=$model
  local kflag=()
  [[ $kind == categorical ]] && kflag=(--num_categories="$k")
  local scores="$WORK/$name.scores"
  if [[ $family == vae ]]; then
    # Monte Carlo scores: with their standard errors, from the JSON response.
    scores="$WORK/$name.json"
    "${CTL[@]}" --json models score "$model" "$WORK/$data.csv" --kind="$kind" "${kflag[@]}" \
      >"$scores" || fail "$name: score failed"
  else
    "${CTL[@]}" models score "$model" "$WORK/$data.csv" --kind="$kind" "${kflag[@]}" \
      --output="$scores" >/dev/null || fail "$name: score failed"
  fi
  "${CTL[@]}" models export "$model" --output="$WORK/$name.pt" >"$WORK/$name.export" ||
    fail "$name: export failed: $(cat "$WORK/$name.export")"
  echo "$name: $(stat -c %s "$WORK/$name.pt") bytes"
  "$PYTHON" "$HERE/check_export.py" "$WORK/$name.pt" "$WORK/$data.csv" "$scores" \
    "$kind" "$dim" "$k" "$family" || fail "$name: check_export.py"
}

check bernoulli binary binary 8 2 bernoulli
check fvsbn binary binary 8 2 fvsbn --order=random
check nade binary binary 8 2 nade --hidden_units=16
check made_binary binary binary 8 2 made --hidden_units=16 --num_masks=2
check categorical categorical categorical 5 3 categorical
check made_categorical categorical categorical 5 3 made --hidden_units=16
check gaussian continuous continuous 3 0 gaussian
check gaussian_mixture continuous continuous 3 0 gaussian_mixture --components=2 --covariance=full
check made_gaussian continuous continuous 3 0 made --hidden_units=16
check made_logit pixels continuous 4 0 made --hidden_units=16 --dequantize --logit
check gaussian_dequantized pixels continuous 4 0 gaussian --dequantize
check fvsbn_wide wide binary 600 2 fvsbn
size=$(stat -c %s "$WORK/fvsbn_wide.pt")
((size > 2 * 1024 * 1024)) || fail "fvsbn_wide: $size bytes, expected a file over two chunks"
check vae_binary binary binary 8 2 vae --latent_dim=2 --hidden_units=16
check vae_logit pixels continuous 4 0 vae --latent_dim=2 --hidden_units=16 --dequantize --logit
check maf continuous continuous 3 0 maf --hidden_units=8 --flow_layers=2
check maf_batch_norm continuous continuous 3 0 maf --hidden_units=8 --flow_layers=3 --batch_norm=true
check maf_logit pixels continuous 4 0 maf --hidden_units=8 --flow_layers=2 --batch_norm=true \
  --dequantize --logit
check realnvp continuous continuous 3 0 realnvp --hidden_units=8 --coupling_layers=2
check realnvp_batch_norm continuous continuous 3 0 realnvp --hidden_units=8 --coupling_layers=3 \
  --batch_norm=true
check realnvp_logit pixels continuous 4 0 realnvp --hidden_units=8 --coupling_layers=2 \
  --batch_norm=true --dequantize --logit

# An unknown model: NOT_FOUND, exit 1, and no file (nor temporary file) left behind.
rc=0
"${CTL[@]}" models export model-00000000000000000000000000000000 --output="$WORK/none.pt" \
  >/dev/null 2>"$WORK/none.err" || rc=$?
[[ $rc == 1 ]] && grep -q NOT_FOUND "$WORK/none.err" || fail "unknown model: exit $rc, $(cat "$WORK/none.err")"
[[ -z $(ls "$WORK" | grep none.pt) ]] || fail "unknown model left a file"
# Usage: no --output.
rc=0
"${CTL[@]}" models export "$last_model" >/dev/null 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "export without --output: exit $rc, not the usage exit 2"
echo "PASS"
