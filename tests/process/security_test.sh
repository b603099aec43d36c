#!/usr/bin/env bash
# Process-level security test of the real binaries: logpd with mutual TLS, a tokens file (plain
# tokens, a sha256: digest, a cert: identity), a quotas file and a plaintext health port, driven
# by logpctl over TLS. It checks the whole loop as a team-a writer; a reader's PERMISSION_DENIED;
# team-b seeing none of team-a's objects (NOT_FOUND) and its datasets quota (RESOURCE_EXHAUSTED);
# a mapped client certificate without a token; wrong, missing and unmapped credentials
# (UNAUTHENTICATED); a plaintext client's "may require TLS"; the health port in plaintext; token
# rotation without a restart; the audit lines, and no token anywhere in the logs or the client
# output; the exposure warning of an exposed plaintext logpd (and none on loopback or when
# secured); SIGTERM exits 0.
# Usage: security_test.sh LOGPD LOGPCTL MAKE_TEST_CERTS_SH
set -euo pipefail
LOGPD=$1
LOGPCTL=$2
MAKE_CERTS=$3
WORK=$(mktemp -d /tmp/logp-security.XXXXXX)
PID=
trap '[[ -n $PID ]] && kill -9 $PID 2>/dev/null; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT
source "$(dirname "$0")/lib.sh"
# The caller's environment must not lend a token to the calls meant to carry none.
unset LOGP_TOKEN
now_ms() { echo $(($(date +%s%N) / 1000000)); }
t_start=$(now_ms)

# --- credentials, quotas, certificates
bash "$MAKE_CERTS" "$WORK/certs" >/dev/null
C=$WORK/certs
TOK_A_WRITER=$(openssl rand -hex 16)
TOK_A_READER=$(openssl rand -hex 16)
TOK_ADMIN=$(openssl rand -hex 16)
TOK_B_WRITER=$(openssl rand -hex 16)
TOK_B_NEW=$(openssl rand -hex 16)  # team-b's token after the rotation
TOK_WRONG=$(openssl rand -hex 16)  # in no file
ADMIN_DIGEST=$(printf %s "$TOK_ADMIN" | sha256sum | cut -d' ' -f1)
cat >"$WORK/tokens" <<EOF
# the tokens of security_test.sh
$TOK_A_WRITER team-a writer
$TOK_A_READER team-a reader
sha256:$ADMIN_DIGEST ops admin
$TOK_B_WRITER team-b writer
cert:team-a-client team-a writer
EOF
echo "team-b datasets=1" >"$WORK/quotas"
gen 1 300 >"$WORK/train.csv"
gen 2 100 >"$WORK/test.csv"

launch "$WORK/log" "$WORK/data" --progress_interval_seconds=0.1 \
  --tls_cert_file="$C/server.pem" --tls_key_file="$C/server.key" \
  --tls_client_ca_file="$C/ca.pem" --auth_tokens_file="$WORK/tokens" \
  --quotas_file="$WORK/quotas" --health_listen=127.0.0.1:0
PORT=$(cat "$WORK/port")
grep -q "logpd serving on port $PORT (mutual TLS)" "$WORK/log" || fail "no mutual TLS start line"
grep -q "authentication on: 4 tokens and 1 certificate identities" "$WORK/log" ||
  fail "the tokens file was not read as 4 tokens and 1 certificate identity"
# logpd logs the health port; there is no --health_port_file.
HEALTH=$(sed -n 's/.*health service alone, in plaintext, on port \([0-9]*\)$/\1/p' "$WORK/log")
[[ -n $HEALTH && $HEALTH != "$PORT" ]] || fail "no health port in the log"

