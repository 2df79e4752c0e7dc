from __future__ import annotations

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from containers.choices import (
    BulkItemStatus,
    BulkJobStatus,
    ContainerAction,
    ContainerState,
    DesiredState,
    EventCategory,
    Health,
    HostStatus,
    Severity,
    StatsTier,
    TagSource,
)
from dockmon_site.crypto import EncryptedTextField, is_undecryptable

SHORT_ID_LENGTH = 12


def container_key(host_id, container_id: str) -> str:
    """The one identity of a container everywhere: "{host uuid}:{first 12 hex chars}"."""
    return f"{host_id}:{container_id[:SHORT_ID_LENGTH]}"


class DockerHost(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    url = models.CharField(max_length=500, help_text="unix:///var/run/docker.sock, tcp://host:2376 or ssh://user@host")
    tls_ca = EncryptedTextField(blank=True, default="", help_text="PEM CA certificate that signed the engine's certificate")
    tls_cert = EncryptedTextField(blank=True, default="", help_text="PEM client certificate")
    tls_key = EncryptedTextField(blank=True, default="", help_text="PEM client key (stored encrypted, never shown)")
    enabled = models.BooleanField(default=True, help_text="Disabled hosts are not watched")
    status = models.CharField(max_length=16, choices=HostStatus.choices, default=HostStatus.UNKNOWN)
    last_error = models.TextField(blank=True, default="")
    engine_version = models.CharField(max_length=64, blank=True, default="")
    api_version = models.CharField(max_length=16, blank=True, default="")
    engine_id = models.CharField(max_length=128, blank=True, default="", help_text="Reported by the engine; not an identity")
    engine_name = models.CharField(max_length=255, blank=True, default="")
    os = models.CharField(max_length=255, blank=True, default="")
    last_seen_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("operate_dockerhost", "Can operate the containers of this host"),
            ("update_dockerhost", "Can update the containers of this host"),
            # Creating containers on a host is root on that host: never implied by `change`.
            ("deploy_dockerhost", "Can deploy compose stacks on this host"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls_cert or self.tls_ca) or self.tls_undecryptable

    @property
    def tls_undecryptable(self) -> bool:
        """Stored TLS material that no configured encryption key opens (see dockmon_site.crypto)."""
        return any(is_undecryptable(value) for value in (self.tls_ca, self.tls_cert, self.tls_key))


class Tag(models.Model):
    name = models.CharField(max_length=100, unique=True)
    color = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ContainerQuerySet(models.QuerySet):
    def present(self):
        return self.filter(removed_at__isnull=True)


class Container(models.Model):
    key = models.CharField(max_length=64, primary_key=True, editable=False)
    host = models.ForeignKey(DockerHost, on_delete=models.CASCADE, related_name="containers")
    short_id = models.CharField(max_length=SHORT_ID_LENGTH)
    container_id = models.CharField(max_length=64)
    name = models.CharField(max_length=255)
    image = models.CharField(max_length=500, blank=True, default="")
    image_id = models.CharField(max_length=100, blank=True, default="")
    command = models.TextField(blank=True, default="")
    state = models.CharField(max_length=16, choices=ContainerState.choices, default=ContainerState.CREATED)
    status = models.CharField(max_length=255, blank=True, default="")
    health = models.CharField(max_length=16, choices=Health.choices, default=Health.NONE)
    exit_code = models.IntegerField(null=True, blank=True)
    restart_count = models.IntegerField(default=0)
    labels = models.JSONField(default=dict, blank=True)
    ports = models.JSONField(default=list, blank=True)
    mounts = models.JSONField(default=list, blank=True)
    networks = models.JSONField(default=list, blank=True)
    compose_project = models.CharField(max_length=255, blank=True, default="")
    compose_service = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(null=True, blank=True, help_text="When the engine created it")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True, help_text="Gone from the engine; kept for history")
    replaced_by = models.CharField(max_length=64, blank=True, default="", help_text="Key of the container that replaced it")
    desired_state = models.CharField(
        max_length=16, choices=DesiredState.choices, blank=True, default=DesiredState.UNSET,
        help_text="What a person last asked for through DockMon (a stop on purpose is not a crash)",
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    tags = models.ManyToManyField(Tag, through="ContainerTag", related_name="containers", blank=True)

    objects = ContainerQuerySet.as_manager()

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [models.UniqueConstraint(fields=["host", "short_id"], name="container_unique_short_id_per_host")]
        indexes = [
            models.Index(fields=["host", "name"]),
            models.Index(fields=["state"]),
            models.Index(fields=["name"]),
            # Lists show present containers by name: a partial index serves that order directly
            # (a plain removed_at index misled SQLite's planner into full scans and sorts).
            models.Index(fields=["name", "key"], condition=models.Q(removed_at__isnull=True), name="container_present_by_name"),
        ]
        permissions = [
            ("operate_container", "Can operate the container (start, stop, logs...)"),
            ("update_container", "Can update the container's image"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"

    def save(self, *args, **kwargs):
        if not self.key:
            self.key = container_key(self.host_id, self.container_id or self.short_id)
        if not self.short_id:
            self.short_id = self.key.split(":", 1)[1]
        super().save(*args, **kwargs)

    @property
    def is_removed(self) -> bool:
        return self.removed_at is not None

    def event_data(self, **extra) -> dict:
        """The data of an event about this container: who it is, then what the event adds."""
        return {"key": self.key, "name": self.name, **extra}


class ContainerTag(models.Model):
    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="tag_links")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="container_links")
    source = models.CharField(max_length=16, choices=TagSource.choices, default=TagSource.USER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["container", "tag"], name="container_tag_unique")]

    def __str__(self) -> str:
        return f"{self.container_id} #{self.tag.name}"


