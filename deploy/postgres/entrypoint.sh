#!/bin/bash
# The entrypoint of deploy/postgres/Containerfile: PostgreSQL 15 serving logpd's catalogue.
#
# First start (no $PGDATA/PG_VERSION): initdb (UTF-8, C.UTF-8, data checksums), then, on a
# server that listens on a private Unix socket only, the role `logp` with the password
# $PGPASSWORD (scram-sha-256) and the database `logp` it owns. pg_hba.conf lets that role reach
# that database over the network with its password, and nobody else anything but local
# connections of the OS user postgres (peer: `psql -U postgres` inside the container, pg_dump for
# backups). The password is read at this first start only.
# Every start: postgres on port 5432 of every interface of the container (only the compose
# network or the pod network reaches them: publish nothing), the Unix socket in
# /var/run/postgresql. SIGTERM or SIGINT: a fast shutdown (open transactions roll back, clients
# are disconnected, a checkpoint, exit 0); PostgreSQL's own reaction to SIGTERM, the smart
# shutdown, would wait for logpd's pooled connections to close, which they never do.
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
: "${PGDATA:?PGDATA is not set}"

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  if [[ -z ${PGPASSWORD:-} ]]; then
    echo "logp-postgres: the first start needs PGPASSWORD, the password of the role logp" >&2
    exit 1
  fi
  if [[ $PGPASSWORD =~ [[:cntrl:]] ]]; then
    echo "logp-postgres: PGPASSWORD holds a control character (a line break?)" >&2
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  "$bin/initdb" --pgdata="$PGDATA" --username=postgres --auth-local=peer \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --data-checksums >/dev/null
  cat >"$PGDATA/pg_hba.conf" <<'HBA'
# TYPE  DATABASE  USER  ADDRESS  METHOD
local   all       all            peer
host    logp      logp  all      scram-sha-256
HBA
  socket=$(mktemp -d)
  "$bin/pg_ctl" --pgdata="$PGDATA" --wait --silent \
    --options="-c listen_addresses='' -c unix_socket_directories='$socket'" start
  # psql reads the password from its environment (\getenv): it is on no command line.
  LOGP_ROLE_PASSWORD=$PGPASSWORD "$bin/psql" --no-psqlrc --quiet --host="$socket" \
    --username=postgres --dbname=postgres --set=ON_ERROR_STOP=1 <<'SQL'
\getenv password LOGP_ROLE_PASSWORD
CREATE ROLE logp LOGIN PASSWORD :'password';
CREATE DATABASE logp OWNER logp;
SQL
  "$bin/pg_ctl" --pgdata="$PGDATA" --wait --silent --mode=fast stop
  rmdir "$socket"
  echo "logp-postgres: made the database logp (owner logp) in $PGDATA"
fi
unset PGPASSWORD

"$bin/postgres" -D "$PGDATA" -c listen_addresses='*' \
  -c unix_socket_directories=/var/run/postgresql &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || true' TERM INT
set +e
while :; do
  wait "$pid"
  status=$?
  kill -0 "$pid" 2>/dev/null || break  # a trapped signal interrupted the wait
done
exit "$status"
