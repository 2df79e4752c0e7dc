from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Count, Q
from django.http import Http404
from django.template import engines
from django.template.response import TemplateResponse

from containers import host_rules, operations, services
from containers.admin_base import ObjectPermissionAdmin, VisibilityAdmin, VisibleHostFilter, holds_somewhere, visible_choices
from containers.api.serializers import HostSerializer
from containers.models import (
    BulkJob,
    BulkJobItem,
    Container,
    ContainerTag,
    DiskUsage,
    DockerHost,
    Event,
    EventDispatch,
    HostLease,
    MonitorInstance,
    ProfileSession,
    StatsBatch,
    Tag,
)
from containers.permissions import (
    Visibility,
    has_container_perm,
    has_host_perm,
    visible_containers,
    visible_hosts,
)


def visible_tags(user):
    """Tags on containers the user may view (a tag's name can say what runs where)."""
    return Tag.objects.filter(container_links__container__in=visible_containers(user).values("key")).distinct()


VisibleTagFilter = visible_choices(visible_tags)


class HiddenIsNotFoundMixin:
    """What a user may not see is 404 on its change, history and delete pages, as in the API
    (Django's admin would redirect to the index with "does not exist?")."""

    def _must_exist(self, request, object_id):
        if object_id is not None and self.get_object(request, unquote(object_id)) is None:
            raise Http404("No such object.")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self._must_exist(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self._must_exist(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        self._must_exist(request, object_id)
        return super().delete_view(request, object_id, extra_context)


def _visibility(request) -> Visibility:
    """The user's Visibility, read once per request."""
    cached = getattr(request, "_dockmon_visibility", None)
    if cached is None:
        cached = request._dockmon_visibility = Visibility.for_user(request.user)
    return cached


class RowVisibilityAdmin(HiddenIsNotFoundMixin, VisibilityAdmin):
    """Rows about a host and/or a container (events, profile sessions): listed by the same rule
    as the API and the UI (Visibility.filter_rows)."""

    host_field = "host_id"
    key_field = "container_key"

    def visible_queryset(self, request):
        return _visibility(request).filter_rows(self.model.objects.all(), host_field=self.host_field, key_field=self.key_field)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return _visibility(request).filter_rows(queryset, host_field=self.host_field, key_field=self.key_field)

    def _any_visible(self, request) -> bool:
        # From the user's visibility alone (no query): some host or container, or everything.
        visibility = _visibility(request)
        return visibility.everything or bool(visibility.host_ids or visibility.container_keys)


class HostAdminForm(forms.ModelForm):
    # Secrets are write-only: an empty field keeps what is stored.
    tls_ca = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, help_text="PEM; leave empty to keep the stored value")
    tls_cert = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, help_text="PEM; leave empty to keep the stored value")
    tls_key = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, help_text="PEM; never shown; leave empty to keep")
    clear_tls = forms.BooleanField(required=False, help_text="Remove the stored TLS material")

    # Set per request by DockerHostAdmin.get_form.
    request_user = None
    may_change_connection = True

    class Meta:
        model = DockerHost
        fields = ["name", "url", "enabled", "tls_ca", "tls_cert", "tls_key"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("tls_ca", "tls_cert", "tls_key"):
            if name in self.fields:
                self.initial[name] = ""

    def clean(self):
        cleaned = super().clean()
        data = {"name": cleaned.get("name", "")}
        if "url" in self.fields:
            data["url"] = cleaned.get("url", "")
        for name in ("tls_ca", "tls_cert", "tls_key"):
            if cleaned.get(name):
                data[name] = cleaned[name]
            elif cleaned.get("clear_tls"):
                data[name] = ""
        if self.instance.pk and not self.may_change_connection:
            # The form has no such fields for them; refused here too, whatever was posted.
            changing = host_rules.connection_changes(self.instance, data)
            if changing:
                raise forms.ValidationError(host_rules.refusal(changing))
        # The same validation as the API, so both surfaces accept exactly the same input.
        serializer = HostSerializer(instance=self.instance if self.instance.pk else None, data=data, partial=bool(self.instance.pk),
                                    context={"user": self.request_user})
        if not serializer.is_valid():
            for field, errors in serializer.errors.items():
                target = field if field in self.fields else None
                for error in errors:
                    self.add_error(target, error)
            return cleaned
        if "url" in self.fields:
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
class DockerHostAdmin(HiddenIsNotFoundMixin, ObjectPermissionAdmin):
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

    def _connection_locked(self, request, obj) -> bool:
        # Creating a host needs the model's add permission (administrators) anyway.
        return obj is not None and not host_rules.may_change_connection(request.user)

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return ["url", *fields] if self._connection_locked(request, obj) else fields

    def get_exclude(self, request, obj=None):
        excluded = list(super().get_exclude(request, obj) or [])
        if self._connection_locked(request, obj):
            excluded += [*host_rules.TLS_FIELDS, "clear_tls"]
        return excluded or None

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        locked = self._connection_locked(request, obj)
        attrs = {"request_user": request.user, "may_change_connection": not locked}
        if locked:
            # A grant holder may rename or disable their host, never re-point it: no URL (shown
            # read-only) and no TLS fields at all (the declared ones too).
            attrs.update(dict.fromkeys((*host_rules.TLS_FIELDS, "clear_tls")))
        return type(form.__name__, (form,), attrs)

    @admin.display(description="Containers", ordering="n_containers")
    def container_count(self, obj):
        return obj.n_containers

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change or set(form.changed_data) & {"url", "tls_ca", "tls_cert", "tls_key", "clear_tls"}:
            services.test_host(obj)

    # Contacts the engine of each selected host (a read: version and counts); viewing is enough,
    # as for POST /api/v1/hosts/{id}/test/.
    @admin.action(description="Test connection", permissions=["view"])
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


class RenameForm(forms.Form):
    """One new name per selected container (the intermediate page of the rename action)."""

    def __init__(self, *args, containers=(), **kwargs):
        from containers.api.serializers import DOCKER_NAME

        super().__init__(*args, **kwargs)
        self.containers = list(containers)
        for container in self.containers:
            self.fields[self.field_name(container)] = forms.RegexField(
                DOCKER_NAME, max_length=255, initial=container.name, label=f"{container.name} on {container.host.name}",
                error_messages={"invalid": "Use letters, digits, '_', '.' and '-' (starting with a letter or digit)."},
            )

    @staticmethod
    def field_name(container) -> str:
        return f"name_{container.short_id}_{str(container.host_id)[:8]}"


_RENAME_PAGE = engines["django"].from_string("""{% extends "admin/base_site.html" %}
{% block content %}
<p>New names (containers left unchanged are not renamed):</p>
<form method="post">{% csrf_token %}
<table>{{ form.as_table }}</table>
{% for container in form.containers %}<input type="hidden" name="_selected_action" value="{{ container.pk }}">{% endfor %}
<input type="hidden" name="action" value="op_rename">
<input type="hidden" name="apply" value="1">
<p><input type="submit" value="Rename"> <a href="">Cancel</a></p>
</form>
{% endblock %}""")
RENAME_MAX = 50


@admin.register(Container)
class ContainerAdmin(HiddenIsNotFoundMixin, ObjectPermissionAdmin):
    list_display = ["name", "host", "state", "health", "image", "short_id", "started_at", "removed_at"]
    list_filter = [RemovedFilter, "state", "health", ("host", VisibleHostFilter), ("tags", VisibleTagFilter)]
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
    actions = [f"op_{name}" for name in ("start", "stop", "restart", "kill", "pause", "unpause", "remove", "remove_force")] + ["op_rename"]

    def get_queryset(self, request):
        return visible_containers(request.user, queryset=super().get_queryset(request))

    def _split_operable(self, request, queryset) -> list[Container]:
        """The selected containers the user may operate; the others are reported, not touched."""
        allowed, refused = [], []
        for container in queryset.select_related("host"):
            (allowed if has_container_perm(request.user, "operate", container) else refused).append(container)
        for container in refused:
            self.message_user(request, f"{container.name}: you may view this container but not operate it.", messages.ERROR)
        return allowed

    def _bulk(self, request, queryset, action, *, force: bool = False):
        user = request.user
        permitted = self._split_operable(request, queryset)
        if not permitted:
            return
        results = operations.bulk(
            [c.key for c in permitted], action, user=user,
            options={"force": force},
            # Checked again where the work runs: a grant revoked meanwhile stops it there too.
            allowed=lambda c: has_container_perm(user, "operate", c),
        )
        done = [r for r in results if r.ok]
        label = "remove (force)" if force else action
        if done:
            self.message_user(request, f"{label}: {len(done)} container(s) done.", messages.SUCCESS)
        for failure in (r for r in results if not r.ok):
            self.message_user(request, f"{label} {failure.key}: {failure.error}", messages.ERROR)

    @admin.action(description="Rename…", permissions=["operate"])
    def op_rename(self, request, queryset):
        """An intermediate page asks for the new names; submitting it renames on the engine."""
        containers = self._split_operable(request, queryset.order_by("name"))
        if not containers:
            return None
        if len(containers) > RENAME_MAX:
            self.message_user(request, f"Rename at most {RENAME_MAX} containers at a time.", messages.ERROR)
            return None
        form = RenameForm(request.POST if "apply" in request.POST else None, containers=containers)
        if form.is_bound and form.is_valid():
            for container in containers:
                name, old_name = form.cleaned_data[form.field_name(container)].lstrip("/"), container.name
                if name == old_name:
                    continue
                try:
                    operations.rename(container, name, user=request.user)
                except operations.OperationError as exc:
                    self.message_user(request, f"rename {old_name}: {exc}", messages.ERROR)
                else:
                    self.message_user(request, f"{old_name} renamed to {name}.", messages.SUCCESS)
            return None
        context = {**self.admin_site.each_context(request), "title": "Rename containers", "form": form,
                   "opts": self.model._meta}
        return TemplateResponse(request, _RENAME_PAGE, context)

    def visible_queryset(self, request):
        return visible_containers(request.user)

    def has_add_permission(self, request):
        return False

    def has_operate_permission(self, request):
        # Offered to who may operate some container; each selected one is checked again.
        return holds_somewhere(request.user, "operate")


class TagOriginFilter(admin.SimpleListFilter):
    title = "origin"
    parameter_name = "origin"

    def lookups(self, request, model_admin):
        return [("user", "Set by people"), ("compose", "From compose labels"), ("unused", "On no present container")]

    def queryset(self, request, queryset):
        if self.value() in ("user", "compose"):
            return queryset.filter(container_links__source=self.value()).distinct()
        if self.value() == "unused":
            return queryset.filter(n=0)
        return queryset


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "color", "n_containers"]
    list_filter = [TagOriginFilter, "color"]
    search_fields = ["name"]

    def get_queryset(self, request):
        # The count is of present containers this user may see (never of others' containers).
        counted = Q(container_links__container__removed_at__isnull=True)
        if not request.user.is_superuser:
            counted &= Q(container_links__container__in=visible_containers(request.user).values("key"))
        return super().get_queryset(request).annotate(n=Count("container_links", filter=counted))

    @admin.display(description="Containers", ordering="n")
    def n_containers(self, obj):
        return obj.n


