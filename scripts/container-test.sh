#!/usr/bin/env bash
# The container test: builds the image from the repo's Dockerfile, unchanged, without a Docker
# engine (buildah), runs it (podman) with a data volume and its port published on loopback, and
# drives it from the host with logpctl: upload, train, score, evaluate, sample. Then it stops the
# container while a job trains (SIGTERM: logpd must exit 0 and say it stopped cleanly), starts a
# new container on the same volume (dataset, job, model and scores intact, the interrupted job
# requeued), checks that logpd runs as the non-root user, that the HEALTHCHECK passes, and what
# the image holds (runtime libraries only, OpenBLAS as the BLAS). Then deploy/docker-compose.yml
# with its TLS variant (podman-compose): mutual TLS, tokens, the health port, a clean stop. Last,
# deploy/docker-compose.replicas.yml: the PostgreSQL image of deploy/postgres, three replicas on
# one catalogue and one volume, a dataset uploaded through one replica and a model trained
# through another, seen and scored alike through every one and a round-robin list of them.
# Prints the image sizes, the build times and the start times to SERVING.
#
# Usage: scripts/container-test.sh [LOGPCTL]   (default: build/client/logpctl)
# In the suite as ctest's container_test (label "container": `ctest -LE container` skips it).
# Needs root (else it exits 77, skipped) and buildah, podman, podman-compose, runc and mmdebstrap
# (scripts/install-deps.sh installs them).
# No registry is reachable here, so the debian:12 base is made locally once (mmdebstrap, podman
# import) and kept; buildah's layer cache and the build's ccache directory are kept too, so a
# rebuild after a source change recompiles only what changed.
# Environment: LOGP_IMAGE, the tag built and run (default logp:test; kept afterwards), and
# LOGP_POSTGRES_IMAGE, the PostgreSQL image's (default logp-postgres:test; kept too).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
LOGPCTL=${1:-$REPO/build/client/logpctl}
IMAGE=${LOGP_IMAGE:-logp:test}
PG_IMAGE=${LOGP_POSTGRES_IMAGE:-logp-postgres:test}
BASE=docker.io/library/debian:12
NAME=logp-ct-$$
VOLUME=logp-ct-$$
WORK=$(mktemp -d /tmp/logp-container.XXXXXX)

