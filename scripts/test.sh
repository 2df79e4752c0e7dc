#!/usr/bin/env bash
# The whole suite against real engines, a real registry and real Redis (started here by the
# testbed), on SQLite and then on PostgreSQL. Stops what the testbed started when done.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev || exit 1
source scripts/test-env.sh
PY=.venv/bin/python

$PY -m dockmon_site.testbed up || { echo "testbed failed to start" >&2; exit 1; }
if [ "${DOCKMON_KEEP_TESTBED:-0}" != 1 ]; then
    trap '$PY -m dockmon_site.testbed down >/dev/null 2>&1 || true' EXIT
fi
PG_URL=$($PY -c 'from dockmon_site.testbed import Testbed; print(Testbed.load().database_url)')

status=0
echo "== ruff"
.venv/bin/ruff check . || status=1
echo "== migrations are complete"
$PY manage.py makemigrations --check --dry-run || status=1

echo "== pytest on SQLite"
$PY -m pytest -q -p no:cacheprovider "$@" || status=1

echo "== pytest on PostgreSQL ($PG_URL)"
DATABASE_URL="$PG_URL" DB_CONN_MAX_AGE=0 $PY -m pytest -q -p no:cacheprovider "$@" || status=1

if [ $status = 0 ]; then echo "== all green"; else echo "== FAILED" >&2; fi
exit $status
