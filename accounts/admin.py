from django.contrib import admin
from django.utils import timezone

from accounts.models import APIToken


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "read_only", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["read_only", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "user__username", "lookup"]
    readonly_fields = ["lookup", "created_at", "last_used_at", "revoked_at"]
    fields = ["user", "name", "read_only", "expires_at", "lookup", "created_at", "last_used_at", "revoked_at"]
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
        self.message_user(request, f"{count} token(s) revoked.")
