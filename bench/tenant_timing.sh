#!/usr/bin/env bash
# Is another tenant's id told apart from an unknown one by the time it takes? Starts a logpd with
# two tenants' tokens on loopback, stores one dataset as team-a, then team-b's token times
# GetDataset of that dataset and of an id that exists nowhere, interleaved (N calls each after a
# warm-up, Python's grpcio on one channel), and prints median / p10 / p90 of each and the
# difference of the medians. Both answer NOT_FOUND with the same message. Measurement only.
#
#   bench/tenant_timing.sh            N=5000 calls each (about 10 s)
# Environment: N, LOGP_BIN_DIR (default build/, with server/logpd and client/logpctl).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
N="${N:-5000}"
BIN="${LOGP_BIN_DIR:-$ROOT/${LOGP_BUILD_DIR:-build}}"
WORK=$(mktemp -d /tmp/logp-tenant-timing.XXXXXX)
PID=
source "$ROOT/bench/lib.sh"  # stop_logpd, field
trap 'stop_logpd; rm -rf "$WORK"' EXIT

printf 'token-a-%s team-a writer\ntoken-b-%s team-b writer\n' "$RANDOM" "$RANDOM" >"$WORK/tokens"
TOKEN_A=$(sed -n '1s/ .*//p' "$WORK/tokens")
TOKEN_B=$(sed -n '2s/ .*//p' "$WORK/tokens")
"$BIN/server/logpd" --data_dir="$WORK/data" --listen=127.0.0.1:0 --port_file="$WORK/port" \
  --auth_tokens_file="$WORK/tokens" >"$WORK/logpd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")
printf '0,1,1\n1,0,1\n1,1,0\n' >"$WORK/d.csv"
DS=$("$BIN/client/logpctl" --server="127.0.0.1:$PORT" --token="$TOKEN_A" --json datasets upload \
  "$WORK/d.csv" --kind=binary | field id)
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), nproc $(nproc), $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$PORT" "$DS" "$TOKEN_B" "$N" <<'PY'
import grpc, statistics, sys, time
port, ds, token, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
call = grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary("/logp.v1.DatasetService/GetDataset")
unknown = "ds-" + "0" * 16
def request(i):  # GetDatasetRequest{id: i}
    return b"\x0a" + bytes([len(i)]) + i.encode()
metadata = [("authorization", "Bearer " + token)]
def once(i):
    t = time.perf_counter()
    try:
        call(request(i), metadata=metadata)
        status = "OK"
    except grpc.RpcError as e:
        status = f"{e.code().name} {e.details()!r}"
    return (time.perf_counter() - t) * 1e6, status
for _ in range(200):
    once(ds), once(unknown)
times, statuses = {ds: [], unknown: []}, {}
for r in range(n):
    for i in ((ds, unknown) if r % 2 == 0 else (unknown, ds)):
        us, statuses[i] = once(i)
        times[i].append(us)
print(f"| GetDataset by team-b of | calls | median (us) | p10 | p90 | answer |")
print(f"|---|---|---|---|---|---|")
for i, name in ((ds, "team-a's dataset"), (unknown, "an id that exists nowhere")):
    v = sorted(times[i])
    print(f"| {name} | {len(v)} | {statistics.median(v):.1f} | {v[len(v) // 10]:.1f} | "
          f"{v[9 * len(v) // 10]:.1f} | {statuses[i]} |")
d = statistics.median(times[ds]) - statistics.median(times[unknown])
print(f"\ndifference of the medians: {d:+.1f} us")
PY
