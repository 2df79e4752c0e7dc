"""Audit hooks for Django's own records (admin LogEntry rows and logins), and the signals
accounts sends for the apps above it to act on."""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import Signal, receiver

from accounts import audit

# What someone may see or do may have changed (a grant, a group membership, a user, a token):
# sent with `reason`, and `session_key` when a session ended (a logout). Open WebSockets
# re-check their access on it (containers/ws_access.py).
access_changed = Signal()
# Someone exchanged a password for an API token (`token`).
token_obtained = Signal()

_ADMIN_ACTIONS = {ADDITION: "admin.add", CHANGE: "admin.change", DELETION: "admin.delete"}


@receiver(post_save, sender=LogEntry, dispatch_uid="accounts.audit_admin_log_entry")
def audit_admin_change(sender, instance: LogEntry, created: bool, raw: bool = False, **kwargs):
    """Every change the admin logs (add, change, single delete) becomes an audit row.

    Bulk deletes use bulk_create (no post_save); AuditMiddleware records those requests.
    """
    if not created or raw:
        return
    request = audit.current_request()
    content_type = instance.content_type
    audit.record(
        request if request is not None and getattr(request, "user", None) == instance.user else instance.user,
        _ADMIN_ACTIONS.get(instance.action_flag, "admin.log"),
        object_type=f"{content_type.app_label}.{content_type.model}" if content_type else "",
        object_id=instance.object_id or "",
        object_repr=instance.object_repr,
        changes={"message": instance.get_change_message()},
        source="admin",
    )


@receiver(user_logged_in, dispatch_uid="accounts.audit_login")
def audit_login(sender, request, user, **kwargs):
    if request is not None:
        audit.record(request, "auth.login", obj=user, changes={"username": user.get_username()})


@receiver(user_logged_out, dispatch_uid="accounts.audit_logout")
def audit_logout(sender, request, user, **kwargs):
    if request is not None and user is not None:
        audit.record(request, "auth.logout", obj=user)


@receiver(user_login_failed, dispatch_uid="accounts.audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs):
    # Django has already masked the password in `credentials`; redact() masks it again anyway.
    audit.record(request, "auth.login_failed", changes={"username": str(credentials.get("username", ""))[:150]})


# ---------------------------------------------------------------------------
# Whatever changes what someone may see is announced to open WebSockets, whichever surface
# made the change (the API, guardian's admin screens, code calling assign_perm).
# ---------------------------------------------------------------------------
def _announce(reason: str) -> None:
    access_changed.send(sender=None, reason=reason)


def _object_permission_changed(sender, instance=None, raw=False, **kwargs):
    if not raw:
        _announce("object permission")


def _membership_changed(sender, action=None, **kwargs):
    if action in ("post_add", "post_remove", "post_clear"):
        _announce("groups")


def _user_saved(sender, instance=None, created=False, raw=False, update_fields=None, **kwargs):
    # Logins save last_login only; that changes nobody's rights.
    if raw or created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return
    _announce("user")


def _token_saved(sender, instance=None, raw=False, **kwargs):
    if not raw and instance is not None and instance.revoked_at is not None:
        _announce("token revoked")


def _logged_out(sender, request=None, user=None, **kwargs):
    # Names the session: sockets opened with it end at once, without waiting for their next
    # re-check; Django deletes the session row right after this signal.
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        access_changed.send(sender=None, reason="logout", session_key=session_key)


def connect_permission_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db.models.signals import m2m_changed, post_delete
    from guardian.models import GroupObjectPermission, UserObjectPermission

    User = get_user_model()
    for model in (UserObjectPermission, GroupObjectPermission):
        post_save.connect(_object_permission_changed, sender=model, dispatch_uid=f"accounts.perm_saved.{model.__name__}")
        post_delete.connect(_object_permission_changed, sender=model, dispatch_uid=f"accounts.perm_deleted.{model.__name__}")
    m2m_changed.connect(_membership_changed, sender=User.groups.through, dispatch_uid="accounts.user_groups")
    m2m_changed.connect(_membership_changed, sender=User.user_permissions.through, dispatch_uid="accounts.user_perms")
    m2m_changed.connect(_membership_changed, sender=Group.permissions.through, dispatch_uid="accounts.group_perms")
    post_save.connect(_user_saved, sender=User, dispatch_uid="accounts.user_saved")
    post_delete.connect(lambda **kwargs: _announce("user deleted"), sender=User, weak=False, dispatch_uid="accounts.user_deleted")
    user_logged_out.connect(_logged_out, dispatch_uid="accounts.ws_logout")
    from accounts.models import APIToken

    post_save.connect(_token_saved, sender=APIToken, dispatch_uid="accounts.token_saved")
    post_delete.connect(lambda **kwargs: _announce("token deleted"), sender=APIToken, weak=False, dispatch_uid="accounts.token_deleted")