class Event(models.Model):
    ts = models.DateTimeField(default=timezone.now, db_index=True)
    category = models.CharField(max_length=16, choices=EventCategory.choices)
    type = models.CharField(max_length=64)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.INFO)
    host = models.ForeignKey(DockerHost, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    # A plain key, not a foreign key: history keeps the key the container had at the time.
    container_key = models.CharField(max_length=64, blank=True, default="", db_index=True)
    container_name = models.CharField(max_length=255, blank=True, default="")
    message = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-ts", "-id"]
        indexes = [
            models.Index(fields=["category", "ts"]),
            models.Index(fields=["host", "ts"]),
        ]

    def __str__(self) -> str:
        return f"{self.ts:%Y-%m-%d %H:%M:%S} {self.type}"


class EventDispatch(models.Model):
    """A stored event whose subscribers have not all run yet (the bus's outbox).

    Written in the same transaction as the event by the process that emits it (the claimant);
    deleted once its subscribers have run. A row whose claim is older than the lease belongs to
    a process that died or stalls: another process's dispatcher claims it and runs it."""

    event = models.OneToOneField(Event, primary_key=True, on_delete=models.CASCADE, related_name="+")
    claimed_by = models.CharField(max_length=96)
    claimed_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["event_id"]

    def __str__(self) -> str:
        return f"event {self.event_id} ({self.claimed_by})"


class StatsBatch(models.Model):
    """One collection cycle (raw) or rollup window (5m, 1h) of one host's container stats.

    Rows hold every container of the host at once (keyed by short id in `data`), so a host with
    hundreds of containers writes one row per cycle instead of hundreds; a range query pulls one
    container's points out with a JSON key lookup in the database.

    raw rows:     data[short_id] = [cpu, mem, mem_limit, net_rx, net_tx, blk_read, blk_write, pids]  (sizes in KiB)
    rollup rows:  data[short_id] = [cpu_avg, cpu_min, cpu_max, mem_avg, mem_min, mem_max, mem_limit,
                                    net_rx, net_tx, blk_read, blk_write, pids, samples]
    data["_host"] = the rollup shape, summed over the host's containers (see containers.stats).
    """

    host = models.ForeignKey(DockerHost, on_delete=models.CASCADE, related_name="stats_batches")
    tier = models.CharField(max_length=4, choices=StatsTier.choices, default=StatsTier.RAW)
    ts = models.DateTimeField()
    data = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "tier", "ts"], name="stats_batch_unique_window")]
        indexes = [models.Index(fields=["tier", "ts"])]
        ordering = ["host", "tier", "ts"]

    def __str__(self) -> str:
        return f"{self.host_id} {self.tier} {self.ts:%Y-%m-%d %H:%M:%S}"


