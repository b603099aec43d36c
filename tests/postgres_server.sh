#!/usr/bin/env bash
# A private PostgreSQL server for tests: initdb into a fresh directory, reachable only through a
# Unix socket in that directory (no TCP port), fsync off; superuser "postgres", trust
# authentication. Its URIs: postgresql://postgres@/DB?host=DIR
#
# PostgreSQL refuses to run as root: as root, the server runs as the user nobody, and DIR is
# given to it. A watcher stops the server and removes DIR once the process that started it is
# gone (a test that crashed or was killed leaves nothing running), within about a second.
#
# Usage:
#   postgres_server.sh start DIR OWNER_PID   DIR: a new, empty directory (short path: the socket's
#                                            name must fit in 107 bytes)
#   postgres_server.sh stop DIR              stops the server and removes DIR
#   postgres_server.sh createdb DIR NAME
#   postgres_server.sh psql DIR DB [psql arguments]   unaligned, tuples only, no .psqlrc
# The binaries: LOGP_PG_BIN, else the newest /usr/lib/postgresql/*/bin (Debian's postgresql-15).
set -euo pipefail

bin=${LOGP_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}
if [[ -z $bin || ! -x $bin/initdb ]]; then
  echo "postgres_server.sh: no PostgreSQL server binaries (initdb) in '${bin}'" \
    "(scripts/install-deps.sh installs postgresql-15; or set LOGP_PG_BIN)" >&2
  exit 1
fi

# Runs a server-side command as the server's user (from /, which it can read whoever it is).
as_server() {
  if [[ $(id -u) == 0 ]]; then
    (cd / && runuser -u nobody -- "$@")
  else
    "$@"
  fi
}

cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || {
  echo "usage: $0 start DIR OWNER_PID | stop DIR | createdb DIR NAME | psql DIR DB [args]" >&2
  exit 2
}
case "$cmd" in
  start)
    owner=${3:?start needs the owner pid}
    mkdir -p "$dir"
    [[ $(id -u) == 0 ]] && chown nobody "$dir"
    if ! as_server "$bin/initdb" --no-sync --auth=trust --username=postgres --encoding=UTF8 \
      --locale=C -D "$dir/data" >"$dir/initdb.log" 2>&1; then
      cat "$dir/initdb.log" >&2
      exit 1
    fi
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    if ! as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null; then
      cat "$dir/server.log" >&2 || true
      exit 1
    fi
    # The watcher, in its own session and with no inherited output (a test runner waits for
    # the test's output to close).
    setsid bash "$0" watch "$dir" "$owner" </dev/null >/dev/null 2>&1 &
    ;;
  watch)
    owner=${3:?}
    while kill -0 "$owner" 2>/dev/null && [[ -d $dir/data ]]; do sleep 1; done
    [[ -d $dir/data ]] && exec bash "$0" stop "$dir"
    ;;
  stop)
    if [[ -d $dir/data ]]; then
      as_server "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  createdb)
    "$bin/createdb" -h "$dir" -U postgres "${3:?createdb needs a name}"
    ;;
  psql)
    db=${3:?psql needs a database}
    shift 3
    "$bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$dir" -U postgres -d "$db" "$@"
    ;;
  *)
    echo "$0: unknown command $cmd" >&2
    exit 2
    ;;
esac
