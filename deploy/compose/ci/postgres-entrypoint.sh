#!/bin/bash
# First start: initdb with POSTGRES_USER as the superuser (password POSTGRES_PASSWORD), network
# access with scram-sha-256, UTF-8, and POSTGRES_DB created — as the official image does.
set -euo pipefail
# Like the official image: `postgres -c …` starts the server with those settings; any other
# command (psql, a shell) is run as given.
if [ "$#" -gt 0 ] && [ "$1" != "postgres" ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi
[ "${1:-}" = "postgres" ] && shift
: "${POSTGRES_USER:=postgres}" "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  if [ "$POSTGRES_DB" != "postgres" ]; then
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    createdb -U "$POSTGRES_USER" "$POSTGRES_DB" || true
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
fi
exec postgres -D "$PGDATA" "$@"
