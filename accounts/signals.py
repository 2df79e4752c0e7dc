"""Audit hooks for Django's own records: admin LogEntry rows and logins."""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts import audit

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
