#!/usr/bin/env bash
# Restore drill: dump a PostgreSQL database, restore the dump into a NEW database, and check that the
# restored ledger passes `jingtan ledger-check` with exactly the totals of the source.
#
#   scripts/restore-drill.sh SOURCE_URL TARGET_DB_NAME [DUMP_FILE]
#
# SOURCE_URL: postgresql://user@host:port/dbname (libpq form; the +asyncpg suffix is accepted).
# TARGET_DB_NAME is created on the same server and must not exist; drop it yourself after the drill.
# Exit 0 when the restored copy passes and its totals equal the source's; non-zero otherwise.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 SOURCE_URL TARGET_DB_NAME [DUMP_FILE]" >&2
  exit 2
fi
SOURCE_URL="${1/postgresql+asyncpg:/postgresql:}"
TARGET_DB="$2"
DUMP="${3:-$(mktemp -t jingtan-drill-XXXXXX.dump)}"
JINGTAN="${JINGTAN:-jingtan}"

base="${SOURCE_URL%/*}"                     # postgresql://user@host:port
TARGET_URL="$base/$TARGET_DB"
asyncpg() { echo "${1/postgresql:/postgresql+asyncpg:}"; }

echo "1/4 dump (custom format, consistent snapshot): $DUMP" >&2
pg_dump --format=custom --no-owner --no-privileges --file="$DUMP" "$SOURCE_URL"

echo "2/4 create $TARGET_DB and restore into it" >&2
psql --quiet --no-psqlrc --set=ON_ERROR_STOP=1 "$base/postgres" -c "CREATE DATABASE \"$TARGET_DB\""
pg_restore --exit-on-error --no-owner --no-privileges --dbname="$TARGET_URL" "$DUMP"

echo "3/4 ledger-check on the source and on the restored copy" >&2
source_totals=$(JINGTAN_DATABASE_URL="$(asyncpg "$SOURCE_URL")" "$JINGTAN" ledger-check --totals | grep '^{')
restored_totals=$(JINGTAN_DATABASE_URL="$(asyncpg "$TARGET_URL")" "$JINGTAN" ledger-check --totals | grep '^{')

echo "4/4 compare totals" >&2
echo "source:   $source_totals"
echo "restored: $restored_totals"
if [ "$source_totals" != "$restored_totals" ]; then
  echo "restore drill FAILED: totals differ" >&2
  exit 1
fi
echo "restore drill ok"
