#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the tests and print its URL.
# Uses the distribution's server (installed by .ci/run); data lives under $PGROOT.
set -euo pipefail
PGPORT="${PGPORT:-55432}"
PGROOT="${PGROOT:-/tmp/crmhub-pg}"
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] || { echo "PostgreSQL server binaries not found under /usr/lib/postgresql" >&2; exit 1; }
run_as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ ! -s "$PGROOT/data/PG_VERSION" ]; then
  rm -rf "$PGROOT"; mkdir -p "$PGROOT"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGROOT"
  run_as_postgres "$bindir/initdb" -D "$PGROOT/data" -U postgres --auth=trust -E UTF8 >"$PGROOT/initdb.log" 2>&1 \
    || { cat "$PGROOT/initdb.log" >&2; exit 1; }
fi
if ! run_as_postgres "$bindir/pg_ctl" -D "$PGROOT/data" status >/dev/null 2>&1; then
  run_as_postgres "$bindir/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGROOT -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$PGROOT/server.log" >&2; exit 1; }
fi
"$bindir/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='crmhub_test'" | grep -q 1 \
  || "$bindir/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres crmhub_test
echo "postgresql://postgres@127.0.0.1:$PGPORT/crmhub_test"
