#!/usr/bin/env bash
# The whole suite against real engines, a real registry and real Redis (started here by the
# testbed), on SQLite and on PostgreSQL. Stops what the testbeds started when done.
#
# The two database passes run side by side, each with a testbed of its own (engines, registry,
# data dir, Redis database), so that a test that stops or kills "its" engine never disturbs the
# other pass. The deployment test (pytest -m deploy: builds DockMon's image and runs the compose
# file on an engine of its own) uses no test database: it runs once, beside them.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev || exit 1
source scripts/test-env.sh
PY=.venv/bin/python
BASE_DATA="$DOCKMON_DATA_DIR"
mkdir -p "$BASE_DATA"

# The second testbed: its own directory, ports and containerd namespaces.
pg_testbed() {
    env DOCKMON_TESTBED_DIR=/tmp/dockmon-testbed-pg DOCKMON_TESTBED_TAG=pg DOCKMON_TESTBED_ALPHA_PORT=23850 \
        DOCKMON_TESTBED_BETA_PORT=23861 DOCKMON_TESTBED_REGISTRY_PORT=5001 "$@"
}

$PY -m testkit.testbed up || { echo "testbed failed to start" >&2; exit 1; }
pg_testbed $PY -m testkit.testbed up || { echo "second testbed failed to start" >&2; exit 1; }
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    if [ "${DOCKMON_KEEP_TESTBED:-0}" != 1 ]; then
        pg_testbed $PY -m testkit.testbed down >/dev/null 2>&1 || true
        $PY -m testkit.testbed down >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
PG_URL=$($PY -c 'from testkit.testbed import Testbed; print(Testbed.load().database_url)')

status=0
echo "== ruff"
.venv/bin/ruff check . || status=1
echo "== migrations are complete"
$PY manage.py makemigrations --check --dry-run || status=1

started=$(date +%s)
run_deploy=0
if [ "${DOCKMON_SKIP_DEPLOY_TEST:-0}" != 1 ] && [ $# = 0 ]; then
    run_deploy=1
    mkdir -p "$BASE_DATA/deploy"
    DOCKMON_DATA_DIR="$BASE_DATA/deploy" DOCKMON_CHANNEL_PREFIX="dmdeploy$$" REDIS_URL="${DOCKMON_TEST_REDIS_URL_DEPLOY:-redis://127.0.0.1:6379/13}" \
        $PY -m pytest -q -p no:cacheprovider -m deploy dockmon_site/tests/test_deploy.py > "$BASE_DATA/deploy.log" 2>&1 &
    pids+=($!); deploy_pid=$!
fi

mkdir -p "$BASE_DATA/sqlite" "$BASE_DATA/pg"
DOCKMON_DATA_DIR="$BASE_DATA/sqlite" DOCKMON_CHANNEL_PREFIX="dmtestlite$$" \
    $PY -m pytest -q -p no:cacheprovider -m "not deploy" --durations=25 "$@" > "$BASE_DATA/sqlite.log" 2>&1 &
pids+=($!); sqlite_pid=$!
pg_testbed env DOCKMON_DATA_DIR="$BASE_DATA/pg" DOCKMON_CHANNEL_PREFIX="dmtestpg$$" REDIS_URL="${DOCKMON_TEST_REDIS_URL_PG:-redis://127.0.0.1:6379/14}" \
    DOCKMON_SCREENSHOT_DIR="$PWD/artifacts/screenshots-pg" DATABASE_URL="$PG_URL" DB_CONN_MAX_AGE=0 \
    $PY -m pytest -q -p no:cacheprovider -m "not deploy" --durations=25 "$@" > "$BASE_DATA/pg.log" 2>&1 &
pids+=($!); pg_pid=$!

wait "$sqlite_pid" || status=1
echo "== pytest on SQLite"
cat "$BASE_DATA/sqlite.log"
wait "$pg_pid" || status=1
echo "== pytest on PostgreSQL ($PG_URL)"
cat "$BASE_DATA/pg.log"
if [ $run_deploy = 1 ]; then
    wait "$deploy_pid" || status=1
    echo "== deployment test (image build + docker-compose)"
    tail -n 40 "$BASE_DATA/deploy.log"
fi
pids=()
echo "== test passes took $(( $(date +%s) - started )) s"

if [ $status = 0 ]; then echo "== all green"; else echo "== FAILED" >&2; fi
exit $status
