from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from containers.admin_base import ContainerScopedAdmin, VisibleHostFilter
from containers.permissions import has_container_perm
from updates import lookups, services
from updates.models import (
    AutoUpdate,
    ContainerUpdate,
    PolicyCategory,
    RegistryCredential,
    RolledBackDigest,
    UpdatePolicy,
    UpdateRun,
)
from updates.policies import decide


@admin.register(ContainerUpdate)
class ContainerUpdateAdmin(ContainerScopedAdmin):
    list_display = ["container_name", "host_name", "image", "status", "update_available", "current_version",
                    "latest_version", "tracking_mode", "checked_at"]
    list_filter = ["status", "update_available", "tracking_mode", "include_prerelease", ("container__host", VisibleHostFilter)]
    search_fields = ["container__name", "container__key", "image"]
    list_select_related = ["container", "container__host"]
    readonly_fields = ["container", "image", "current_digest", "current_version", "latest_digest", "latest_version",
                       "update_available", "status", "error", "checked_at", "available_since", "policy_explanation"]
    fields = ["container", "tracking_mode", "include_prerelease", *readonly_fields[1:]]
    actions = ["check_now"]

    @admin.display(ordering="container__name", description="container")
    def container_name(self, obj):
        return obj.container.name

    @admin.display(ordering="container__host__name", description="host")
    def host_name(self, obj):
        return obj.container.host.name

    @admin.display(description="update policy")
    def policy_explanation(self, obj):
        decision = decide(obj.container)
        return f"{decision.policy} — {decision.reason}"

    def has_add_permission(self, request):
        return False  # rows come from update checks

    # Asks the registries about the selected (visible) containers' images; nothing on the
    # engines changes, so viewing is enough, as for POST /api/v1/updates/check/.
    @admin.action(description="Check the selected containers for updates now", permissions=["view"])
    def check_now(self, request, queryset):
        keys = list(queryset.values_list("container_id", flat=True))
        summary = services.check(container_keys=keys, force=True)
        self.message_user(
            request,
            f"Checked {summary.total} container(s): {len(summary.updates)} with an update, statuses {summary.statuses}.",
            messages.SUCCESS,
        )


@admin.register(UpdatePolicy)
class UpdatePolicyAdmin(ContainerScopedAdmin):
    list_display = ["container", "policy", "note", "created_by", "updated_at"]
    list_filter = ["policy"]
    search_fields = ["container__name", "container__key", "note"]
    list_select_related = ["container", "created_by"]
    raw_id_fields = ["container"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    actions = ["set_allow", "set_warn", "set_block"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def _set(self, request, queryset, policy):
        allowed = [p.pk for p in queryset.select_related("container__host") if has_container_perm(request.user, "change", p.container)]
        count = UpdatePolicy.objects.filter(pk__in=allowed).update(policy=policy)
        self.message_user(request, f"{count} policy(ies) set to {policy}.", messages.SUCCESS)

    @admin.action(description="Set to allow", permissions=["change_some"])
    def set_allow(self, request, queryset):
        self._set(request, queryset, "allow")

    @admin.action(description="Set to warn", permissions=["change_some"])
    def set_warn(self, request, queryset):
        self._set(request, queryset, "warn")

    @admin.action(description="Set to block", permissions=["change_some"])
    def set_block(self, request, queryset):
        self._set(request, queryset, "block")


class PolicyCategoryForm(forms.ModelForm):
    patterns = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), required=False,
                               help_text="One substring per line, matched on container name or image")

    class Meta:
        model = PolicyCategory
        fields = ["name", "label", "policy", "enabled", "patterns"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance and self.instance.pk:
            self.initial["patterns"] = "\n".join(self.instance.patterns or [])

    def clean_patterns(self):
        lines = [line.strip() for line in (self.cleaned_data.get("patterns") or "").splitlines()]
        return list(dict.fromkeys(line for line in lines if line))


@admin.register(PolicyCategory)
class PolicyCategoryAdmin(admin.ModelAdmin):
    form = PolicyCategoryForm
    list_display = ["name", "label", "policy", "enabled", "pattern_list", "builtin"]
    list_filter = ["enabled", "policy", "builtin"]
    search_fields = ["name", "label"]
    actions = ["enable", "disable"]

    @admin.display(description="patterns")
    def pattern_list(self, obj):
        return ", ".join(obj.patterns or [])

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.builtin:
            return False
        return super().has_delete_permission(request, obj)

    @admin.action(description="Enable the selected categories", permissions=["change"])
    def enable(self, request, queryset):
        self.message_user(request, f"{queryset.update(enabled=True)} category(ies) enabled.", messages.SUCCESS)

    @admin.action(description="Disable the selected categories", permissions=["change"])
    def disable(self, request, queryset):
        self.message_user(request, f"{queryset.update(enabled=False)} category(ies) disabled.", messages.SUCCESS)


class RegistryCredentialForm(forms.ModelForm):
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False,
                               help_text="Leave empty to keep the stored password")

    class Meta:
        model = RegistryCredential
        fields = ["registry", "username", "password", "ca_cert", "insecure", "note"]

    def clean_password(self):
        value = self.cleaned_data.get("password")
        if not value and self.instance and self.instance.pk:
            return self.instance.password  # a password is never shown, so empty means unchanged
        # Typed in this change: it goes with the registry as changed here (the model drops a
        # stored password that was not given again when the registry, insecure or CA moves).
        self.instance.password_supplied = bool(value)
        return value or ""


