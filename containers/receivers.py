"""What containers does when accounts reports a change (accounts/signals.py): open WebSockets
re-check what their user may see, and a new API token goes on the event stream."""

from __future__ import annotations

from containers import bus
from containers.choices import EventCategory
from containers.ws_access import announce_permissions_changed


def access_changed(sender, reason: str, session_key: str | None = None, **kwargs) -> None:
    announce_permissions_changed(reason, session_key=session_key)


def token_obtained(sender, token, **kwargs) -> None:
    bus.emit(
        "token.created",
        category=EventCategory.USER,
        actor=token.user,
        message=f"{token.user} obtained API token {token.name!r}",
        data={"token_id": token.pk, "name": token.name, "read_only": token.read_only},
    )


def connect() -> None:
    from accounts import signals

    signals.access_changed.connect(access_changed, dispatch_uid="containers.access_changed")
    signals.token_obtained.connect(token_obtained, dispatch_uid="containers.token_obtained")