TLS=(--server="127.0.0.1:$PORT" --tls_ca_file="$C/ca.pem")
# Client certificates: client-san is mapped to team-a (cert:team-a-client), client-cn to nobody.
CERT_A=(--tls_cert_file="$C/client-san.pem" --tls_key_file="$C/client-san.key")
CERT_UNMAPPED=(--tls_cert_file="$C/client-cn.pem" --tls_key_file="$C/client-cn.key")
a_writer() { LOGP_TOKEN=$TOK_A_WRITER "$LOGPCTL" "${TLS[@]}" "${CERT_A[@]}" "$@"; }
a_reader() { LOGP_TOKEN=$TOK_A_READER "$LOGPCTL" "${TLS[@]}" "${CERT_A[@]}" "$@"; }
# team-b's calls carry the unmapped certificate: the token alone names the tenant.
b_writer() { LOGP_TOKEN=$TOK_B_WRITER "$LOGPCTL" "${TLS[@]}" "${CERT_UNMAPPED[@]}" "$@"; }
admin() { "$LOGPCTL" "${TLS[@]}" "${CERT_UNMAPPED[@]}" --token="$TOK_ADMIN" "$@"; }
cert_only() { "$LOGPCTL" "${TLS[@]}" "${CERT_A[@]}" "$@"; }
n_out=0
# refused CODE REGEX COMMAND...: COMMAND exits 1 and prints "error: CODE: <message matching
# REGEX>" on stderr; the message is echoed for the log.
refused() {
  local code=$1 regex=$2 out
  shift 2
  n_out=$((n_out + 1))
  out="$WORK/refused.$n_out"
  local rc=0
  "$@" >"$out.stdout" 2>"$out" || rc=$?
  [[ $rc -eq 1 ]] || fail "'${*: -3}' exited $rc, not 1: $(cat "$out")"
  grep -Eq "^error: $code: $regex" "$out" ||
    fail "'${*: -3}': expected 'error: $code: $regex', got: $(cat "$out")"
  echo "seen: $(head -1 "$out")"
}
json_id() { field id; }

# --- the loop as team-a's writer (token + certificate)
DS=$(a_writer --json datasets upload "$WORK/train.csv" --kind=binary --name=a-train | json_id)
[[ $DS == ds-* ]] || fail "team-a's upload gave no id"
a_writer --json datasets get "$DS" | grep -q '"tenant":"team-a"' || fail "dataset not team-a's"
TEST_DS=$(a_writer --json datasets upload "$WORK/test.csv" --kind=binary --name=a-test | json_id)
JOB=$(a_writer --json jobs create --dataset="$DS" --family=made --hidden_units=16 --epochs=3 \
  --batch_size=50 --validation_fraction=0.2 --seed=1 | json_id)
[[ $JOB == job-* ]] || fail "team-a's job create gave no id"
a_writer jobs watch "$JOB" >"$WORK/watch.out" || fail "team-a's job did not succeed"
grep -q "SUCCEEDED" "$WORK/watch.out" || fail "jobs watch did not show SUCCEEDED"
MODEL=$(a_writer --json jobs get "$JOB" | field modelId)
[[ -n $MODEL ]] || fail "no model for $JOB"
a_writer models score "$MODEL" "$WORK/test.csv" --kind=binary --output="$WORK/scores" >/dev/null
[[ $(wc -l <"$WORK/scores") -eq 100 ]] || fail "score gave $(wc -l <"$WORK/scores") values"
awk '!($1 < 0) { bad = 1 } END { exit bad }' "$WORK/scores" || fail "a log p >= 0 or not a number"
NLL=$(a_writer --json models evaluate "$MODEL" --dataset="$TEST_DS" | grep -o '"meanNll":[0-9.]*' |
  cut -d: -f2)
[[ -n $NLL ]] || fail "evaluate gave no mean NLL"
a_writer models sample "$MODEL" --n=10 --seed=3 --output="$WORK/samples.csv" >/dev/null
[[ $(wc -l <"$WORK/samples.csv") -eq 10 ]] || fail "sample wrote $(wc -l <"$WORK/samples.csv") rows"
awk -F, 'NF != 64 { bad = 1 } END { exit bad }' "$WORK/samples.csv" || fail "samples not of dim 64"
echo "team-a loop: $DS, $JOB, $MODEL, test NLL $NLL nats"

# --- team-a's reader: reads, may not write
a_reader datasets list | grep -q "$DS" || fail "the reader's datasets list lacks $DS"
a_reader --json jobs get "$JOB" | grep -q JOB_STATE_SUCCEEDED || fail "the reader cannot get $JOB"
a_reader --json models get "$MODEL" | grep -q "\"id\":\"$MODEL\"" || fail "the reader cannot get $MODEL"
refused PERMISSION_DENIED "role reader may not call CreateJob \(it needs the writer role\)$" \
  a_reader jobs create --dataset="$DS" --family=bernoulli
