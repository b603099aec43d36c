#!/usr/bin/env bash
# Process-level test of logpd on the PostgreSQL catalogue (--catalog=postgresql://...), against a
# private server (tests/postgres_server.sh): an upload, a training job and a score through
# logpctl; the rows are in PostgreSQL and no SQLite catalogue is made; after a restart (SIGTERM,
# then kill -9) everything is still there and scores the same, and new jobs go on from there. A
# --catalog that is not a URI, or names a server that is not there, stops logpd at start with
# exit 1 and says why.
# Usage: postgres_test.sh LOGPD LOGPCTL POSTGRES_SERVER_SH
set -euo pipefail
LOGPD=$1
LOGPCTL=$2
PG=(bash "$3")
WORK=$(mktemp -d /tmp/logp-pgproc.XXXXXX)
PGDIR=$(mktemp -d /tmp/logp-pg-XXXXXX)
PID=
trap '[[ -z $PID ]] || kill -9 $PID 2>/dev/null || true; "${PG[@]}" stop "$PGDIR"; rm -rf "$WORK"' EXIT
source "$(dirname "$0")/lib.sh"

"${PG[@]}" start "$PGDIR" $$ || fail "PostgreSQL did not start"
"${PG[@]}" createdb "$PGDIR" logp
URI="postgresql://postgres@/logp?host=$PGDIR"
sql() { "${PG[@]}" psql "$PGDIR" logp -c "$1"; }

start() {  # start N
  launch "$WORK/log$1" "$WORK/data" --catalog="$URI" --progress_interval_seconds=0.1
}

gen 7 500 >"$WORK/data.csv"
start 1
grep -q "catalogue: PostgreSQL postgres@$PGDIR/logp" "$WORK/log1" || fail "no catalogue log line"
grep -q "PostgreSQL schema of postgres@$PGDIR/logp migrated from version 0" "$WORK/log1" ||
  fail "no migration log line"
DS=$("${CTL[@]}" --json datasets upload "$WORK/data.csv" --kind=binary --name=pg | field id)
[[ $DS == ds-* ]] || fail "upload gave no id"
HASH=$("${CTL[@]}" --json datasets get "$DS" | field contentHash)
J1=$("${CTL[@]}" --json jobs create --dataset="$DS" --family=bernoulli | field id)
"${CTL[@]}" jobs watch "$J1" >/dev/null || fail "the bernoulli job did not succeed"
M1=$(job "$J1" | field modelId)
[[ $M1 == model-* ]] || fail "job $J1 published no model"
SCORE1=$("${CTL[@]}" models score "$M1" "$WORK/data.csv" --kind=binary | sed -n 1,5p)
[[ -n $SCORE1 ]] || fail "no score"

# The rows are in PostgreSQL, with the job's events; there is no SQLite catalogue.
[[ $(sql "SELECT count(*) FROM datasets WHERE id = '$DS'") == 1 ]] || fail "no dataset row"
[[ $(sql "SELECT count(*) FROM models WHERE id = '$M1'") == 1 ]] || fail "no model row"
[[ $(sql "SELECT count(*) FROM job_events WHERE job_id = '$J1'") -ge 3 ]] || fail "no job events"
[[ ! -e $WORK/data/catalog.db ]] || fail "logpd made a SQLite catalogue too"
EVENTS1=$(sql "SELECT count(*) FROM job_events WHERE job_id = '$J1'")

kill -TERM "$PID"
wait "$PID" || fail "logpd exited with $? on SIGTERM"
PID=
grep -q "stopped cleanly" "$WORK/log1" || fail "no clean stop"

start 2
grep -q "migrated" "$WORK/log2" && fail "the second start migrated again"
[[ $("${CTL[@]}" --json datasets get "$DS" | field contentHash) == "$HASH" ]] ||
  fail "the dataset changed across the restart"
[[ $(state "$J1") == JOB_STATE_SUCCEEDED ]] || fail "job $J1 lost its state"
[[ $("${CTL[@]}" models score "$M1" "$WORK/data.csv" --kind=binary | sed -n 1,5p) == "$SCORE1" ]] ||
  fail "the model scores differently after the restart"
[[ $("${CTL[@]}" --json jobs watch "$J1" --from_seq=1 | grep -o '"seq":"[0-9]*"' | wc -l) == \
  "$EVENTS1" ]] ||
  fail "job $J1's events changed across the restart"
# A second job, then kill -9: it too survives.
J2=$("${CTL[@]}" --json jobs create --dataset="$DS" --family=bernoulli | field id)
"${CTL[@]}" jobs watch "$J2" >/dev/null || fail "the second job did not succeed"
M2=$(job "$J2" | field modelId)
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
PID=

start 3
[[ $(state "$J2") == JOB_STATE_SUCCEEDED ]] || fail "job $J2 lost its state after kill -9"
"${CTL[@]}" --json models get "$M2" | grep -q "\"id\":\"$M2\"" || fail "model $M2 lost"
LIST=$("${CTL[@]}" --json jobs list)
[[ $(grep -o '"id":"job-[^"]*"' <<<"$LIST" | head -2 | cut -d'"' -f4 | tr '\n' ' ') == "$J2 $J1 " ]] ||
  fail "jobs are not listed newest first: $LIST"
kill -TERM "$PID"
wait "$PID" || fail "the third logpd exited with $?"
PID=

# Bad --catalog values stop logpd at start, saying why (and never echoing a password).
rc=0
"$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 --catalog="mysql://u:s3cret@h/db" \
  >"$WORK/bad1" 2>&1 || rc=$?
[[ $rc == 1 ]] || fail "a mysql:// catalogue: exit $rc"
grep -q "INVALID_ARGUMENT.*PostgreSQL URI" "$WORK/bad1" || fail "no reason: $(cat "$WORK/bad1")"
grep -q s3cret "$WORK/bad1" && fail "the password was echoed"
rc=0
"$LOGPD" --data_dir="$WORK/data" --listen=127.0.0.1:0 \
  --catalog="postgresql://postgres:s3cret@/logp?host=$WORK/no-server" >"$WORK/bad2" 2>&1 || rc=$?
[[ $rc == 1 ]] || fail "an unreachable catalogue: exit $rc"
grep -q "UNAVAILABLE: catalogue: cannot connect to PostgreSQL at postgres@$WORK/no-server/logp" \
  "$WORK/bad2" || fail "no reason: $(cat "$WORK/bad2")"
grep -q s3cret "$WORK/bad2" && fail "the password was echoed"
echo "1 passed, 0 failed"
