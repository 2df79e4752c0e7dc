"""Stacks in the admin: read-only (a stack's text is changed through the API, which validates it
with compose), with actions that start runs for those who hold `deploy` on the host."""

from __future__ import annotations

from django.contrib import admin, messages

from accounts import audit
from containers.admin_base import VisibilityAdmin, VisibleHostFilter
from containers.permissions import has_host_perm, permitted
from stacks import runs, services
from stacks.choices import RunKind
from stacks.models import Stack, StackRun
from stacks.tasks import execute_run


@admin.register(Stack)
class StackAdmin(VisibilityAdmin):
    list_display = ["name", "host", "source", "deployed_at", "updated_at"]
    list_filter = ["source", ("host", VisibleHostFilter)]
    search_fields = ["name", "host__name", "compose"]
    list_select_related = ["host"]
    # The env file (its values are secrets) and compose's rendered config (values interpolated)
    # are not shown here; the env's names are, masked as in the API for those without `deploy`.
    exclude = ["env", "config"]
    readonly_fields = [f.name for f in Stack._meta.fields if f.name not in ("id", "env", "config")] + ["env_names"]

    @admin.display(description="Env (values hidden)")
    def env_names(self, obj):
        return services.masked_env(obj.env)
    actions = ["deploy_selected", "stop_selected"]

    def visible_queryset(self, request):
        return permitted(request.user, Stack.objects.all())

    def get_queryset(self, request):
        return permitted(request.user, super().get_queryset(request))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _run_each(self, request, queryset, kind: str) -> None:
        started = refused = 0
        for stack in queryset.select_related("host"):
            # Guarded by `deploy` on the stack's host, row by row.
            if not has_host_perm(request.user, "deploy", stack.host):
                refused += 1
                continue
            diff = services.changes_only(services.diff(stack)) if kind == RunKind.DEPLOY else []
            try:
                run = runs.create_run(stack, kind, request.user, diff=diff)
            except runs.RunBusy as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            audit.record(request, f"stack.{kind}", obj=stack, changes={"run": run.pk, "host": str(stack.host_id), "diff": diff})
            execute_run.delay(run.pk)
            started += 1
        if started:
            self.message_user(request, f"{started} run(s) started.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"{refused} stack(s) skipped: you may not deploy on their host.", messages.ERROR)

    @admin.action(description="Deploy the selected stacks")
    def deploy_selected(self, request, queryset):
        self._run_each(request, queryset, RunKind.DEPLOY)

    @admin.action(description="Stop the selected stacks")
    def stop_selected(self, request, queryset):
        self._run_each(request, queryset, RunKind.STOP)


@admin.register(StackRun)
class StackRunAdmin(VisibilityAdmin):
    """Runs are written by stacks.runs only: read-only here, visible with their host."""

    list_display = ["id", "stack_name", "host", "kind", "status", "stage", "actor", "created_at", "finished_at"]
    list_filter = ["status", "kind", "stage", ("host", VisibleHostFilter)]
    search_fields = ["stack_name", "error", "log"]
    list_select_related = ["host", "actor"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in StackRun._meta.fields]
    actions = []

    def visible_queryset(self, request):
        return permitted(request.user, StackRun.objects.all())

    def get_queryset(self, request):
        return permitted(request.user, super().get_queryset(request))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
