#!/usr/bin/env bash
# A throwaway PostgreSQL 15 + PostGIS cluster with pgstac installed, for the catalog tests.
#
# usage: pgstac-cluster.sh start DIR     initdb DIR/data, start it, install pgstac; prints the URL
#        pgstac-cluster.sh stop DIR      stop it (DIR is left for the caller to remove)
#        pgstac-cluster.sh restart DIR   stop (if running) and start again (same data)
#        pgstac-cluster.sh url DIR       the URL of a started cluster
#
# The server listens only on a Unix socket in DIR (no TCP), trust authentication, database
# `downlink`, superuser `postgres`; the URL printed is
#   postgresql://postgres@/downlink?host=DIR
# pgstac is installed with `pypgstac migrate` from a venv built from
# tests/clients/requirements-pgstac.txt (exact pins) in $PGSTAC_VENV (default:
# target/pgstac/venv in the repository), created once and reused while the requirements match.
#
# With $PGSTAC_OWNER_PID set, `start` also leaves a watchdog that stops the cluster and removes
# DIR once that process has exited (a test run that dies leaves nothing behind).
#
# Needs the Debian packages postgresql-15, postgresql-15-postgis-3 and python3-venv. When run as
# root (initdb refuses root), the cluster is owned by and runs as the `postgres` user.
set -euo pipefail

CMD=${1:?usage: pgstac-cluster.sh start|stop|restart|url DIR}
DIR=${2:?usage: pgstac-cluster.sh start|stop|restart|url DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PY=${PYTHON:-python3}
REQ=$REPO/tests/clients/requirements-pgstac.txt
VENV=${PGSTAC_VENV:-$REPO/target/pgstac/venv}

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
URL="postgresql://postgres@/downlink?host=$DIR"

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_ctl_() {
  as_owner "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 "$@"
}

venv() {
  if [ ! -x "$VENV/bin/pypgstac" ] || ! cmp -s "$REQ" "$VENV/requirements.txt"; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
    cp "$REQ" "$VENV/requirements.txt"
  fi
}

case "$CMD" in
  start)
    [ -x "$PGBIN/initdb" ] || { echo "pgstac-cluster: no $PGBIN/initdb (install postgresql-15)" >&2; exit 1; }
    [ -f /usr/share/postgresql/15/extension/postgis.control ] \
      || { echo "pgstac-cluster: PostGIS is not installed (install postgresql-15-postgis-3)" >&2; exit 1; }
    venv
    if [ "$(id -u)" = 0 ]; then chown postgres: "$DIR"; fi
    as_owner "$PGBIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log"
    {
      echo "listen_addresses = ''"
      echo "unix_socket_directories = '$DIR'"
      echo "fsync = off"
      echo "shared_buffers = 128MB"
    } >>"$DIR/data/postgresql.conf"
    pg_ctl_ start >/dev/null
    as_owner "$PGBIN/psql" -q -h "$DIR" -U postgres -d postgres -v ON_ERROR_STOP=1 \
      -c "CREATE DATABASE downlink" >/dev/null
    as_owner "$PGBIN/psql" -q -h "$DIR" -U postgres -d downlink -v ON_ERROR_STOP=1 \
      -c "CREATE EXTENSION postgis" >/dev/null
    "$VENV/bin/pypgstac" migrate --dsn "$URL" >"$DIR/migrate.log" 2>&1 \
      || { cat "$DIR/migrate.log" >&2; exit 1; }
    if [ -n "${PGSTAC_OWNER_PID:-}" ]; then
      nohup setsid bash -c '
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        "$2" stop "$3" >/dev/null 2>&1 || true
        rm -rf "$3"' watchdog "$PGSTAC_OWNER_PID" "$HERE/pgstac-cluster.sh" "$DIR" \
        </dev/null >/dev/null 2>&1 &
    fi
    echo "$URL"
    ;;
  stop)
    if [ -f "$DIR/data/postmaster.pid" ]; then pg_ctl_ stop -m fast >/dev/null; fi
    ;;
  restart)
    if [ -f "$DIR/data/postmaster.pid" ]; then
      pg_ctl_ restart -m fast >/dev/null
    else
      pg_ctl_ start >/dev/null
    fi
    ;;
  url)
    echo "$URL"
    ;;
  *)
    echo "usage: pgstac-cluster.sh start|stop|restart|url DIR" >&2
    exit 2
    ;;
esac