refused PERMISSION_DENIED "role reader may not call CreateDataset \(it needs the writer role\)$" \
  a_reader datasets upload "$WORK/test.csv" --kind=binary
[[ $(a_writer --json jobs list | grep -c '"id":"job-') -eq 1 ]] || fail "the reader created a job"

# --- team-b: none of team-a's objects, and its datasets quota
refused NOT_FOUND "dataset '$DS' not found$" b_writer datasets get "$DS"
refused NOT_FOUND "job '$JOB' not found$" b_writer jobs get "$JOB"
refused NOT_FOUND "model '$MODEL' not found$" b_writer models get "$MODEL"
refused NOT_FOUND "model '$MODEL' not found$" b_writer models sample "$MODEL" --n=1
refused NOT_FOUND "job '$JOB' not found$" b_writer jobs cancel "$JOB"
# As an id that never existed is answered:
refused NOT_FOUND "dataset 'ds-0000000000000000' not found$" b_writer datasets get ds-0000000000000000
B_DS=$(b_writer --json datasets upload "$WORK/test.csv" --kind=binary --name=b-first | json_id)
[[ $B_DS == ds-* && $B_DS != "$DS" && $B_DS != "$TEST_DS" ]] || fail "team-b's upload: '$B_DS'"
b_writer --json datasets list >"$WORK/b.list" || fail "team-b cannot list its datasets"
[[ $(grep -c '"id":"ds-' "$WORK/b.list") -eq 1 ]] && grep -q "\"id\":\"$B_DS\"" "$WORK/b.list" ||
  fail "team-b's datasets list is not just its own: $(cat "$WORK/b.list")"
b_writer --json jobs list >"$WORK/b.jobs.list" || fail "team-b cannot list its jobs"
b_writer --json models list >"$WORK/b.models.list" || fail "team-b cannot list its models"
[[ ! -s $WORK/b.jobs.list && ! -s $WORK/b.models.list ]] ||
  fail "team-b sees jobs or models: $(cat "$WORK"/b.*s.list)"
a_writer --json models list | grep -q "\"id\":\"$MODEL\"" || fail "team-a's models list lacks $MODEL"
refused RESOURCE_EXHAUSTED "tenant 'team-b' is at its quota datasets: limit 1, in use 1$" \
  b_writer datasets upload "$WORK/train.csv" --kind=binary --name=b-second
[[ $(b_writer --json datasets list | grep -c '"id":"ds-') -eq 1 ]] || fail "the refused upload stayed"
# The admin (a sha256: line) sees both tenants.
admin datasets list >"$WORK/admin.list" || fail "the admin cannot list"
grep -q "$DS" "$WORK/admin.list" && grep -q "$B_DS" "$WORK/admin.list" ||
  fail "the admin's list lacks a tenant's dataset: $(cat "$WORK/admin.list")"
# Its table names each row's tenant; a tenant's own table has no such column.
head -1 "$WORK/admin.list" | grep -q "^ID  *TENANT  *NAME" ||
  fail "the admin's table has no TENANT column: $(head -1 "$WORK/admin.list")"
grep "$B_DS" "$WORK/admin.list" | grep -q " team-b " || fail "the admin's table does not say team-b"
a_writer datasets list | head -1 | grep -q TENANT && fail "a tenant's own table has a TENANT column"

# --- certificates and bad credentials
cert_only datasets list >"$WORK/cert.list" || fail "the certificate alone cannot list"
grep -q "$DS" "$WORK/cert.list" && grep -q "$TEST_DS" "$WORK/cert.list" &&
  ! grep -q "$B_DS" "$WORK/cert.list" || fail "the certificate's list is not team-a's"
CERT_JOB=$(cert_only --json jobs create --dataset="$DS" --family=bernoulli | json_id)
[[ $CERT_JOB == job-* ]] || fail "the mapped certificate could not create a job (a writer)"
refused UNAUTHENTICATED "invalid token$" \
  "$LOGPCTL" "${TLS[@]}" "${CERT_A[@]}" --token="$TOK_WRONG" datasets list
