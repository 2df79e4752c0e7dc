from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.utils import timezone

from accounts.forms import LockoutAwareAdminLoginForm
from accounts.models import APIToken, AuditEntry

admin.site.login_form = LockoutAwareAdminLoginForm  # says when failed logins make someone wait


User = get_user_model()
# Django's own user admin, replaced by one that keeps superuser powers to superusers.
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class DockMonUserAdmin(DjangoUserAdmin):
    """Users. An administrator who is not a superuser (the Administrators role) manages ordinary
    accounts, but cannot make anyone staff or superuser, and cannot touch a superuser at all:
    no password change (the password form answers 403), no deactivation, no deletion. The same
    rules as /api/v1/users/."""

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += ["is_staff", "is_superuser"]
        return fields

    def _superuser_only(self, request, obj) -> bool:
        return obj is not None and obj.is_superuser and not request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        if self._superuser_only(request, obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if self._superuser_only(request, obj):
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        # The form has no such fields for them; refused here too, whatever reached this point.
        if not request.user.is_superuser:
            stored = User.objects.filter(pk=obj.pk).values("is_staff", "is_superuser").first() if change else None
            if (stored or {}).get("is_superuser") or obj.is_superuser:
                raise PermissionDenied("Only a superuser may change a superuser.")
            if obj.is_staff != bool((stored or {}).get("is_staff")):
                raise PermissionDenied("Only a superuser may make someone staff or take it away.")
        super().save_model(request, obj, form, change)


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    """API tokens. A token acts as its user, so nobody but a superuser mints one for someone
    else, and nobody moves a token to another user. Administrators see and revoke every token
    (revoking is how a leaked one is stopped) but change only their own."""

    list_display = ["name", "user", "prefix", "read_only", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["read_only", ("revoked_at", admin.EmptyFieldListFilter), ("user", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "user__username", "lookup"]
    readonly_fields = ["lookup", "created_at", "last_used_at", "revoked_at"]
    fields = ["user", "name", "read_only", "expires_at", "lookup", "created_at", "last_used_at", "revoked_at"]
    list_select_related = ["user"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if obj is None and not request.user.is_superuser:
            fields.remove("user")  # their own, set in save_model
        return fields

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return ["user", *fields] if obj is not None else fields

    def _others(self, request, obj) -> bool:
        return obj is not None and obj.user_id != request.user.pk and not request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return not self._others(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not self._others(request, obj) and super().has_delete_permission(request, obj)

    def has_revoke_permission(self, request):
        return request.user.has_perm("accounts.change_apitoken")

    def save_model(self, request, obj, form, change):
        if not change:
            if not request.user.is_superuser:
                obj.user = request.user
            token, raw = APIToken.issue(obj.user, name=obj.name, expires_at=obj.expires_at, read_only=obj.read_only)
            obj.pk = token.pk
            self.message_user(request, f"The new token (shown only now): {raw}")
            return
        if obj.user_id != APIToken.objects.filter(pk=obj.pk).values_list("user_id", flat=True).first():
            raise PermissionDenied("A token cannot be moved to another user.")
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        if count:
            from accounts.signals import access_changed

            access_changed.send(sender=APIToken, reason="tokens revoked")  # open WebSockets with these tokens close
        self.message_user(request, f"{count} token(s) revoked.")


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["ts", "username", "source", "action", "object_type", "object_repr", "status_code", "ip", "method", "path"]
    list_filter = ["source", "method", "status_code", "object_type", ("user", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["username", "action", "object_id", "object_repr", "path", "ip"]
    date_hierarchy = "ts"
    list_select_related = ["user"]
    actions = ["export_csv"]

    def get_queryset(self, request):
        # The same rule as /api/v1/audit/: administrators see every entry, others their own.
        queryset = super().get_queryset(request)
        if request.user.has_perm("accounts.view_auditentry"):
            return queryset
        return queryset.filter(user=request.user)

    # The record is append-only, whoever asks.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Export the selected entries as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        from accounts.api.views import write_csv

        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="dockmon-audit-{timezone.now():%Y%m%d-%H%M%S}.csv"'
        write_csv(response, queryset.order_by("-ts", "-id"))
        return response
