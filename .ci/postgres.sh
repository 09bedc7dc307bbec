#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests and prints its DSN.
# Installs Debian's postgresql package when no server binaries are present.
# Usage: eval "$(.ci/postgres.sh)"   # exports STACKBILL_TEST_POSTGRES_URL
set -euo pipefail
port=${STACKBILL_PG_PORT:-55432}
dir=${STACKBILL_PG_DIR:-/tmp/stackbill-pg}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "installing postgresql from Debian's packages" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if ! as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
  rm -rf "$dir"; mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  as_pg "$bin/initdb" -D "$dir" -A trust -U postgres --no-sync >&2
  as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/log" -w -o "-p $port -k /tmp -c fsync=off -c max_connections=300 -c listen_addresses=127.0.0.1" start >&2
fi
echo "export STACKBILL_TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable'"
