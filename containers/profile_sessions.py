"""The ProfileSession rows a live profile writes (containers/ws_handlers/profiles.py)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from containers.models import ProfileSession


class ProfileLimitReached(Exception):
    pass


def open_session(user, container) -> ProfileSession:
    """A new session of `container` for `user`, unless the user already has
    DOCKMON_PROFILE_MAX_PER_USER open ones (ProfileLimitReached)."""
    cap = settings.DOCKMON_PROFILE_MAX_PER_USER
    with transaction.atomic():
        # Serialises concurrent starts of one user (other sockets, other web processes).
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        recent = timezone.now() - timedelta(seconds=settings.DOCKMON_PROFILE_MAX_SECONDS)
        if ProfileSession.objects.filter(user_id=user.pk, ended_at__isnull=True, started_at__gt=recent).count() >= cap:
            raise ProfileLimitReached(cap)
        return ProfileSession.objects.create(
            container_key=container.key, container_name=container.name, host_id=container.host_id, user=user
        )


def save_samples(session_id: int, samples: list, *, end_reason: str = "") -> None:
    """Append samples to a session; with `end_reason`, close it too."""
    session = ProfileSession.objects.filter(pk=session_id).first()
    if session is None:
        return
    session.samples = [*session.samples, *samples]
    session.sample_count = len(session.samples)
    fields = ["samples", "sample_count"]
    if end_reason:
        session.ended_at = timezone.now()
        session.end_reason = end_reason
        fields += ["ended_at", "end_reason"]
    session.save(update_fields=fields)