refused UNAUTHENTICATED "invalid token$" \
  "$LOGPCTL" "${TLS[@]}" "${CERT_A[@]}" --token="$TOK_WRONG" datasets delete "$DS"
missing="missing credentials: send the header authorization: Bearer TOKEN or connect with a"
missing+=" client certificate mapped to a tenant"
missing+=" \(the client certificate presented is mapped to no tenant\)$"
refused UNAUTHENTICATED "$missing" "$LOGPCTL" "${TLS[@]}" "${CERT_UNMAPPED[@]}" datasets list
a_writer --json datasets get "$DS" | grep -q "\"id\":\"$DS\"" || fail "the refused delete deleted"

# --- transport: plaintext against TLS, mutual TLS without a certificate, the health port
closed="the server at 127.0.0.1:$PORT closed the connection during the"
refused UNAVAILABLE \
  "$closed handshake: it may require TLS; connect with TLS \(--tls_ca_file=CA.pem, or --tls" \
  "$LOGPCTL" --server="127.0.0.1:$PORT" --token="$TOK_A_WRITER" datasets list
refused UNAVAILABLE "$closed TLS handshake: it may require a client certificate" \
  "$LOGPCTL" "${TLS[@]}" --token="$TOK_A_WRITER" datasets list
/usr/bin/python3 - "$HEALTH" <<'EOF' || fail "the health port did not answer as expected"
import grpc, sys
channel = grpc.insecure_channel("127.0.0.1:" + sys.argv[1])
raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
check = channel.unary_unary("/grpc.health.v1.Health/Check", **raw)
assert check(b"", timeout=10) == b"\x08\x01", "health is not SERVING"  # status: SERVING
try:  # a logp method, in plaintext and without credentials: not served on this port
    channel.unary_unary("/logp.v1.DatasetService/ListDatasets", **raw)(b"", timeout=10)
    raise AssertionError("ListDatasets answered on the health port")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e.code()
print("health port", sys.argv[1], "SERVING in plaintext; ListDatasets UNIMPLEMENTED there")
EOF

# --- rotation: team-b's token replaced by a new one, without a restart
sed -e "s/^$TOK_B_WRITER team-b writer$/$TOK_B_NEW team-b writer/" "$WORK/tokens" >"$WORK/tokens.new"
grep -q "$TOK_B_WRITER" "$WORK/tokens.new" && fail "the old token is still in the new file"
mv "$WORK/tokens.new" "$WORK/tokens"
t0=$(now_ms)
for _ in $(seq 100); do
  b_writer datasets list >/dev/null 2>&1 || break
  sleep 0.1
done
rotate_ms=$(($(now_ms) - t0))
refused UNAUTHENTICATED "invalid token$" b_writer datasets list
echo "old token refused ${rotate_ms} ms after the rewrite"
[[ $rotate_ms -lt 5000 ]] || fail "the rotation took $rotate_ms ms"
"$LOGPCTL" "${TLS[@]}" "${CERT_UNMAPPED[@]}" --token="$TOK_B_NEW" --json datasets list \
  >"$WORK/b.list2" || fail "team-b's new token cannot list"
[[ $(grep -c '"id":"ds-' "$WORK/b.list2") -eq 1 ]] && grep -q "\"id\":\"$B_DS\"" "$WORK/b.list2" ||
  fail "team-b's new token does not see team-b's dataset"
a_writer datasets list | grep -q "$DS" || fail "team-a's token stopped working after the rotation"
kill -0 "$PID" || fail "logpd is gone"
grep -qF "auth tokens file '$WORK/tokens' changed: re-read" "$WORK/log" || fail "no reload line"
[[ $(grep -cF "auth tokens file '$WORK/tokens': 4 tokens, 1 certificate identities" "$WORK/log") -eq 2 ]] ||
  fail "the tokens file was not parsed twice (at start and after the rewrite)"

# --- SIGTERM: exit 0
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=
[[ $rc -eq 0 ]] || fail "logpd exited $rc on SIGTERM"
grep -q "logpd stopped cleanly" "$WORK/log" || fail "no clean-stop line"

