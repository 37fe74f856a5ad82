#!/usr/bin/env bash
# Makes sure the PostgreSQL server the tests use is accepting connections.
# Under CI=true an unreachable server is a failure; elsewhere it is a warning, and the
# PostgreSQL suites skip with a visible message.
set -uo pipefail
url="${FLOWCHAIN_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

reachable() {
  node -e "
    const { Client } = require('pg');
    const c = new Client({ connectionString: process.argv[1], connectionTimeoutMillis: 3000 });
    c.connect().then(() => c.query('select 1')).then(() => c.end()).then(() => process.exit(0), () => process.exit(1));
  " "$url" 2>/dev/null
}

if reachable; then echo "PostgreSQL is up at ${url%%\?*}"; exit 0; fi

if [ -z "${FLOWCHAIN_PG_URL:-}" ] && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  echo "Starting PostgreSQL ${version} (main)..."
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do
    if reachable; then echo "PostgreSQL is up."; exit 0; fi
    sleep 1
  done
fi

if [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL is not reachable at ${url} and CI=true: failing." >&2
  exit 1
fi
echo "PostgreSQL is not reachable at ${url}: its test suites will be skipped." >&2
exit 0