class DiskUsage(models.Model):
    """`docker system df` of one host at one time."""

    host = models.ForeignKey(DockerHost, on_delete=models.CASCADE, related_name="disk_usage")
    ts = models.DateTimeField(default=timezone.now)
    images_count = models.IntegerField(default=0)
    images_size = models.BigIntegerField(default=0)
    images_reclaimable = models.BigIntegerField(default=0)
    containers_count = models.IntegerField(default=0)
    containers_size = models.BigIntegerField(default=0)
    containers_reclaimable = models.BigIntegerField(default=0)
    volumes_count = models.IntegerField(default=0)
    volumes_size = models.BigIntegerField(default=0)
    volumes_reclaimable = models.BigIntegerField(default=0)
    build_cache_count = models.IntegerField(default=0)
    build_cache_size = models.BigIntegerField(default=0)
    build_cache_reclaimable = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-ts"]
        indexes = [models.Index(fields=["host", "ts"])]

    def __str__(self) -> str:
        return f"{self.host_id} {self.ts:%Y-%m-%d %H:%M}"

    @property
    def total_size(self) -> int:
        return self.images_size + self.containers_size + self.volumes_size + self.build_cache_size


class ProfileSession(models.Model):
    """A live profiling session: 1-second samples of one container, saved as it goes."""

    container_key = models.CharField(max_length=64, db_index=True)
    container_name = models.CharField(max_length=255, blank=True, default="")
    host = models.ForeignKey(DockerHost, null=True, on_delete=models.SET_NULL, related_name="profiles")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, blank=True, default="")
    # [[t_iso, cpu_percent, mem_bytes, mem_limit, net_rx, net_tx, blk_read, blk_write, pids], ...]
    samples = models.JSONField(default=list, blank=True)
    sample_count = models.IntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.container_name or self.container_key} @ {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


class MonitorInstance(models.Model):
    """A running `manage.py monitor` process; alive while its heartbeat is fresh."""

    id = models.CharField(max_length=64, primary_key=True, editable=False)
    hostname = models.CharField(max_length=255, blank=True, default="")
    pid = models.IntegerField(default=0)
    process_started = models.BigIntegerField(default=0, help_text="The process's start time (clock ticks since boot)")
    shard = models.CharField(max_length=16, blank=True, default="0/1")
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now, db_index=True)
    hosts_watched = models.IntegerField(default=0)

    class Meta:
        ordering = ["started_at"]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"


class HostLease(models.Model):
    """Which monitor watches a host. A host is watched by the owner of an unexpired lease only;
    a lease that is not renewed (its monitor died) expires and another monitor takes the host."""

    host = models.OneToOneField(DockerHost, primary_key=True, on_delete=models.CASCADE, related_name="lease")
    owner = models.CharField(max_length=64, blank=True, default="", db_index=True, help_text="MonitorInstance id")
    expires_at = models.DateTimeField(null=True, blank=True)
    acquired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["host__name"]

    def __str__(self) -> str:
        return f"{self.host_id} → {self.owner or '-'}"


class BulkJob(models.Model):
    """One action over a selection of containers (POST /api/v1/containers/bulk/).

    Small selections run inside the request; large ones in a Celery worker (the API answers 202
    with the job's id). Each container is one BulkJobItem, written as it finishes, so progress is
    readable at /api/v1/bulk-jobs/{id}/ while the job runs.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    action = models.CharField(max_length=16, choices=ContainerAction.choices)
    options = models.JSONField(default=dict, blank=True, help_text="force, volumes, timeout")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=BulkJobStatus.choices, default=BulkJobStatus.PENDING)
    background = models.BooleanField(default=False, help_text="Run by a worker rather than inside the request")
    total = models.IntegerField(default=0)
    succeeded = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.action} ×{self.total} ({self.status})"


class BulkJobItem(models.Model):
    """One container of a bulk job and its outcome (`http_status` as a single call would answer)."""

    job = models.ForeignKey(BulkJob, on_delete=models.CASCADE, related_name="items")
    position = models.IntegerField()
    # The key as asked for: it may name a container that does not exist (reported as 404).
    key = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=BulkItemStatus.choices, default=BulkItemStatus.PENDING)
    ok = models.BooleanField(default=False)
    state = models.CharField(max_length=16, blank=True, default="")
    error = models.TextField(blank=True, default="")
    http_status = models.IntegerField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "position"]
        constraints = [models.UniqueConstraint(fields=["job", "position"], name="bulk_item_unique_position")]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.position} {self.key} {self.status}"