# --- the audit log: every mutating call, with tenant, role, code and how it authenticated
audit() { grep -F 'audit {' "$WORK/log" | sed 's/^.*audit //'; }
has_audit() {
  audit | grep -F "\"tenant\":\"$1\",\"role\":\"$2\",\"method\":\"$3\",\"resource_id\":\"$4\",\"code\":\"$5\",\"via\":\"$6\"}" \
    >/dev/null || fail "no audit line: $*"
}
has_audit team-a writer CreateDataset "$DS" OK token
has_audit team-a writer CreateDataset "$TEST_DS" OK token
has_audit team-a writer CreateJob "$JOB" OK token
has_audit team-a reader CreateJob "" PERMISSION_DENIED token
has_audit team-a reader CreateDataset "" PERMISSION_DENIED token
has_audit team-b writer CancelJob "$JOB" NOT_FOUND token
has_audit team-b writer CreateDataset "$B_DS" OK token
has_audit team-b writer CreateDataset "" RESOURCE_EXHAUSTED token
has_audit team-a writer CreateJob "$CERT_JOB" OK certificate
audit | grep -F '"method":"DeleteDataset"' | grep -Fq '"code":"UNAUTHENTICATED"' ||
  fail "no audit line of the wrong token's delete"
# 9 mutating calls above, and none of the reads.
n_audit=$(audit | wc -l)
[[ $n_audit -eq 10 ]] || fail "$n_audit audit lines, expected 10: $(audit)"
audit | grep -Eq '"method":"(Get|List|Score|Evaluate|Sample)' && fail "a read was audited"
audit | python3 -c 'import json, sys; [json.loads(l) for l in sys.stdin]' ||
  fail "an audit line is not JSON"
echo "audit: $n_audit lines"

# --- exposure warnings: an exposed plaintext logpd without tokens warns; loopback and a secured
# exposed logpd do not.
WARN='WARNING: logpd listens on 0.0.0.0:0, which other machines can reach, in plaintext and without authentication:'
exposure() {  # exposure LOG LISTEN [flags]: starts logpd, waits for its port, stops it.
  local log=$1 listen=$2
  shift 2
  rm -f "$WORK/port"
  "$LOGPD" --data_dir="$WORK/data-$log" --listen="$listen" --port_file="$WORK/port" "$@" \
    >"$WORK/log-$log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do [[ -s "$WORK/port" ]] && break; sleep 0.05; done
  [[ -s "$WORK/port" ]] || fail "logpd on $listen did not start"
  kill -TERM "$PID"
  wait "$PID" || fail "logpd on $listen exited $? on SIGTERM"
  PID=
}
exposure open 0.0.0.0:0
grep -qF "$WARN" "$WORK/log-open" || fail "no exposure warning on 0.0.0.0 in plaintext"
grep -qF "Serve TLS: --tls_cert_file=CERT.pem --tls_key_file=KEY.pem" "$WORK/log-open" &&
  grep -qF "Authenticate clients: --auth_tokens_file=FILE" "$WORK/log-open" &&
  grep -qF "Or listen on this machine only: --listen=127.0.0.1:PORT." "$WORK/log-open" ||
  fail "the exposure warning does not name the flags that close it"
sed -n '/WARNING: logpd listens/p' "$WORK/log-open" | sed 's/^.*\] /seen: /'
exposure loopback 127.0.0.1:0
grep -q "which other machines can reach" "$WORK/log-loopback" && fail "a warning on 127.0.0.1"
exposure secured 0.0.0.0:0 --tls_cert_file="$C/server.pem" --tls_key_file="$C/server.key" \
  --auth_tokens_file="$WORK/tokens"
grep -q "which other machines can reach" "$WORK/log-secured" && fail "a warning with TLS + tokens"
grep -q "which other machines can reach" "$WORK/log" && fail "a warning on the mutual-TLS server"

# No token, whatever its role or validity, in any logpd's log or in anything logpctl printed.
for t in "$TOK_A_WRITER" "$TOK_A_READER" "$TOK_ADMIN" "$TOK_B_WRITER" "$TOK_B_NEW" "$TOK_WRONG"; do
  if grep -rlF "$t" "$WORK"/log* "$WORK"/refused.* "$WORK"/*.list* "$WORK"/watch.out; then
    fail "a token appears in the files above"
  fi
done
echo "no token in any logpd's log or in the client output"

echo "security test: $(($(now_ms) - t_start)) ms"
echo "1 passed, 0 failed"
