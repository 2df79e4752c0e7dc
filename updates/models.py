from __future__ import annotations

from django.conf import settings
from django.db import models

from dockmon_site.crypto import EncryptedTextField, RemembersDestination, is_undecryptable
from updates.choices import ACTIVE_RUN_STATUSES, Policy, RunStage, RunStatus, RunTrigger, TrackingMode, UpdateStatus
from updates.registry import canonical_registry


class RegistryCredential(RemembersDestination, models.Model):
    """How to reach one registry host: credentials, and its TLS settings."""

    registry = models.CharField(
        max_length=255,
        unique=True,
        help_text="Registry host as it appears in image names, e.g. ghcr.io, 127.0.0.1:5000 or docker.io",
    )
    username = models.CharField(max_length=255, blank=True, default="")
    password = EncryptedTextField(blank=True, default="", help_text="Password or access token (stored encrypted, never shown)")
    ca_cert = models.TextField(blank=True, default="", help_text="PEM CA certificate for a registry with a private CA")
    insecure = models.BooleanField(default=False, help_text="Talk plain HTTP to this registry (like Docker's insecure-registries)")
    note = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["registry"]

    def __str__(self) -> str:
        return f"{self.registry} ({self.username or 'anonymous'})"

    def save(self, *args, **kwargs):
        # One spelling per registry, so lookups by an image's registry always find the row.
        self.registry = canonical_registry(self.registry)
        if self.password_moved():
            # Every surface (API, admin, config import): a password set for one registry is
            # never sent to another, nor over plain HTTP or to a registry vouched for by
            # another CA, unless the same change gives it again. The user name stays: without
            # a password it is not used (lookups.registry_credentials).
            self.password = ""
            update_fields = kwargs.get("update_fields")
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "password"}
        super().save(*args, **kwargs)
        self.password_supplied = False
        self._remember_destination()

    def clean(self):
        # Forms (the admin): the outbound policy on the registry host, as the API checks it.
        from django.core.exceptions import ValidationError

        from updates.registry import check_destination

        try:
            check_destination(canonical_registry(self.registry), insecure=self.insecure)
        except ValueError as exc:
            raise ValidationError({"registry": str(exc)}) from None

    # ---- the password follows its destination --------------------------------------------
    # True when the change being saved supplied the password again (the API sets it from the
    # request, even when the value is the same); otherwise a stored password is dropped when
    # the registry, `insecure` or the CA changes.
    password_supplied: bool = False

    def destination(self) -> tuple:
        """Where the password goes and how: the registry host, plain HTTP or not, and the CA that
        says who the registry is."""
        return canonical_registry(self.registry), bool(self.insecure), (self.ca_cert or "").strip()

    def _remember_destination(self) -> None:
        self._stored_destination = (self.destination(), self.password)

    def password_moved(self) -> bool:
        """Would saving now send the stored password somewhere else than where it was set for?"""
        stored = getattr(self, "_stored_destination", None)
        return (self.pk is not None and stored is not None and stored[0] != self.destination()
                and not self.password_supplied and (bool(self.password) or is_undecryptable(self.password))
                and self.password == stored[1])


