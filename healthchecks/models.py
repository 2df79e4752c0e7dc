"""HTTP health checks, their results, and auto-restart of containers that fail.

Every row refers to a container by its key (a foreign key to containers.Container); when the
container is recreated, healthchecks.signals moves the rows to the new key in the same
transaction.
"""

from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from containers.models import Container
from dockmon_site.crypto import EncryptedTextField, is_undecryptable
from healthchecks.choices import AttemptStatus, CheckStatus, HttpMethod, RestartTrigger, ResultStatus

INTERVAL_MIN, INTERVAL_MAX = 10, 3600
TIMEOUT_MIN, TIMEOUT_MAX = 0.5, 120.0


class HealthCheck(models.Model):
    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="health_checks")
    name = models.CharField(max_length=100, blank=True, default="")
    url = models.CharField(max_length=2000, help_text="http(s)://host[:port]/path; loopback and private addresses allowed, "
                                                      "link-local / cloud metadata addresses never")
    method = models.CharField(max_length=8, choices=HttpMethod.choices, default=HttpMethod.GET)
    expected_status = models.CharField(max_length=200, default="200-399", help_text="Codes and ranges, e.g. 200-299,301")
    body_keyword = models.CharField(max_length=200, blank=True, default="", help_text="Must appear in the response body")
    # JSON object of extra request headers; encrypted because it often carries tokens.
    headers = EncryptedTextField(blank=True, default="")
    basic_auth_user = models.CharField(max_length=200, blank=True, default="")
    basic_auth_password = EncryptedTextField(blank=True, default="")
    timeout_seconds = models.FloatField(default=10.0, validators=[MinValueValidator(TIMEOUT_MIN), MaxValueValidator(TIMEOUT_MAX)])
    interval_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(INTERVAL_MIN), MaxValueValidator(INTERVAL_MAX)]
    )
    follow_redirects = models.BooleanField(default=True)
    verify_tls = models.BooleanField(default=True)
    tls_ca = models.TextField(blank=True, default="", help_text="PEM CA certificate(s) to trust instead of the public ones")
    failure_threshold = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(100)])
    success_threshold = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(100)])
    auto_restart = models.BooleanField(default=False, help_text="Restart the container when this check turns unhealthy")
    enabled = models.BooleanField(default=True)

    # Current state, written by the runner only.
    status = models.CharField(max_length=16, choices=CheckStatus.choices, default=CheckStatus.UNKNOWN)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_response_ms = models.IntegerField(null=True, blank=True)
    last_status_code = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    consecutive_failures = models.IntegerField(default=0)
    consecutive_successes = models.IntegerField(default=0)
    next_due_at = models.DateTimeField(default=timezone.now)
    # The lease: whoever holds lease_owner until lease_expires_at is the only one running this
    # check. Taken with a conditional UPDATE (services.claim), so two workers never share it.
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # A method other than GET/HEAD goes out only while the administrator who last set it (with
    # the URL and headers it goes to) still is one; cleared whenever a non-administrator or code
    # that names no approver changes any of them (see save()).
    method_approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                           related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Secrets follow their destination: stored values that are not supplied again are cleared
    # when the check starts pointing elsewhere (another scheme, host or port, TLS verification
    # turned off, another CA). The audit log keeps only their names (accounts.audit).
    SECRET_FIELDS = ("headers", "basic_auth_password")
    DESTINATION_FIELDS = ("url", "verify_tls", "tls_ca")
    METHOD_FIELDS = ("url", "method", "headers")

    class Meta:
        ordering = ["container__name", "id"]
        indexes = [models.Index(fields=["enabled", "next_due_at"], name="hc_due_idx")]

    def __str__(self) -> str:
        return f"{self.name or self.url} ({self.container_id})"

    def save(self, *args, **kwargs):
        """Apply the two rules of a changed target before writing: secrets not supplied again
        are dropped when the destination changes; an unsafe method loses its approval when its
        URL, method or headers change without an administrator named as approver.

        Callers say what they vouch for with attributes set before save():
        `secrets_supplied` (names of SECRET_FIELDS given anew in this change) and
        `method_approver` (the administrator approving a method other than GET/HEAD)."""
        loaded = getattr(self, "_loaded", None)
        changed: set[str] = set()
        cleared: list[str] = []
        if self.pk is not None and loaded is not None:
            before = {name: loaded.get(name, getattr(self, name)) for name in self.DESTINATION_FIELDS}
            supplied = set(getattr(self, "secrets_supplied", ()))
            if destination_of(before["url"], before["verify_tls"], before["tls_ca"]) != self.destination():
                for name in self.SECRET_FIELDS:
                    # A value different from the stored one was given in this change, too.
                    # An undecryptable value counts as stored: its ciphertext must not come
                    # back to life at the new destination if the old key is restored.
                    value = getattr(self, name)
                    if name not in supplied and (value or is_undecryptable(value)) and value == loaded.get(name):
                        setattr(self, name, "")
                        cleared.append(name)
            changed = {name for name in self.METHOD_FIELDS if name in loaded and loaded[name] != getattr(self, name)}
        approved_before = self.method_approved_by_id
        if str(self.method).upper() in ("GET", "HEAD"):
            self.method_approved_by = None
        else:
            approver = getattr(self, "method_approver", None) or _requesting_administrator()
            if approver is not None:
                self.method_approved_by = approver
            elif self.pk is None or changed:
                self.method_approved_by = None
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            extra = ["method_approved_by"] if self.method_approved_by_id != approved_before else []
            kwargs["update_fields"] = list({*update_fields, *cleared, *extra})
        super().save(*args, **kwargs)
        self.secrets_cleared = cleared
        self._loaded = {name: getattr(self, name) for name in {*self.DESTINATION_FIELDS, *self.SECRET_FIELDS,
                                                               *self.METHOD_FIELDS}}
        self.secrets_supplied = ()
        self.method_approver = None

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded = {name: instance.__dict__.get(name) for name in {*cls.DESTINATION_FIELDS, *cls.SECRET_FIELDS,
                                                                          *cls.METHOD_FIELDS}
                            if name in instance.__dict__}
        return instance

    def refresh_from_db(self, *args, **kwargs):
        super().refresh_from_db(*args, **kwargs)
        self._loaded = {name: getattr(self, name) for name in {*self.DESTINATION_FIELDS, *self.SECRET_FIELDS, *self.METHOD_FIELDS}}

    def destination(self) -> tuple:
        return destination_of(self.url, self.verify_tls, self.tls_ca)

    @property
    def header_dict(self) -> dict[str, str]:
        if not self.headers:
            return {}
        try:
            value = json.loads(self.headers)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}

    def apply_outcome(self, ok: bool) -> tuple[str, str]:
        """Count one result and move the status by the thresholds; returns (previous, new).

        Unhealthy after exactly `failure_threshold` failures in a row, healthy after
        `success_threshold` successes in a row; the first result of an unknown check settles
        it at once in the direction of its threshold rule (a first success with threshold 1
        is healthy; a first failure stays unknown until the threshold is reached).
        """
        previous = self.status
        if ok:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            if self.consecutive_successes >= self.success_threshold:
                self.status = CheckStatus.HEALTHY
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            if self.consecutive_failures >= self.failure_threshold:
                self.status = CheckStatus.UNHEALTHY
        return previous, self.status

    def restart_due(self) -> bool:
        """Should this failure ask for a restart? At the threshold and at every multiple of it
        while the failures go on, so a restart that did not help is followed by another (which
        the auto-restart backoff and loop guard then pace)."""
        threshold = max(1, self.failure_threshold)
        return self.auto_restart and self.consecutive_failures >= threshold and self.consecutive_failures % threshold == 0