# field (a JSON field of stdin) and gen (binary records with neighbour structure); fail below
# replaces lib.sh's.
source "$REPO/tests/process/lib.sh"
fail() {
  echo "FAIL: $*"
  echo "--- container log (tail)"
  podman logs --tail 30 "$NAME" 2>&1 || true
  exit 1
}
cleanup() {
  podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
  podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
now_ms() { echo $(($(date +%s%N) / 1000000)); }

if [[ $(id -u) != 0 ]]; then
  echo "SKIP: needs root (buildah and podman run rootful here)"
  exit 77
fi
for tool in buildah podman podman-compose runc mmdebstrap; do
  command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/install-deps.sh"
done
# Compose services reach each other by name (the replicas' --catalog host postgres): with CNI
# networks, podman 4.3 needs the dnsname plugin for that.
if [[ $(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null) == cni &&
  ! -x /usr/lib/cni/dnsname ]]; then
  fail "no CNI dnsname plugin (service names would not resolve): run scripts/install-deps.sh"
fi
[[ -x $LOGPCTL ]] || fail "no logpctl at $LOGPCTL (build first: scripts/build.sh)"

# How podman runs containers here. Its default runtime, crun, refuses this machine's hybrid
# cgroup layout; runc does not. And without CAP_SYS_RESOURCE (sandboxes lack it) podman's
# default limits (nofile 1048576) cannot be set: then pass the limits this process already has
# (nproc at most 32768, podman lowers its own to that).
cat >"$WORK/containers.conf" <<EOF
[engine]
runtime = "runc"
EOF
cap_eff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
if ((!((16#$cap_eff >> 24) & 1))); then
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
  cat >>"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
EOF
fi
export CONTAINERS_CONF=$WORK/containers.conf

# The base image, made once.
if ! podman image exists "$BASE"; then
  t0=$(now_ms)
  echo "making $BASE with mmdebstrap (once; kept in podman's storage)"
  mmdebstrap --variant=minbase --quiet bookworm "$WORK/base.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  podman import --quiet "$WORK/base.tar" "$BASE" >/dev/null
  rm -f "$WORK/base.tar"
  echo "base image made in $((($(now_ms) - t0) / 1000)) s"
fi

t0=$(now_ms)
# npm in the builder stage (the dashboard's packages) trusts what the host trusts: this machine
# reaches the npm registry through a TLS-intercepting proxy whose CA only the host's bundle has.
CA_ARGS=()
if [[ -r /etc/ssl/certs/ca-certificates.crt ]]; then
  CA_ARGS=(--volume /etc/ssl/certs/ca-certificates.crt:/run/logp-host-ca.crt:ro
    --build-arg NODE_EXTRA_CA_CERTS=/run/logp-host-ca.crt)
fi
buildah bud --isolation=chroot --format=docker --layers --pull=never -t "$IMAGE" "${CA_ARGS[@]}" \
  -f "$REPO/Dockerfile" "$REPO" >"$WORK/build.log" 2>&1 || {
  tail -40 "$WORK/build.log"
  fail "buildah bud failed"
}
echo "image built in $((($(now_ms) - t0) / 1000)) s"
# A tag on the builder stage too (all its layers are cached by now, so this takes seconds), so
# that pruning below keeps them for the next build.
buildah bud --isolation=chroot --format=docker --layers --pull=never --target=builder \
  -t "$IMAGE-builder" "${CA_ARGS[@]}" -f "$REPO/Dockerfile" "$REPO" >>"$WORK/build.log" 2>&1 ||
  fail "tagging the builder stage failed"
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
echo "image size: $((size / 1000000)) MB"

# --- what the image is ---
inspect() { podman image inspect "$IMAGE" --format "$1"; }
[[ $(inspect '{{.Config.User}}') == 10001:10001 ]] || fail "image user is '$(inspect '{{.Config.User}}')'"
[[ $(inspect '{{.Config.StopSignal}}') == SIGTERM ]] || fail "stop signal is not SIGTERM"
inspect '{{json .Config.Volumes}}' | grep -q '"/data"' || fail "/data is not a volume"
inspect '{{json .Config.Healthcheck}}' | grep -q 'logpctl.*health' || fail "no HEALTHCHECK"
# Runtime libraries only: no compiler, no -dev package, no CMake.
podman run --rm --entrypoint /bin/sh "$IMAGE" -c \
  'for t in g++ gcc cc c++ cmake protoc; do command -v $t && exit 1; done;
   ! dpkg-query -W -f "\${Package}\n" | grep -- "-dev$"' >"$WORK/tools.out" 2>&1 ||
  fail "the runtime image carries build tools: $(cat "$WORK/tools.out")"
blas=$(podman run --rm --entrypoint /bin/readlink "$IMAGE" -f /usr/lib/x86_64-linux-gnu/libblas.so.3 \
  2>/dev/null)
[[ $blas == *openblas-pthread* ]] || fail "the BLAS in the image is $blas, not OpenBLAS (pthread)"

# --- run it ---
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
podman volume create "$VOLUME" >/dev/null
CTL=("$LOGPCTL" --server="127.0.0.1:$PORT")
# start [podman run options] -- [logpd arguments]: runs a new container on the volume and waits
# until logpd is SERVING.
start() {
  local options=() t0
  while [[ $# -gt 0 && $1 != -- ]]; do
    options+=("$1")
    shift
  done
  [[ $# -gt 0 ]] && shift
  podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
  t0=$(now_ms)
  # Without systemd, podman cannot set up the timer that would run the HEALTHCHECK periodically
  # and says so; `podman healthcheck run` below runs it.
  podman run -d --name "$NAME" -p "127.0.0.1:$PORT:50051" -v "$VOLUME:/data" "${options[@]}" \
    "$IMAGE" "$@" >/dev/null 2>"$WORK/run.err" || fail "podman run failed: $(cat "$WORK/run.err")"
  for _ in $(seq 600); do
    [[ $("${CTL[@]}" health 2>/dev/null) == SERVING ]] && break
    [[ $(podman inspect "$NAME" --format '{{.State.Running}}') == true ]] || fail "the container exited"
    sleep 0.1
  done
  [[ $("${CTL[@]}" health 2>/dev/null) == SERVING ]] || fail "logpd never became SERVING"
  echo "container start to SERVING: $(($(now_ms) - t0)) ms"
}

# 2,000 binary records of dim 64 with neighbour structure.
gen 11 2000 >"$WORK/data.csv"
head -20 "$WORK/data.csv" >"$WORK/few.csv"

# As `docker run -v VOLUME:/data IMAGE FLAGS` runs it.
start -- --training_slots=1 --progress_interval_seconds=0.2
# logpd is the container's PID 1, and runs as logp (uid 10001), not root.
status=$(podman exec "$NAME" cat /proc/1/status)
grep -q '^Name:[[:space:]]*logpd' <<<"$status" || fail "PID 1 is not logpd"
grep -Eq '^Uid:[[:space:]]+10001[[:space:]]+10001' <<<"$status" || fail "logpd does not run as uid 10001"
[[ $(podman exec "$NAME" id -un) == logp ]] || fail "the container's user is not logp"
if podman exec "$NAME" touch /usr/local/bin/x 2>/dev/null; then fail "the user can write /usr/local/bin"; fi
podman healthcheck run "$NAME" >/dev/null || fail "the image's HEALTHCHECK failed on a serving logpd"

DS=$("${CTL[@]}" --json datasets upload "$WORK/data.csv" --kind=binary --name=container | field id)
[[ $DS == ds-* ]] || fail "upload gave no id"
HASH=$("${CTL[@]}" --json datasets get "$DS" | field contentHash)
J1=$("${CTL[@]}" --json jobs create --dataset="$DS" --family=made --hidden_units=32 --epochs=3 \
  --validation_fraction=0.1 | field id)
"${CTL[@]}" jobs watch "$J1" >"$WORK/watch1.out" || fail "the MADE job did not succeed"
M1=$("${CTL[@]}" --json jobs get "$J1" | field modelId)
[[ $M1 == model-* ]] || fail "the job published no model"
SCORES=$("${CTL[@]}" models score "$M1" "$WORK/few.csv" --kind=binary)
[[ $(wc -l <<<"$SCORES") -ge 20 ]] || fail "score returned too few lines: $SCORES"
"${CTL[@]}" models evaluate "$M1" --dataset="$DS" >"$WORK/eval.out" || fail "evaluate failed"
"${CTL[@]}" models sample "$M1" --n=5 --output="$WORK/samples.csv" >/dev/null || fail "sample failed"
[[ $(wc -l <"$WORK/samples.csv") == 5 ]] || fail "sample did not write 5 records"
# A long job that the stop interrupts.
J2=$("${CTL[@]}" --json jobs create --dataset="$DS" --family=made --hidden_units=32 \
  --epochs=10000 --batch_size=1 | field id)
for _ in $(seq 100); do
  [[ $("${CTL[@]}" --json jobs get "$J2" | field state) == JOB_STATE_RUNNING ]] && break
  sleep 0.1
done
[[ $("${CTL[@]}" --json jobs get "$J2" | field state) == JOB_STATE_RUNNING ]] || fail "job 2 never ran"

# --- stop: SIGTERM reaches logpd, which exits 0 after saving ---
t0=$(now_ms)
podman stop -t 30 "$NAME" >/dev/null 2>"$WORK/stop.err" || fail "podman stop failed: $(cat "$WORK/stop.err")"
echo "podman stop: $(($(now_ms) - t0)) ms"
podman logs "$NAME" >"$WORK/log1" 2>&1
code=$(podman inspect "$NAME" --format '{{.State.ExitCode}}')
[[ $code == 0 ]] || fail "logpd exited with $code on podman stop"
grep -q "received signal 15" "$WORK/log1" || fail "logpd never saw SIGTERM"
grep -q "logpd stopped cleanly" "$WORK/log1" || fail "no clean-stop log line"

# --- a new container on the same volume, run as deploy/k8s's StatefulSet runs it ---
# Its container's command and arguments, and its securityContext: read-only root file system
# with an empty /tmp, no capabilities, no privilege escalation, uid and gid 10001.
mapfile -t POD_ARGS < <(python3 - "$REPO/deploy/k8s/base/statefulset.yaml" <<'PY'
import sys, yaml
container = yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"][0]
for word in container["command"] + container["args"]:
    print(word)
PY
)
[[ ${POD_ARGS[0]:-} == /usr/local/bin/logpd ]] || fail "unexpected StatefulSet command: ${POD_ARGS[*]}"
start --entrypoint "${POD_ARGS[0]}" --read-only --tmpfs /tmp --cap-drop=ALL \
  --security-opt=no-new-privileges --user 10001:10001 -e TMPDIR=/tmp -- "${POD_ARGS[@]:1}"
[[ $("${CTL[@]}" --json datasets get "$DS" | field contentHash) == "$HASH" ]] ||
  fail "the dataset changed across the restart"
[[ $("${CTL[@]}" --json jobs get "$J1" | field state) == JOB_STATE_SUCCEEDED ]] ||
  fail "job 1 lost its state"
[[ $("${CTL[@]}" models score "$M1" "$WORK/few.csv" --kind=binary) == "$SCORES" ]] ||
  fail "the model's scores changed across the restart"
[[ $("${CTL[@]}" --json jobs get "$J2" | field state) =~ JOB_STATE_(QUEUED|RUNNING) ]] ||
  fail "job 2 was not requeued"
"${CTL[@]}" jobs cancel "$J2" >/dev/null
podman stop -t 30 "$NAME" >/dev/null 2>&1
[[ $(podman inspect "$NAME" --format '{{.State.ExitCode}}') == 0 ]] || fail "second stop: not exit 0"

# --- compose: deploy/docker-compose.yml with the mutual-TLS and tokens variant ---
# podman-compose (Debian's) stands in for docker compose: the same files, the same merge of the
# second file over the first, secrets mounted under /run/secrets/.
SECRETS=$WORK/secrets
"$REPO/scripts/make-certs.sh" "$SECRETS" localhost 127.0.0.1 >/dev/null 2>&1
CLIENT=ct "$REPO/scripts/make-certs.sh" "$SECRETS" >/dev/null 2>&1
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
echo "$TOKEN team-ct writer" >"$SECRETS/tokens"
chmod 0644 "$SECRETS/server.key" "$SECRETS/tokens"  # readable by uid 10001 (see the file)
PROJECT=logpct$$
compose() {
  LOGP_IMAGE=$IMAGE LOGP_SECRETS=$SECRETS LOGP_PUBLISH=127.0.0.1:$PORT \
    podman-compose -p "$PROJECT" -f "$REPO/deploy/docker-compose.yml" \
    -f "$REPO/deploy/docker-compose.tls.yml" "$@"
}
# (podman-compose 1.0.3's down leaves the project's network behind, and a volume whose
# container was restarting.)
compose_down() {
  compose down -v >/dev/null 2>&1 || true
  podman volume rm -f "${PROJECT}_logp-data" >/dev/null 2>&1 || true
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
}
trap 'compose_down; cleanup' EXIT
compose up -d >"$WORK/compose.log" 2>&1 || {
  cat "$WORK/compose.log"
  fail "podman-compose up failed"
}
CNAME=$(podman ps --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}' | head -1)
[[ -n $CNAME ]] || fail "compose started no container: $(cat "$WORK/compose.log")"
TLS=(--tls_ca_file="$SECRETS/ca.pem" --tls_cert_file="$SECRETS/client-ct.pem"
  --tls_key_file="$SECRETS/client-ct.key")
CTL=("$LOGPCTL" --server="localhost:$PORT" "${TLS[@]}")
for _ in $(seq 600); do
  [[ $("${CTL[@]}" health 2>/dev/null) == SERVING ]] && break
  sleep 0.1
done
[[ $("${CTL[@]}" health 2>/dev/null) == SERVING ]] || fail "compose: logpd never SERVING over mTLS"
# Plaintext, or TLS without a client certificate, does not get in; a client certificate without
# the token is UNAUTHENTICATED; with both, the tenant's calls work.
if "$LOGPCTL" --server="127.0.0.1:$PORT" health >/dev/null 2>&1; then fail "compose: plaintext got in"; fi
if "$LOGPCTL" --server="localhost:$PORT" --tls_ca_file="$SECRETS/ca.pem" health >/dev/null 2>&1; then
  fail "compose: TLS without a client certificate got in"
fi
rc=0
"${CTL[@]}" datasets list >/dev/null 2>"$WORK/unauth.err" || rc=$?
[[ $rc == 1 ]] && grep -q UNAUTHENTICATED "$WORK/unauth.err" || fail "compose: no token was not UNAUTHENTICATED"
DS=$("${CTL[@]}" --token="$TOKEN" --json datasets upload "$WORK/few.csv" --kind=binary | field id)
[[ $DS == ds-* ]] || fail "compose: upload with the token failed"
# The health check on the plaintext health port, from inside the container.
podman healthcheck run "$CNAME" >/dev/null || fail "compose: the health check on :8081 failed"
t0=$(now_ms)
compose stop >/dev/null 2>&1 || fail "compose stop failed"
echo "compose stop: $(($(now_ms) - t0)) ms"
[[ $(podman inspect "$CNAME" --format '{{.State.ExitCode}}') == 0 ]] || fail "compose: not exit 0"
podman logs "$CNAME" 2>&1 | grep -q "logpd stopped cleanly" || fail "compose: no clean stop"
if podman logs "$CNAME" 2>&1 | grep -q "$TOKEN"; then fail "compose: the token is in the log"; fi
compose_down

# --- compose: deploy/docker-compose.replicas.yml, three replicas on one PostgreSQL catalogue ---
replicas_t0=$(now_ms)
t0=$(now_ms)
buildah bud --isolation=chroot --format=docker --layers --pull=never -t "$PG_IMAGE" \
  -f "$REPO/deploy/postgres/Containerfile" "$REPO/deploy/postgres" >"$WORK/pg-build.log" 2>&1 || {
  tail -40 "$WORK/pg-build.log"
  fail "buildah bud of deploy/postgres failed"
}
echo "PostgreSQL image built in $((($(now_ms) - t0) / 1000)) s," \
  "$(($(podman image inspect "$PG_IMAGE" --format '{{.Size}}') / 1000000)) MB"
PGPASSWORD_CT=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
printf 'PGPASSWORD=%s\n' "$PGPASSWORD_CT" >"$WORK/postgres.env"
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
RPORTS=("$(free_port)" "$(free_port)" "$(free_port)")
RPROJECT=logpctr$$
rcompose() {
  LOGP_IMAGE=$IMAGE LOGP_POSTGRES_IMAGE=$PG_IMAGE LOGP_PG_ENV=$WORK/postgres.env \
    LOGP_PUBLISH_1=127.0.0.1:${RPORTS[0]} LOGP_PUBLISH_2=127.0.0.1:${RPORTS[1]} \
    LOGP_PUBLISH_3=127.0.0.1:${RPORTS[2]} \
    podman-compose -p "$RPROJECT" -f "$REPO/deploy/docker-compose.replicas.yml" "$@"
}
rcompose_down() {
  rcompose down -v >/dev/null 2>&1 || true
  podman volume rm -f "${RPROJECT}_logp-shared" "${RPROJECT}_logp-pg" >/dev/null 2>&1 || true
  podman network rm -f "${RPROJECT}_default" >/dev/null 2>&1 || true
}
trap 'rcompose_down; compose_down; cleanup' EXIT
container_of() {
  podman ps -a --filter "label=io.podman.compose.project=$RPROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1
}
# podman-compose 1.0.3 starts the services in order but does not wait for depends_on's
# service_healthy: PostgreSQL first, until healthy, then the replicas (as docker compose does).
t0=$(now_ms)
rcompose up -d postgres >"$WORK/rcompose.log" 2>&1 || {
  cat "$WORK/rcompose.log"
  fail "podman-compose up postgres failed"
}
PGC=$(container_of postgres)
[[ -n $PGC ]] || fail "compose started no postgres container: $(cat "$WORK/rcompose.log")"
for _ in $(seq 300); do
  podman healthcheck run "$PGC" >/dev/null 2>&1 && break
  sleep 0.2
done
podman healthcheck run "$PGC" >/dev/null 2>&1 ||
  fail "PostgreSQL never healthy: $(podman logs "$PGC" 2>&1 | tail -5)"
echo "replicas compose: PostgreSQL healthy $(($(now_ms) - t0)) ms after up"
rcompose up -d >>"$WORK/rcompose.log" 2>&1 || {
  cat "$WORK/rcompose.log"
  fail "podman-compose up of the replicas failed"
}
NAMES=()
for i in 1 2 3; do
  NAMES+=("$(container_of "logpd-$i")")
  [[ -n ${NAMES[-1]} ]] || fail "compose started no logpd-$i: $(cat "$WORK/rcompose.log")"
done
rctl() {  # rctl I ARGS...: logpctl through replica I (0, 1, 2)
  local i=$1
  shift
  "$LOGPCTL" --server="127.0.0.1:${RPORTS[$i]}" "$@"
}
for i in 0 1 2; do
  for _ in $(seq 600); do
    [[ $(rctl "$i" health 2>/dev/null) == SERVING ]] && break
    sleep 0.1
  done
  [[ $(rctl "$i" health 2>/dev/null) == SERVING ]] || {
    podman logs "${NAMES[$i]}" 2>&1 | tail -10
    fail "replica $((i + 1)) never SERVING"
  }
done
echo "replicas compose: three replicas SERVING $(($(now_ms) - t0)) ms after up"
for i in 0 1 2; do
  podman logs "${NAMES[$i]}" >"$WORK/rlog$i" 2>&1
  grep -q "catalogue: PostgreSQL logp@postgres:5432/logp" "$WORK/rlog$i" ||
    fail "replica $((i + 1)) is not on the PostgreSQL catalogue"
done
[[ $(cat "$WORK"/rlog? | grep -c "migrated from version 0") == 1 ]] ||
  fail "not exactly one replica migrated the new catalogue"
# A dataset uploaded through replica 1 is the same dataset through 2 and 3; a model trained
# through replica 2 scores the same through all three; a list of the three, round robin, sees
# both; the rows are in PostgreSQL; no SQLite catalogue on the shared volume.
DS=$(rctl 0 --json datasets upload "$WORK/data.csv" --kind=binary --name=replicas | field id)
[[ $DS == ds-* ]] || fail "replicas: the upload through replica 1 gave no id"
HASH=$(rctl 0 --json datasets get "$DS" | field contentHash)
for i in 1 2; do
  [[ $(rctl "$i" --json datasets get "$DS" | field contentHash) == "$HASH" ]] ||
    fail "replica $((i + 1)) does not see the dataset uploaded through replica 1"
done
J=$(rctl 1 --json jobs create --dataset="$DS" --family=bernoulli | field id)
rctl 1 jobs watch "$J" >/dev/null || fail "replicas: the job created through replica 2 failed"
M=$(rctl 2 --json jobs get "$J" | field modelId)
[[ $M == model-* ]] || fail "replica 3 sees no model of job $J"
S=()
for i in 0 1 2; do
  S+=("$(rctl "$i" models score "$M" "$WORK/few.csv" --kind=binary)")
  [[ $(wc -l <<<"${S[$i]}") -ge 20 && ${S[$i]} == "${S[0]}" ]] ||
    fail "replica $((i + 1)) scores model $M differently or not at all"
done
LIST=$("$LOGPCTL" --server="127.0.0.1:${RPORTS[0]},127.0.0.1:${RPORTS[1]},127.0.0.1:${RPORTS[2]}" \
  --json datasets list)
grep -q "\"id\":\"$DS\"" <<<"$LIST" || fail "the round-robin list of replicas does not list $DS"
rsql() { podman exec "$PGC" psql -U postgres -d logp -tAc "$1"; }
[[ $(rsql "SELECT count(*) FROM datasets WHERE id = '$DS'") == 1 ]] || fail "no dataset row"
[[ $(rsql "SELECT count(*) FROM models WHERE id = '$M'") == 1 ]] || fail "no model row"
podman exec "${NAMES[0]}" ls /data >"$WORK/data-ls"
grep -qx datasets "$WORK/data-ls" || fail "no datasets/ on the shared volume: $(<"$WORK/data-ls")"
if grep -q catalog.db "$WORK/data-ls"; then fail "a SQLite catalogue on the shared volume"; fi
t0=$(now_ms)
rcompose stop >/dev/null 2>&1 || fail "podman-compose stop of the replicas failed"
echo "replicas compose stop (three replicas, then PostgreSQL): $(($(now_ms) - t0)) ms"
for name in "${NAMES[@]}" "$PGC"; do
  [[ $(podman inspect "$name" --format '{{.State.ExitCode}}') == 0 ]] || fail "$name: not exit 0"
  if podman logs "$name" 2>&1 | grep -q "$PGPASSWORD_CT"; then fail "$name logs the password"; fi
done
for name in "${NAMES[@]}"; do
  podman logs "$name" 2>&1 | grep -q "logpd stopped cleanly" || fail "$name: no clean stop"
done
# Its last log lines may reach `podman logs` a moment after the container has exited.
pg_clean=
for _ in $(seq 25); do
  podman logs "$PGC" 2>&1 | grep -q "database system is shut down" && { pg_clean=1; break; }
  sleep 0.2
done
[[ -n $pg_clean ]] || fail "PostgreSQL: no clean stop: $(podman logs "$PGC" 2>&1 | tail -n 5)"
rcompose_down
echo "replicas compose, all of it (build, up, checks, stop, down): $((($(now_ms) - replicas_t0) / 1000)) s"

# Keep the layers the two tags use (the next build reuses them), not those of earlier builds.
podman image prune -f >/dev/null 2>&1 || true
echo "1 passed, 0 failed"
