from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q

from containers import operations, services
from containers.api.serializers import HostSerializer
from containers.models import (
    BulkJob,
    BulkJobItem,
    Container,
    ContainerTag,
    DiskUsage,
    DockerHost,
    Event,
    ProfileSession,
    StatsBatch,
    Tag,
)
from dockmon_site.admin_mixins import ObjectPermissionAdmin
from dockmon_site.permissions import has_container_perm, visible_containers, visible_hosts


class HostAdminForm(forms.ModelForm):
    # Secrets are write-only: an empty field keeps what is stored.
    tls_ca = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, help_text="PEM; leave empty to keep the stored value")
    tls_cert = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, help_text="PEM; leave empty to keep the stored value")
    tls_key = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, help_text="PEM; never shown; leave empty to keep")
    clear_tls = forms.BooleanField(required=False, help_text="Remove the stored TLS material")

    class Meta:
        model = DockerHost
        fields = ["name", "url", "enabled", "tls_ca", "tls_cert", "tls_key"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("tls_ca", "tls_cert", "tls_key"):
            self.initial[name] = ""

    def clean(self):
        cleaned = super().clean()
        data = {"name": cleaned.get("name", ""), "url": cleaned.get("url", "")}
        for name in ("tls_ca", "tls_cert", "tls_key"):
            if cleaned.get(name):
                data[name] = cleaned[name]
            elif cleaned.get("clear_tls"):
                data[name] = ""
        # The same validation as the API, so both surfaces accept exactly the same input.
        serializer = HostSerializer(instance=self.instance if self.instance.pk else None, data=data, partial=bool(self.instance.pk))
        if not serializer.is_valid():
            for field, errors in serializer.errors.items():
                target = field if field in self.fields else None
                for error in errors:
                    self.add_error(target, error)
            return cleaned
        cleaned["url"] = serializer.validated_data["url"]
        for name in ("tls_ca", "tls_cert", "tls_key"):
            if name in serializer.validated_data:
                cleaned[name] = serializer.validated_data[name]
        return cleaned

    def save(self, commit=True):
        host = super().save(commit=False)
        stored = DockerHost.objects.filter(pk=host.pk).first() if host.pk else None
        for name in ("tls_ca", "tls_cert", "tls_key"):
            if not self.cleaned_data.get(name) and not self.cleaned_data.get("clear_tls") and stored is not None:
                setattr(host, name, getattr(stored, name))
        if commit:
            host.save()
        return host


@admin.register(DockerHost)
class DockerHostAdmin(ObjectPermissionAdmin):
    form = HostAdminForm
    list_display = ["name", "url", "status", "enabled", "engine_version", "container_count", "last_seen_at"]
    list_filter = ["status", "enabled"]
    search_fields = ["name", "url", "engine_name"]
    readonly_fields = ["id", "status", "last_error", "engine_version", "api_version", "engine_id", "engine_name", "os", "last_seen_at", "status_changed_at", "created_at"]
    actions = ["test_connection"]

    def get_queryset(self, request):
        qs = super().get_queryset(request).annotate(
            n_containers=Count("containers", filter=Q(containers__removed_at__isnull=True))
        )
        return qs.filter(pk__in=visible_hosts(request.user).values("pk"))

    def visible_queryset(self, request):
        return visible_hosts(request.user)

    @admin.display(description="Containers", ordering="n_containers")
    def container_count(self, obj):
        return obj.n_containers

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change or set(form.changed_data) & {"url", "tls_ca", "tls_cert", "tls_key", "clear_tls"}:
            services.test_host(obj)

    @admin.action(description="Test connection")
    def test_connection(self, request, queryset):
        for host in queryset:
            result = services.test_host(host)
            if result["ok"]:
                self.message_user(request, f"{host.name}: online, Docker {result['engine_version']} ({result['elapsed_ms']} ms)", messages.SUCCESS)
            else:
                self.message_user(request, f"{host.name}: {result['status']}: {result['error']}", messages.ERROR)


class ContainerTagInline(admin.TabularInline):
    model = ContainerTag
    extra = 0
    autocomplete_fields = ["tag"]


class RemovedFilter(admin.SimpleListFilter):
    title = "presence"
    parameter_name = "present"

    def lookups(self, request, model_admin):
        return [("yes", "On the engine"), ("no", "Removed")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(removed_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(removed_at__isnull=False)
        return queryset


@admin.register(Container)
class ContainerAdmin(ObjectPermissionAdmin):
    list_display = ["name", "host", "state", "health", "image", "short_id", "started_at", "removed_at"]
    list_filter = [RemovedFilter, "state", "health", "host", "tags"]
    search_fields = ["name", "image", "key", "compose_project"]
    list_select_related = ["host"]
    inlines = [ContainerTagInline]
    # Engine facts are read-only: the engine is the source of truth.
    readonly_fields = [
        "key", "host", "short_id", "container_id", "name", "image", "image_id", "command", "state", "status", "health",
        "exit_code", "restart_count", "labels", "ports", "compose_project", "compose_service", "created_at",
        "started_at", "finished_at", "removed_at", "replaced_by", "first_seen_at", "updated_at",
    ]
    exclude = ["tags"]
    actions = [f"op_{name}" for name in ("start", "stop", "restart", "kill", "pause", "unpause", "remove")]

    def get_queryset(self, request):
        return visible_containers(request.user, queryset=super().get_queryset(request))

    def _bulk(self, request, queryset, action):
        user = request.user
        results = operations.bulk(
            list(queryset.values_list("key", flat=True)), action, user=user,
            options={"force": action == "remove"},
            allowed=lambda c: has_container_perm(user, "operate", c),
        )
        done = [r for r in results if r.ok]
        if done:
            self.message_user(request, f"{action}: {len(done)} container(s) done.", messages.SUCCESS)
        for failure in (r for r in results if not r.ok):
            self.message_user(request, f"{action} {failure.key}: {failure.error}", messages.ERROR)

    def visible_queryset(self, request):
        return visible_containers(request.user)

    def has_add_permission(self, request):
        return False


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "color", "n_containers"]
    search_fields = ["name"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n=Count("container_links"))

    @admin.display(description="Containers", ordering="n")
    def n_containers(self, obj):
        return obj.n


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["ts", "category", "type", "severity", "host", "container_name", "message", "actor"]
    list_filter = ["category", "severity", "type", "host"]
    search_fields = ["message", "container_name", "container_key", "type"]
    date_hierarchy = "ts"
    list_select_related = ["host", "actor"]
    readonly_fields = ["ts", "category", "type", "severity", "host", "container_key", "container_name", "message", "data", "actor"]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        keys = visible_containers(request.user).values("key")
        return qs.filter(Q(host__in=visible_hosts(request.user)) | Q(container_key__in=keys))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(StatsBatch)
class StatsBatchAdmin(admin.ModelAdmin):
    list_display = ["host", "tier", "ts", "containers"]
    list_filter = ["tier", "host"]
    date_hierarchy = "ts"
    readonly_fields = ["host", "tier", "ts", "data"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(host__in=visible_hosts(request.user)).select_related("host")

    @admin.display(description="Containers")
    def containers(self, obj):
        return max(0, len(obj.data) - 1)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DiskUsage)
class DiskUsageAdmin(admin.ModelAdmin):
    list_display = ["host", "ts", "images_count", "images_size", "containers_size", "volumes_size", "build_cache_size"]
    list_filter = ["host"]
    date_hierarchy = "ts"
    actions = ["refresh_now"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(host__in=visible_hosts(request.user)).select_related("host")

    @admin.action(description="Measure these hosts again now")
    def refresh_now(self, request, queryset):
        from containers.engine import EngineError

        for host in {row.host for row in queryset}:
            try:
                services.record_disk_usage(host)
            except EngineError as exc:
                self.message_user(request, f"{host.name}: {exc}", messages.ERROR)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ProfileSession)
class ProfileSessionAdmin(admin.ModelAdmin):
    list_display = ["container_name", "host", "user", "started_at", "ended_at", "end_reason", "sample_count"]
    list_filter = ["host", "end_reason"]
    search_fields = ["container_name", "container_key"]
    date_hierarchy = "started_at"
    readonly_fields = ["container_key", "container_name", "host", "user", "started_at", "ended_at", "end_reason", "sample_count", "samples"]

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("host", "user")
        if request.user.is_superuser:
            return qs
        keys = visible_containers(request.user).values("key")
        return qs.filter(Q(host__in=visible_hosts(request.user)) | Q(container_key__in=keys))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class BulkJobItemInline(admin.TabularInline):
    model = BulkJobItem
    fields = ["position", "key", "status", "ok", "state", "http_status", "error", "finished_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(BulkJob)
class BulkJobAdmin(admin.ModelAdmin):
    """Bulk operations (API and UI), read-only: one's own, or everyone's for a superuser."""

    list_display = ["created_at", "action", "user", "status", "total", "succeeded", "failed", "background", "finished_at"]
    list_filter = ["status", "action", "background"]
    search_fields = ["user__username", "items__key"]
    date_hierarchy = "created_at"
    readonly_fields = ["id", "action", "options", "user", "status", "background", "total", "succeeded", "failed", "error",
                       "created_at", "started_at", "finished_at"]
    inlines = [BulkJobItemInline]

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("user")
        return qs if request.user.is_superuser else qs.filter(user=request.user)

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _operation_action(name: str, label: str):
    @admin.action(description=label)
    def run(modeladmin, request, queryset):
        modeladmin._bulk(request, queryset, name)

    run.__name__ = f"op_{name}"
    return run


for _name, _label in (("start", "Start"), ("stop", "Stop"), ("restart", "Restart"), ("kill", "Kill"),
                      ("pause", "Pause"), ("unpause", "Unpause"), ("remove", "Remove (force)")):
    setattr(ContainerAdmin, f"op_{_name}", _operation_action(_name, _label))
