#!/usr/bin/env bash
# The whole suite against real engines, a real registry and real Redis (started here by the
# testbed), on SQLite and then on PostgreSQL. Stops what the testbed started when done.
#
# The deployment test (pytest -m deploy: builds DockMon's image and runs the compose file on an
# engine of its own) uses no test database, so it runs once, in the background beside the
# SQLite pass, where it mostly waits on apt and image builds.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev || exit 1
source scripts/test-env.sh
PY=.venv/bin/python

$PY -m dockmon_site.testbed up || { echo "testbed failed to start" >&2; exit 1; }
deploy_pid=""
cleanup() {
    [ -n "$deploy_pid" ] && kill -TERM "$deploy_pid" 2>/dev/null
    if [ "${DOCKMON_KEEP_TESTBED:-0}" != 1 ]; then
        $PY -m dockmon_site.testbed down >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
PG_URL=$($PY -c 'from dockmon_site.testbed import Testbed; print(Testbed.load().database_url)')

status=0
echo "== ruff"
.venv/bin/ruff check . || status=1
echo "== migrations are complete"
$PY manage.py makemigrations --check --dry-run || status=1

deploy_log="${DOCKMON_DATA_DIR}/deploy-test.log"
if [ "${DOCKMON_SKIP_DEPLOY_TEST:-0}" != 1 ] && [ $# = 0 ]; then
    mkdir -p "${DOCKMON_DATA_DIR}/deploy"
    DOCKMON_DATA_DIR="${DOCKMON_DATA_DIR}/deploy" DOCKMON_CHANNEL_PREFIX="dmdeploy$$" \
        $PY -m pytest -q -p no:cacheprovider -m deploy dockmon_site/tests/test_deploy.py > "$deploy_log" 2>&1 &
    deploy_pid=$!
fi

echo "== pytest on SQLite"
$PY -m pytest -q -p no:cacheprovider -m "not deploy" "$@" || status=1

echo "== pytest on PostgreSQL ($PG_URL)"
DATABASE_URL="$PG_URL" DB_CONN_MAX_AGE=0 DOCKMON_CHANNEL_PREFIX="dmtestpg$$" \
    $PY -m pytest -q -p no:cacheprovider -m "not deploy" "$@" || status=1

if [ -n "$deploy_pid" ]; then
    echo "== deployment test (image build + docker-compose; ran beside the SQLite pass)"
    wait "$deploy_pid" || status=1
    deploy_pid=""
    tail -n 40 "$deploy_log"
fi

if [ $status = 0 ]; then echo "== all green"; else echo "== FAILED" >&2; fi
exit $status