@admin.register(RegistryCredential)
class RegistryCredentialAdmin(admin.ModelAdmin):
    form = RegistryCredentialForm
    list_display = ["registry", "username", "insecure", "has_ca", "updated_at"]
    list_filter = ["insecure"]
    search_fields = ["registry", "username", "note"]
    actions = ["forget_cached_answers"]

    @admin.display(boolean=True, description="custom CA")
    def has_ca(self, obj):
        return bool(obj.ca_cert)

    @admin.action(description="Forget cached registry answers (next check asks again)", permissions=["change"])
    def forget_cached_answers(self, request, queryset):
        lookups.clear_cache()
        self.message_user(request, "Cached registry answers forgotten.", messages.SUCCESS)


# ---------------------------------------------------------------------------
# Update runs, auto-update, rolled-back digests
# ---------------------------------------------------------------------------
def _update_selected(modeladmin, request, containers, *, force: bool) -> None:
    from updates import runqueue
    from updates.choices import RunTrigger

    started, refused = 0, []
    for container in containers:
        try:
            runqueue.request_update(container, user=request.user, force=force, trigger=RunTrigger.ADMIN)
            started += 1
        except runqueue.RunRefused as exc:
            refused.append(f"{container.name}: {exc}")
    if started:
        modeladmin.message_user(request, f"{started} update(s) started; follow them under Update runs.", messages.SUCCESS)
    for text in refused[:20]:
        modeladmin.message_user(request, text, messages.WARNING)


# Recreates containers on their engines: `update` on each (runqueue.check_allowed refuses the others).
@admin.action(description="Update the selected containers now (policy allow)", permissions=["update_some"])
def update_now(modeladmin, request, queryset):
    _update_selected(modeladmin, request, [row.container for row in queryset.select_related("container__host")], force=False)


@admin.action(description="Update the selected containers now, forcing warn policies", permissions=["update_some"])
def update_now_forced(modeladmin, request, queryset):
    _update_selected(modeladmin, request, [row.container for row in queryset.select_related("container__host")], force=True)


ContainerUpdateAdmin.actions = [*ContainerUpdateAdmin.actions, update_now, update_now_forced]


@admin.register(UpdateRun)
class UpdateRunAdmin(admin.ModelAdmin):
    """Runs are written by the executor only: read-only here, visible as their container is."""

    list_display = ["id", "container_name", "host", "status", "stage", "trigger", "requested_by", "created_at", "finished_at"]
    list_filter = ["status", "stage", "trigger", ("host", VisibleHostFilter)]
    search_fields = ["container_name", "old_key", "new_key", "image", "error", "batch"]
    list_select_related = ["host", "requested_by"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in UpdateRun._meta.fields]
    actions = ["repair_now"]

    def get_queryset(self, request):
        from updates.api.views import runs_visible_to

        return runs_visible_to(request.user, super().get_queryset(request))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser and (obj is None or not obj.is_active)

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_repair_permission(self, request):
        return request.user.is_superuser

    @admin.action(description="Repair interrupted updates and orphaned backups now", permissions=["repair"])
    def repair_now(self, request, queryset):
        from updates import crash_repair

        if not request.user.is_superuser:
            self.message_user(request, "Only administrators may run the repair.", messages.ERROR)
            return
        summary = crash_repair.repair()
        self.message_user(request, f"Repaired {len(summary['runs'])} run(s); backups: {summary['backups'] or 'none'}.", messages.SUCCESS)


@admin.register(AutoUpdate)
class AutoUpdateAdmin(ContainerScopedAdmin):
    related_action = "update"  # auto-update recreates the container: the update right
    list_display = ["container", "enabled", "days", "start", "end", "timezone", "updated_at"]
    list_filter = ["enabled", "timezone"]
    search_fields = ["container__name", "container__key"]
    list_select_related = ["container"]
    raw_id_fields = ["container"]

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return super().has_change_permission(request)
        return has_container_perm(request.user, "update", obj.container)


@admin.register(RolledBackDigest)
class RolledBackDigestAdmin(ContainerScopedAdmin):
    """Deleting a row lets auto-update try that release again."""

    list_display = ["container", "digest", "run", "created_at"]
    search_fields = ["container__name", "container__key", "digest"]
    list_select_related = ["container"]
    readonly_fields = ["container", "digest", "run", "reason", "created_at"]

    def has_add_permission(self, request):
        return False
