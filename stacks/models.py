"""Compose stacks: a definition DockMon deploys on one host, and each run of compose on it."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from dockmon_site.crypto import EncryptedTextField
from stacks.choices import ACTIVE_RUN_STATUSES, RunKind, RunStage, RunStatus, StackSource

# Compose's own rule for project names (lower case; it refuses anything else).
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
AUTO_UPDATE_LABEL = "dockmon.auto_update"


class Stack(models.Model):
    """One compose project on one host. The database holds the truth (`compose`, `env`); the
    files in the stack's working directory are written from it before every compose call.

    `config` and `config_hashes` are what `docker compose config` made of the current text
    (saved with it, so lists and the diff need no subprocess); `deployed_hashes` are the service
    hashes of the last successful deploy, which drift is measured against."""

    host = models.ForeignKey("containers.DockerHost", on_delete=models.CASCADE, related_name="stacks")
    name = models.CharField(max_length=63, help_text="The compose project name")
    compose = models.TextField(help_text="The compose file (YAML)")
    # Encrypted at rest: an env file holds the stack's secrets. Shown only to holders of `deploy`.
    env = EncryptedTextField(blank=True, default="", help_text="The .env file (dotenv) used for interpolation")
    source = models.CharField(max_length=16, choices=StackSource.choices, default=StackSource.DOCKMON)
    config = models.JSONField(default=dict, blank=True,
                              help_text="Of compose config --format json of the current text: each service's image, depends_on, dockmon.* labels")
    config_hashes = models.JSONField(default=dict, blank=True, help_text="Service -> config hash of the current text")
    deployed_hashes = models.JSONField(default=dict, blank=True, help_text="Service -> config hash at the last deploy")
    deployed_at = models.DateTimeField(null=True, blank=True)
    auto_update = models.BooleanField(
        default=False, help_text="Update the stack's images by itself (also: label dockmon.auto_update=true on any service)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [models.UniqueConstraint(fields=["host", "name"], name="stack_unique_name_per_host")]

    def __str__(self) -> str:
        return f"{self.name} on {self.host}"

    def service_names(self) -> list[str]:
        return sorted((self.config or {}).get("services", {}))

    def wants_auto_update(self) -> bool:
        """The stack's own setting, or the label dockmon.auto_update on any of its services."""
        if self.auto_update:
            return True
        for definition in (self.config or {}).get("services", {}).values():
            labels = (definition or {}).get("labels") or {}
            if isinstance(labels, dict) and str(labels.get(AUTO_UPDATE_LABEL, "")).lower() in ("true", "1", "yes"):
                return True
        return False

    def service_image(self, service: str) -> str:
        return ((self.config or {}).get("services", {}).get(service) or {}).get("image", "")


class StackRun(models.Model):
    """One execution of compose on a stack: what was asked, its stages, its log, how it ended.

    The stack may be forgotten while its runs stay (a delete run outlives its stack), so the
    host and the stack's name are columns of their own. At most one run per stack is pending
    or running (a partial unique constraint: two requests racing cannot both get through)."""

    stack = models.ForeignKey(Stack, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    host = models.ForeignKey("containers.DockerHost", on_delete=models.CASCADE, related_name="stack_runs")
    stack_name = models.CharField(max_length=63)
    kind = models.CharField(max_length=16, choices=RunKind.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    stage = models.CharField(max_length=16, choices=RunStage.choices, default=RunStage.QUEUED)
    percent = models.PositiveSmallIntegerField(default=0)
    options = models.JSONField(default=dict, blank=True, help_text='e.g. {"volumes": true} for down')
    diff = models.JSONField(default=list, blank=True, help_text="What a deploy was to change, per service")
    error = models.TextField(blank=True, default="")
    log = models.TextField(blank=True, default="")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stack"],
                condition=models.Q(status__in=ACTIVE_RUN_STATUSES),
                name="stackrun_one_active_per_stack",
            ),
        ]
        indexes = [models.Index(fields=["host", "stack_name"])]

    def __str__(self) -> str:
        return f"{self.kind} of {self.stack_name} (#{self.pk}, {self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES
