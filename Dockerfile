# One image for every role (web, worker, beat, monitor), chosen by the command.
# Build: docker build --network host -t dockmon .   (put wheels in ./wheels to build offline)
FROM debian:bookworm-slim AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# `wheel[s]` matches nothing when there is no wheels folder, so the same file builds both ways.
# The files pin every package with its hashes (pip checks them). The optional apprise extra is
# in unless the build says --build-arg APPRISE=0.
ARG APPRISE=1
COPY requirements.txt requirements-apprise.txt wheel[s] /tmp/build/
RUN python3 -m venv /venv \
    && set -- -r /tmp/build/requirements.txt \
    && if [ "$APPRISE" = 1 ]; then set -- "$@" -r /tmp/build/requirements-apprise.txt; fi \
    && if ls /tmp/build/*.whl >/dev/null 2>&1; then \
         /venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/build "$@"; \
       else \
         /venv/bin/pip install --no-cache-dir "$@"; \
       fi
COPY . /app
WORKDIR /app
RUN rm -rf /app/wheels /app/data /app/.venv \
    && DOCKMON_DATA_DIR=/tmp/collect SECRET_KEY=collect /venv/bin/python manage.py collectstatic --noinput -v 0

FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 ca-certificates openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin dockmon \
    && mkdir -p /data && chown dockmon /data
COPY --from=build /venv /venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DOCKMON_DATA_DIR=/data \
    STATIC_ROOT=/app/static_collected \
    PORT=8000
USER dockmon
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python3 -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT','8000'), timeout=4)" || exit 1
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
