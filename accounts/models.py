from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from accounts.choices import AuditSource

TOKEN_PREFIX = "dm"
LOOKUP_LENGTH = 10


def hash_secret(secret: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is safe and keeps auth cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


class APITokenQuerySet(models.QuerySet):
    def usable(self):
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now))


class APIToken(models.Model):
    """A named API token. Only its hash is stored; the full value is shown once at creation.

    Format: dm_<lookup>_<secret>; the lookup part finds the row, the secret is compared by hash.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, default="default")
    lookup = models.CharField(max_length=LOOKUP_LENGTH, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    read_only = models.BooleanField(default=False, help_text="Refused on every unsafe method")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = APITokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user} / {self.name} ({self.prefix}…)"

    @property
    def prefix(self) -> str:
        return f"{TOKEN_PREFIX}_{self.lookup}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @classmethod
    def issue(cls, user, *, name: str = "default", expires_at=None, read_only: bool = False) -> tuple[APIToken, str]:
        """Create a token; returns (row, the full token text to show once)."""
        lookup = secrets.token_hex(LOOKUP_LENGTH // 2)
        secret = secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, lookup=lookup, secret_hash=hash_secret(secret), expires_at=expires_at, read_only=read_only
        )
        return token, f"{TOKEN_PREFIX}_{lookup}_{secret}"

    @classmethod
    def authenticate(cls, raw: str) -> APIToken | None:
        """The usable token for a raw value, or None. Constant-time on the secret."""
        parts = (raw or "").strip().split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != LOOKUP_LENGTH:
            return None
        token = cls.objects.usable().select_related("user").filter(lookup=parts[1]).first()
        if token is None or not hmac.compare_digest(token.secret_hash, hash_secret(parts[2])):
            return None
        if not token.user.is_active:
            return None
        return token

    def mark_used(self) -> None:
        # Write at most once a minute: a busy client must not turn every read into a write.
        now = timezone.now()
        if self.last_used_at is None or (now - self.last_used_at).total_seconds() > 60:
            APIToken.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now


class AuditEntry(models.Model):
    """Who did what to which object, when and from where. Rows are never edited."""

    ts = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries")
    # Kept apart from `user` so the record still names the person after the account is deleted.
    username = models.CharField(max_length=150, blank=True, default="")
    token_id = models.BigIntegerField(null=True, blank=True, help_text="The API token used, if any")
    ip = models.GenericIPAddressField(null=True, blank=True, unpack_ipv4=True)
    source = models.CharField(max_length=16, choices=AuditSource.choices, default=AuditSource.SYSTEM)
    method = models.CharField(max_length=10, blank=True, default="")
    path = models.CharField(max_length=500, blank=True, default="")
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100, blank=True, default="", help_text="app_label.model")
    object_id = models.CharField(max_length=255, blank=True, default="")
    object_repr = models.CharField(max_length=255, blank=True, default="")
    changes = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-ts", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["object_type", "object_id"]),
            models.Index(fields=["user", "ts"]),
        ]

    def __str__(self) -> str:
        who = self.username or "system"
        target = f" {self.object_type}:{self.object_id}" if self.object_id else ""
        return f"{self.ts:%Y-%m-%d %H:%M:%S} {who} {self.action}{target}"