@admin.register(Event)
class EventAdmin(RowVisibilityAdmin):
    list_display = ["ts", "category", "type", "severity", "host", "container_name", "message", "actor"]
    list_filter = ["category", "severity", "type", ("host", VisibleHostFilter)]
    search_fields = ["message", "container_name", "container_key", "type"]
    date_hierarchy = "ts"
    list_select_related = ["host", "actor"]
    readonly_fields = ["ts", "category", "type", "severity", "host", "container_key", "container_name", "message", "data", "actor"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(StatsBatch)
class StatsBatchAdmin(admin.ModelAdmin):
    list_display = ["host", "tier", "ts", "containers"]
    list_filter = ["tier", ("host", VisibleHostFilter)]
    search_fields = ["host__name", "host__url"]
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
    list_filter = [("host", VisibleHostFilter)]
    search_fields = ["host__name", "host__url"]
    date_hierarchy = "ts"
    actions = ["refresh_now"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(host__in=visible_hosts(request.user)).select_related("host")

    def has_operate_permission(self, request):
        return holds_somewhere(request.user, "operate")

    # Runs `docker system df` on each engine, which is heavy on a big host: for who may operate
    # the host (checked per host), not for every viewer.
    @admin.action(description="Measure these hosts again now", permissions=["operate"])
    def refresh_now(self, request, queryset):
        from containers.engine import EngineError

        hosts = {row.host for row in queryset}
        for host in sorted(hosts - {h for h in hosts if has_host_perm(request.user, "operate", h)}, key=str):
            self.message_user(request, f"{host.name}: you may view this host but not operate it.", messages.ERROR)
        for host in {h for h in hosts if has_host_perm(request.user, "operate", h)}:
            try:
                services.record_disk_usage(host)
            except EngineError as exc:
                self.message_user(request, f"{host.name}: {exc}", messages.ERROR)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ProfileSession)
class ProfileSessionAdmin(RowVisibilityAdmin):
    list_display = ["container_name", "host", "user", "started_at", "ended_at", "end_reason", "sample_count"]
    list_filter = [("host", VisibleHostFilter), "end_reason"]
    search_fields = ["container_name", "container_key"]
    date_hierarchy = "started_at"
    list_select_related = ["host", "user"]
    readonly_fields = ["container_key", "container_name", "host", "user", "started_at", "ended_at", "end_reason", "sample_count", "samples"]

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


class SuperuserReadOnlyAdmin(admin.ModelAdmin):
    """Bookkeeping the processes write themselves: shown to superusers, never edited by hand."""

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(MonitorInstance)
class MonitorInstanceAdmin(SuperuserReadOnlyAdmin):
    """The running monitor processes (containers.leases): which machine, since when, how many
    hosts each watches."""

    list_display = ["id", "hostname", "pid", "shard", "hosts_watched", "started_at", "heartbeat_at"]
    list_filter = ["hostname", "shard"]
    search_fields = ["id", "hostname"]
    readonly_fields = ["id", "hostname", "pid", "process_started", "shard", "hosts_watched", "started_at", "heartbeat_at"]


@admin.register(HostLease)
class HostLeaseAdmin(SuperuserReadOnlyAdmin):
    """Which monitor watches each host. "Release" frees a lease at once (its monitor stops
    watching the host on its next round and another one takes it)."""

    list_display = ["host", "owner", "expires_at", "acquired_at"]
    list_filter = ["owner"]
    search_fields = ["host__name", "owner"]
    readonly_fields = ["host", "owner", "expires_at", "acquired_at"]
    actions = ["release"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("host")

    def has_delete_permission(self, request, obj=None):
        return False

    def has_release_permission(self, request):
        return request.user.is_superuser

    @admin.action(description="Release (another monitor takes the host)", permissions=["release"])
    def release(self, request, queryset):
        count = queryset.update(owner="", expires_at=None)
        self.message_user(request, f"Released {count} lease(s).", messages.SUCCESS)


def _operation_action(name: str, label: str, *, action: str | None = None, force: bool = False):
    # Start/stop/... on the engine: `operate` on each container (checked in ContainerAdmin._bulk).
    @admin.action(description=label, permissions=["operate"])
    def run(modeladmin, request, queryset):
        modeladmin._bulk(request, queryset, action or name, force=force)

    run.__name__ = f"op_{name}"
    return run


for _name, _label in (("start", "Start"), ("stop", "Stop"), ("restart", "Restart"), ("kill", "Kill"),
                      ("pause", "Pause"), ("unpause", "Unpause"), ("remove", "Remove (stopped ones only)")):
    setattr(ContainerAdmin, f"op_{_name}", _operation_action(_name, _label))
ContainerAdmin.op_remove_force = _operation_action("remove_force", "Remove (force: running ones too)", action="remove", force=True)


@admin.register(EventDispatch)
class EventDispatchAdmin(SuperuserReadOnlyAdmin):
    """The bus's outbox: stored events whose subscribers have not run yet, and which process holds each."""

    list_display = ["event", "claimed_by", "claimed_at"]
    search_fields = ["claimed_by", "event__type"]
    list_select_related = ["event"]
