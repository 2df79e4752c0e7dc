#!/usr/bin/env bash
# Run DockMon in the foreground: daphne (web + WebSockets), a Celery worker, beat and the monitor.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh || exit 1
PY=.venv/bin/python
export DOCKMON_DATA_DIR="${DOCKMON_DATA_DIR:-$PWD/data}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
PORT="${PORT:-8000}"
mkdir -p "$DOCKMON_DATA_DIR"
pids=()

stop_all() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
}
trap stop_all INT TERM EXIT

redis_ok() { $PY -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()" "$REDIS_URL" 2>/dev/null; }
if ! redis_ok; then
    redis_port=$($PY -c "import sys; from urllib.parse import urlparse; print(urlparse(sys.argv[1]).port or 6379)" "$REDIS_URL")
    redis_host=$($PY -c "import sys; from urllib.parse import urlparse; print(urlparse(sys.argv[1]).hostname or '')" "$REDIS_URL")
    if command -v redis-server >/dev/null && { [ "$redis_host" = 127.0.0.1 ] || [ "$redis_host" = localhost ]; }; then
        echo "Starting redis-server on 127.0.0.1:$redis_port (nothing answered at $REDIS_URL)"
        redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$DOCKMON_DATA_DIR" --logfile "$DOCKMON_DATA_DIR/redis.log" &
        pids+=($!)
        for _ in $(seq 50); do redis_ok && break; sleep 0.1; done
    fi
    if ! redis_ok; then
        echo "No Redis answers at $REDIS_URL. Install it (apt-get install redis-server) or set REDIS_URL to a running server." >&2
        exit 1
    fi
fi

$PY manage.py migrate --noinput -v 0 || exit 1
$PY manage.py ensure_admin || exit 1
$PY manage.py collectstatic --noinput -v 0 || exit 1
$PY manage.py add_local_host || true

echo "DockMon on http://127.0.0.1:$PORT${DOCKMON_URL_PREFIX:-}/  (Ctrl-C stops everything)"
# Behind a reverse proxy on a sub-path (e.g. /dockmon): the proxy passes the path unchanged.
.venv/bin/daphne -b 127.0.0.1 -p "$PORT" --root-path "${DOCKMON_URL_PREFIX:-}" dockmon_site.asgi:application & pids+=($!)
.venv/bin/celery -A dockmon_site worker -l warning --pool "${CELERY_POOL:-threads}" --concurrency "${CELERY_CONCURRENCY:-4}" & pids+=($!)
.venv/bin/celery -A dockmon_site beat -l warning --scheduler django_celery_beat.schedulers:DatabaseScheduler --pidfile= & pids+=($!)
$PY manage.py monitor & pids+=($!)

# Stop everything as soon as one part dies (so a supervisor can restart the whole).
wait -n "${pids[@]}"
echo "A DockMon process exited; stopping the others." >&2
exit 1
