#!/bin/sh
# Role chosen by the first argument: web (migrates first), worker, beat, monitor, or any command.
set -e
role="${1:-web}"
case "$role" in
    web)
        python3 manage.py migrate --noinput
        python3 manage.py ensure_admin
        # The Docker socket mounted into the container is the first host (once).
        python3 manage.py add_local_host || true
        # DOCKMON_URL_PREFIX (e.g. /dockmon): served under that sub-path behind a reverse proxy
        # that passes the path unchanged; links, static files and the WebSocket follow it.
        exec daphne -b "${BIND:-0.0.0.0}" -p "${PORT:-8000}" --proxy-headers --root-path "${DOCKMON_URL_PREFIX:-}" dockmon_site.asgi:application
        ;;
    worker)
        # Threads: DockMon's tasks wait on engines, registries and HTTP checks, so one process with
        # a few threads does the work of a prefork pool in a third of the memory. More workers
        # (containers, machines) scale it out; CELERY_POOL=prefork for one process per task.
        exec celery -A dockmon_site worker -l "${LOG_LEVEL:-info}" --pool "${CELERY_POOL:-threads}" --concurrency "${CELERY_CONCURRENCY:-4}"
        ;;
    beat)
        exec celery -A dockmon_site beat -l "${LOG_LEVEL:-info}" --scheduler django_celery_beat.schedulers:DatabaseScheduler --pidfile=
        ;;
    monitor)
        shift
        exec python3 manage.py monitor "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
