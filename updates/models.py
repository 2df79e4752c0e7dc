from __future__ import annotations

from django.conf import settings
from django.db import models

from dockmon_site.crypto import EncryptedTextField
from updates.choices import Policy, TrackingMode, UpdateStatus
from updates.registry import canonical_registry


class RegistryCredential(models.Model):
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
        super().save(*args, **kwargs)


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
