from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpResponse
from django.utils import timezone

from accounts import lockout
from accounts.models import APIToken, AuditEntry


class LockoutAwareAuthenticationForm(AdminAuthenticationForm):
    """The admin login form, saying plainly when failed logins have locked the account or address."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "locked_out": "Too many failed logins for this account or address; try again later.",
    }

    def clean(self):
        username = self.cleaned_data.get("username")
        if lockout.is_locked(username, self.request):
            # Counted like a failure, so that hammering a locked account keeps it locked.
            lockout.register_failure(username, self.request)
            raise forms.ValidationError(self.error_messages["locked_out"], code="locked_out")
        return super().clean()


admin.site.login_form = LockoutAwareAuthenticationForm


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "read_only", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["read_only", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "user__username", "lookup"]
    readonly_fields = ["lookup", "created_at", "last_used_at", "revoked_at"]
    fields = ["user", "name", "read_only", "expires_at", "lookup", "created_at", "last_used_at", "revoked_at"]
    list_select_related = ["user"]
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if not change:
            token, raw = APIToken.issue(obj.user, name=obj.name, expires_at=obj.expires_at, read_only=obj.read_only)
            obj.pk = token.pk
            self.message_user(request, f"The new token (shown only now): {raw}")
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        if count:
            from accounts.grants import announce_permissions_changed

            announce_permissions_changed("tokens revoked")  # open WebSockets with these tokens close
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
