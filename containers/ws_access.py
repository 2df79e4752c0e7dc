"""What an open WebSocket may still do, read again from the database.

Each socket calls load_access() when it opens, every DOCKMON_WS_RECHECK_SECONDS while it is
open, and at once when `permissions.changed` arrives (a grant, a group membership, a user or a
token changed somewhere). A socket is only as good as what it was opened with:

- the user still exists and is active;
- the API token it was opened with (if any) is neither revoked nor expired;
- the session it was opened with (if no token) still exists, still belongs to that user and
  still carries the user's current auth hash (a password change elsewhere, a logout, a session
  that expired or was deleted all end it), the same test Django applies to every request.

Then it recomputes what the user sees (Visibility) and which of the followed containers they
may still follow (`operate`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db import transaction
from django.utils.crypto import constant_time_compare

from containers.permissions import Visibility, visible_containers
from dockmon_site import realtime

PERMISSIONS_CHANGED = "permissions.changed"

# Why a socket must close; the text is sent to the client in an `error` message first.
DENIED = {
    "token_revoked": "The API token this connection was opened with was revoked or has expired.",
    "user_gone": "The account this connection was opened for no longer exists.",
    "deactivated": "The account was deactivated.",
    "logged_out": "The session this connection was opened with has ended (signed out or expired).",
    "password_changed": "The password was changed since this connection was opened; sign in again.",
}


@dataclass
class Access:
    denied: str = ""  # a DENIED key: the socket must close
    user: object = None
    visibility: Visibility = field(default_factory=Visibility)
    followable: set[str] = field(default_factory=set)  # of the keys asked about: those the user may still follow


def session_digest(session_key: str) -> str:
    """Names a session in a broadcast (logout) without putting the key itself on the bus."""
    return hashlib.sha256(f"dockmon-ws-session:{session_key}".encode()).hexdigest()[:32]


def announce_permissions_changed(reason: str, *, session_key: str | None = None) -> None:
    """Publish `permissions.changed` once the transaction commits.

    Consumers re-read their user's visibility before their next message
    (containers/consumers.py); a burst of these costs each consumer one re-read. A session
    that ended (a logout) is named by its digest: sockets opened with it end at once.
    """
    data = {"reason": reason}
    if session_key:
        data["session"] = session_digest(session_key)
    transaction.on_commit(lambda: realtime.publish(PERMISSIONS_CHANGED, data))


def session_problem(session_key: str, user) -> str:
    """'' while the session still vouches for `user`, else a DENIED key. Never modifies the session."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    if not data or data.get(SESSION_KEY) != user._meta.pk.value_to_string(user):
        return "logged_out"
    stored = data.get(HASH_SESSION_KEY) or ""
    if stored and constant_time_compare(stored, user.get_session_auth_hash()):
        return ""
    if stored and any(constant_time_compare(stored, fallback) for fallback in user.get_session_auth_fallback_hash()):
        return ""
    return "password_changed"


def load_access(user_id, *, token_id=None, session_key: str | None = None, follow_keys=()) -> Access:
    """Synchronous (database): call through database_sync_to_async."""
    from accounts.models import APIToken
    from containers.models import Container

    if token_id is not None and not APIToken.objects.usable().filter(pk=token_id, user_id=user_id).exists():
        return Access(denied="token_revoked")
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        return Access(denied="user_gone")
    if not user.is_active:
        return Access(denied="deactivated")
    if token_id is None and session_key:
        problem = session_problem(session_key, user)
        if problem:
            return Access(denied=problem)
    followable: set[str] = set()
    if follow_keys:
        queryset = Container.objects.filter(pk__in=list(follow_keys))
        followable = set(visible_containers(user, "operate", queryset).values_list("pk", flat=True))
    return Access(user=user, visibility=Visibility.for_user(user), followable=followable)