class ContainerUpdate(models.Model):
    """What the last update check found for one container, and how the container is tracked."""

    container = models.OneToOneField("containers.Container", on_delete=models.CASCADE, related_name="update_record")
    image = models.CharField(max_length=500, blank=True, default="", help_text="The image reference that was checked")
    current_digest = models.CharField(max_length=100, blank=True, default="")
    current_version = models.CharField(max_length=128, blank=True, default="")
    latest_digest = models.CharField(max_length=100, blank=True, default="")
    latest_version = models.CharField(max_length=128, blank=True, default="")
    update_available = models.BooleanField(default=False)
    tracking_mode = models.CharField(max_length=16, choices=TrackingMode.choices, default=TrackingMode.EXACT)
    include_prerelease = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=UpdateStatus.choices, default=UpdateStatus.UNCHECKED)
    error = models.TextField(blank=True, default="")
    checked_at = models.DateTimeField(null=True, blank=True)
    available_since = models.DateTimeField(null=True, blank=True)
    # The latest digest an update.available event was sent for (each offer is announced once).
    announced_digest = models.CharField(max_length=100, blank=True, default="", editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["container__host__name", "container__name"]
        indexes = [models.Index(fields=["update_available"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.container_id}: {self.status}"


class PolicyCategory(models.Model):
    """A named group of substring patterns (matched on container name or image) with a policy."""

    name = models.SlugField(max_length=50, unique=True)
    label = models.CharField(max_length=100, blank=True, default="")
    policy = models.CharField(max_length=8, choices=Policy.choices, default=Policy.WARN)
    enabled = models.BooleanField(default=False)
    patterns = models.JSONField(default=list, blank=True, help_text="Substrings, matched case-insensitively")
    builtin = models.BooleanField(default=False, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policy categories"

    def __str__(self) -> str:
        return self.label or self.name


class UpdatePolicy(models.Model):
    """A policy a user set on one container (rule 2 of the priority order)."""

    container = models.OneToOneField("containers.Container", on_delete=models.CASCADE, related_name="update_policy")
    policy = models.CharField(max_length=8, choices=Policy.choices)
    note = models.CharField(max_length=255, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["container__name"]
        verbose_name_plural = "update policies"

    def __str__(self) -> str:
        return f"{self.container_id}: {self.policy}"


# ---------------------------------------------------------------------------
# Update execution (updates.executor)
# ---------------------------------------------------------------------------
class UpdateRun(models.Model):
    """One execution of an update: what was asked, every stage it went through, how it ended.

    The container keys are plain columns (not foreign keys) so the history keeps the key the
    container had at the time, like the event log; `container` points at the original row while
    it exists. At most one run per container name and host is pending or running (a partial
    unique constraint, so two requests racing cannot both get through)."""

    host = models.ForeignKey("containers.DockerHost", on_delete=models.CASCADE, related_name="update_runs")
    container = models.ForeignKey("containers.Container", null=True, blank=True, on_delete=models.SET_NULL, related_name="update_runs")
    container_name = models.CharField(max_length=255)
    old_key = models.CharField(max_length=64, db_index=True)
    new_key = models.CharField(max_length=64, blank=True, default="", db_index=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    stage = models.CharField(max_length=16, choices=RunStage.choices, default=RunStage.QUEUED)
    percent = models.PositiveSmallIntegerField(default=0)
    trigger = models.CharField(max_length=8, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    force = models.BooleanField(default=False)
    batch = models.CharField(max_length=32, blank=True, default="", db_index=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    image = models.CharField(max_length=500, blank=True, default="")
    from_digest = models.CharField(max_length=100, blank=True, default="")
    to_digest = models.CharField(max_length=100, blank=True, default="")
    # The registry digest the check had offered when the run was asked for (what it aims at,
    # known even when the pull fails): auto-update backs off per container and target digest.
    target_digest = models.CharField(max_length=100, blank=True, default="")
    from_image_id = models.CharField(max_length=100, blank=True, default="")
    to_image_id = models.CharField(max_length=100, blank=True, default="")
    old_container_id = models.CharField(max_length=64, blank=True, default="")
    new_container_id = models.CharField(max_length=64, blank=True, default="")
    backup_name = models.CharField(max_length=300, blank=True, default="")
    was_running = models.BooleanField(null=True, blank=True)
    health_timeout = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds; empty = the setting")
    # The container's database records moved to the new key (the commitment point).
    committed = models.BooleanField(default=False)
    # The host's concurrency slot (1..DOCKMON_UPDATE_CONCURRENCY_PER_HOST) a queued or running
    # run holds: a partial unique constraint keeps two kicks racing from handing out more slots
    # than the limit, whatever the database's locking does.
    slot = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    dependents = models.JSONField(default=list, blank=True, help_text="Containers sharing this one's network, recreated after it")
    error = models.TextField(blank=True, default="")
    log = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=255, blank=True, default="", help_text="host:pid of the worker running it")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds spent per stage")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "container_name"],
                condition=models.Q(status__in=ACTIVE_RUN_STATUSES),
                name="updaterun_one_active_per_container",
            ),
            models.UniqueConstraint(
                fields=["host", "slot"],
                condition=models.Q(status__in=ACTIVE_RUN_STATUSES, slot__isnull=False),
                name="updaterun_one_run_per_host_slot",
            ),
        ]
        indexes = [models.Index(fields=["status", "host"]), models.Index(fields=["-created_at"])]

    def __str__(self) -> str:
        return f"update #{self.pk} of {self.container_name}: {self.status}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES

    @property
    def key(self) -> str:
        """The container's current key as far as this run knows."""
        return self.new_key or self.old_key


class AutoUpdate(models.Model):
    """A container's opt-in to auto-update, with an optional maintenance window.

    Without a window an update runs right after the check that found it; with one, only when
    the local time in `timezone` is on one of `days` (0 = Monday) between `start` and `end`
    (a window whose end is before its start runs over midnight)."""

    container = models.OneToOneField("containers.Container", on_delete=models.CASCADE, related_name="auto_update")
    enabled = models.BooleanField(default=True)
    days = models.JSONField(default=list, blank=True, help_text="Weekdays 0-6 (Monday = 0); empty = every day")
    start = models.TimeField(null=True, blank=True, help_text="Window start (local time); empty = no window")
    end = models.TimeField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["container__name"]

    def __str__(self) -> str:
        return f"{self.container_id}: auto-update {'on' if self.enabled else 'off'}"

    @property
    def has_window(self) -> bool:
        return self.start is not None and self.end is not None

    def in_window(self, when) -> bool:
        from zoneinfo import ZoneInfo

        if not self.has_window:
            return True
        local = when.astimezone(ZoneInfo(self.timezone or "UTC"))
        now_t = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            day = local.weekday()
            inside = self.start <= now_t < self.end
        elif now_t >= self.start:
            day, inside = local.weekday(), True
        else:
            # After midnight in a window that began the evening before: that evening's day counts.
            day, inside = (local.weekday() - 1) % 7, now_t < self.end
        return inside and (not self.days or day in self.days)


class RolledBackDigest(models.Model):
    """A release that failed the health gate on this container: auto-update does not retry it."""

    container = models.ForeignKey("containers.Container", on_delete=models.CASCADE, related_name="rolled_back_digests")
    digest = models.CharField(max_length=100)
    run = models.ForeignKey(UpdateRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["container", "digest"], name="rolledback_digest_unique")]

    def __str__(self) -> str:
        return f"{self.container_id}: {self.digest[:19]}"