def _requesting_administrator():
    """The administrator whose HTTP request is saving (any surface: API, admin, UI), or None."""
    from accounts.audit import current_request
    from accounts.roles import is_administrator

    request = current_request()
    user = getattr(request, "user", None) if request is not None else None
    return user if user is not None and is_administrator(user) else None


def destination_of(url: str, verify_tls: bool, tls_ca: str) -> tuple:
    """Where a check's secrets go: scheme, host and port of the URL (a path change keeps them),
    and for HTTPS how the server is authenticated (verification on/off, the custom CA)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(url or "").strip())
        port = parts.port
    except ValueError:
        return ("invalid", str(url))
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".").lower()
    port = port or {"http": 80, "https": 443}.get(scheme)
    tls = (bool(verify_tls), (tls_ca or "").strip()) if scheme == "https" else None
    return scheme, host, port, tls


class CheckResult(models.Model):
    health_check = models.ForeignKey(HealthCheck, on_delete=models.CASCADE, related_name="results")
    ts = models.DateTimeField(default=timezone.now, help_text="When the request started")
    scheduled_at = models.DateTimeField(null=True, blank=True, help_text="When it was due (lateness = ts - scheduled_at)")
    status = models.CharField(max_length=16, choices=ResultStatus.choices)
    response_ms = models.IntegerField(null=True, blank=True)
    status_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-ts", "-id"]
        indexes = [models.Index(fields=["health_check", "ts"], name="hc_result_check_ts_idx"), models.Index(fields=["ts"])]

    def __str__(self) -> str:
        return f"{self.health_check_id} {self.ts:%Y-%m-%d %H:%M:%S} {self.status}"


class AutoRestartConfig(models.Model):
    container = models.OneToOneField(Container, on_delete=models.CASCADE, related_name="auto_restart_config")
    enabled = models.BooleanField(default=True, help_text="Restart the container when it dies while it should run")
    max_retries = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(100)])
    initial_delay_seconds = models.FloatField(default=10.0, validators=[MinValueValidator(0), MaxValueValidator(3600)])
    backoff_factor = models.FloatField(default=2.0, validators=[MinValueValidator(1), MaxValueValidator(10)])
    max_delay_seconds = models.FloatField(default=300.0, validators=[MinValueValidator(0), MaxValueValidator(86400)])
    reset_after_minutes = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1), MaxValueValidator(10080)])

    # State of the current run of failures.
    attempts = models.PositiveIntegerField(default=0, help_text="Restarts since the last reset")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    gave_up_at = models.DateTimeField(null=True, blank=True, help_text="Restart loop detected: left alone until a reset")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["container__name"]

    def __str__(self) -> str:
        return f"auto-restart {self.container_id}"

    def delay_for(self, attempt: int) -> float:
        """Delay before restart number `attempt` (1-based): initial × factor^(n-1), capped."""
        delay = self.initial_delay_seconds * (self.backoff_factor ** max(0, attempt - 1))
        return float(min(delay, self.max_delay_seconds))

    @property
    def reset_after(self) -> timedelta:
        return timedelta(minutes=self.reset_after_minutes)


class RestartAttempt(models.Model):
    """One restart: scheduled (pending, due at `due_at`), then claimed and run by the periodic
    task. Pending rows are the queue; claiming them with a conditional UPDATE makes the queue
    safe with several workers and survive a worker crash."""

    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="restart_attempts")
    health_check = models.ForeignKey(HealthCheck, null=True, blank=True, on_delete=models.SET_NULL, related_name="restart_attempts")
    trigger = models.CharField(max_length=16, choices=RestartTrigger.choices)
    attempt = models.PositiveIntegerField(help_text="1 for the first restart after a reset")
    delay_seconds = models.FloatField(default=0)
    reason = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.PENDING)
    due_at = models.DateTimeField()
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    action = models.CharField(max_length=16, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "due_at"], name="hc_attempt_due_idx")]

    def __str__(self) -> str:
        return f"restart #{self.attempt} of {self.container_id} ({self.status})"
