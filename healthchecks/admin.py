from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from rest_framework import serializers

from containers.admin_base import ContainerScopedAdmin, VisibleHostFilter
from healthchecks import restarts, services
from healthchecks.choices import CheckStatus
from healthchecks.models import AutoRestartConfig, CheckResult, HealthCheck, RestartAttempt


class HealthCheckAdminForm(forms.ModelForm):
    """The API's validation for the same fields: a URL the probe will accept (no metadata or
    link-local target), a status spec it can parse (stored normalised), a usable CA, a timeout
    shorter than the interval, no body keyword with HEAD."""

    class Meta:
        model = HealthCheck
        # Secrets (headers, basic auth password) are set through the API or the page, never here.
        fields = ["container", "name", "url", "method", "expected_status", "body_keyword", "basic_auth_user", "timeout_seconds",
                  "interval_seconds", "follow_redirects", "verify_tls", "tls_ca", "failure_threshold", "success_threshold",
                  "auto_restart", "enabled"]

    def _api_check(self, name: str, value):
        from healthchecks.api.serializers import HealthCheckSerializer

        try:
            return getattr(HealthCheckSerializer(), f"validate_{name}")(value)
        except serializers.ValidationError as exc:
            raise forms.ValidationError(" ".join(str(d) for d in exc.detail)) from None

    def clean_url(self):
        return self._api_check("url", self.cleaned_data.get("url", ""))

    def clean_expected_status(self):
        return self._api_check("expected_status", self.cleaned_data.get("expected_status", ""))

    def clean_tls_ca(self):
        return self._api_check("tls_ca", self.cleaned_data.get("tls_ca", ""))

    # Set per request by HealthCheckAdmin.get_form: may this user choose methods other than GET/HEAD?
    is_admin = False

    def clean_method(self):
        # As in the API: a method that can change things on the target (POST...) is chosen by
        # administrators only.
        from dockmon_site import outbound

        value = self.cleaned_data.get("method", "")
        if not (self.instance.pk and value == self.instance.method):
            try:
                outbound.check_method(value, admin=self.is_admin)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
        return value

    def clean(self):
        cleaned = super().clean()
        from dockmon_site import outbound

        method = str(cleaned.get("method") or "").upper()
        if self.instance.pk and method and method not in outbound.SAFE_METHODS and not self.is_admin and \
                "url" in cleaned and cleaned["url"] != self.instance.url:
            # Where a POST goes was approved by an administrator (healthchecks.models.HealthCheck.save).
            self.add_error("url", f"This check sends {method}: only an administrator may change its URL; switch it to GET or HEAD first.")
        timeout, interval = cleaned.get("timeout_seconds"), cleaned.get("interval_seconds")
        if timeout is not None and interval is not None and timeout >= interval:
            self.add_error("timeout_seconds", "The timeout must be shorter than the interval.")
        if cleaned.get("method") == "HEAD" and cleaned.get("body_keyword"):
            self.add_error("body_keyword", "A HEAD response has no body to search; use GET.")
        return cleaned


@admin.register(HealthCheck)
class HealthCheckAdmin(ContainerScopedAdmin):
    form = HealthCheckAdminForm
    list_display = ["__str__", "container_name", "method", "url", "status", "last_response_ms", "consecutive_failures",
                    "last_checked_at", "interval_seconds", "auto_restart", "enabled"]
    list_filter = ["status", "enabled", "auto_restart", "method", ("container__host", VisibleHostFilter)]
    search_fields = ["name", "url", "container__name", "container__key"]
    list_select_related = ["container", "container__host"]
    raw_id_fields = ["container"]
    readonly_fields = ["status", "status_changed_at", "last_checked_at", "last_response_ms", "last_status_code", "last_error",
                       "consecutive_failures", "consecutive_successes", "next_due_at", "lease_owner", "lease_expires_at",
                       "created_by", "created_at", "updated_at"]
    exclude = ["headers", "basic_auth_password"]  # secrets: set through the API, never shown
    actions = ["run_now", "enable", "disable", "reset_state"]

    @admin.display(ordering="container__name", description="container")
    def container_name(self, obj):
        return obj.container.name

    def get_form(self, request, obj=None, change=False, **kwargs):
        from accounts.roles import is_administrator

        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"is_admin": is_administrator(request.user)})

    # Sends each check's request now, on the user's behalf: `change` on its container.
    @admin.action(description="Run the selected checks now", permissions=["change_some"])
    def run_now(self, request, queryset):
        done = []
        for check in self._changeable(request, queryset):
            try:
                check, result = services.test_now(check)
            except services.CheckBusy:
                done.append(f"{check}: running already")
                continue
            done.append(f"{check}: {'OK' if result.ok else result.error} ({result.response_ms} ms)")
        self.message_user(request, "; ".join(done) or "Nothing you may run.", messages.INFO)

    @admin.action(description="Enable the selected checks", permissions=["change_some"])
    def enable(self, request, queryset):
        ids = [c.pk for c in self._changeable(request, queryset)]
        count = HealthCheck.objects.filter(pk__in=ids).update(enabled=True, next_due_at=timezone.now())
        self.message_user(request, f"Enabled {count} check(s).", messages.SUCCESS)

    @admin.action(description="Disable the selected checks", permissions=["change_some"])
    def disable(self, request, queryset):
        ids = [c.pk for c in self._changeable(request, queryset)]
        count = HealthCheck.objects.filter(pk__in=ids).update(enabled=False, status=CheckStatus.UNKNOWN)
        self.message_user(request, f"Disabled {count} check(s).", messages.SUCCESS)

    @admin.action(description="Reset status and counters", permissions=["change_some"])
    def reset_state(self, request, queryset):
        ids = [c.pk for c in self._changeable(request, queryset)]
        count = HealthCheck.objects.filter(pk__in=ids).update(
            status=CheckStatus.UNKNOWN, consecutive_failures=0, consecutive_successes=0, last_error="",
            status_changed_at=timezone.now(), next_due_at=timezone.now(),
        )
        self.message_user(request, f"Reset {count} check(s).", messages.SUCCESS)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        obj.next_due_at = timezone.now()
        super().save_model(request, obj, form, change)


@admin.register(CheckResult)
class CheckResultAdmin(ContainerScopedAdmin):
    container_path = "health_check__container"
    list_display = ["ts", "health_check", "status", "status_code", "response_ms", "error"]
    list_filter = ["status", ("health_check__container__host", VisibleHostFilter)]
    search_fields = ["health_check__name", "health_check__url", "health_check__container__name", "error"]
    list_select_related = ["health_check", "health_check__container"]
    date_hierarchy = "ts"

    def has_add_permission(self, request):
        return False  # results come from runs

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AutoRestartConfig)
class AutoRestartConfigAdmin(ContainerScopedAdmin):
    list_display = ["container", "enabled", "max_retries", "initial_delay_seconds", "backoff_factor", "max_delay_seconds",
                    "reset_after_minutes", "attempts", "last_attempt_at", "gave_up_at"]
    list_filter = ["enabled", ("gave_up_at", admin.EmptyFieldListFilter), ("container__host", VisibleHostFilter)]
    search_fields = ["container__name", "container__key"]
    list_select_related = ["container", "container__host"]
    raw_id_fields = ["container"]
    readonly_fields = ["attempts", "last_attempt_at", "gave_up_at", "updated_at"]
    actions = ["reset_guard", "enable", "disable"]

    @admin.action(description="Reset the restart counter and loop guard", permissions=["change_some"])
    def reset_guard(self, request, queryset):
        configs = self._changeable(request, queryset)
        for config in configs:
            restarts.reset(config)
        self.message_user(request, f"Reset {len(configs)} container(s).", messages.SUCCESS)

    @admin.action(description="Enable auto-restart", permissions=["change_some"])
    def enable(self, request, queryset):
        count = AutoRestartConfig.objects.filter(pk__in=[c.pk for c in self._changeable(request, queryset)]).update(enabled=True)
        self.message_user(request, f"Enabled {count}.", messages.SUCCESS)

    @admin.action(description="Disable auto-restart", permissions=["change_some"])
    def disable(self, request, queryset):
        count = AutoRestartConfig.objects.filter(pk__in=[c.pk for c in self._changeable(request, queryset)]).update(enabled=False)
        self.message_user(request, f"Disabled {count}.", messages.SUCCESS)


@admin.register(RestartAttempt)
class RestartAttemptAdmin(ContainerScopedAdmin):
    list_display = ["created_at", "container", "trigger", "attempt", "delay_seconds", "status", "due_at", "finished_at", "error"]
    list_filter = ["status", "trigger", ("container__host", VisibleHostFilter)]
    search_fields = ["container__name", "container__key", "reason", "error"]
    list_select_related = ["container", "container__host"]
    readonly_fields = ["container", "health_check", "trigger", "attempt", "delay_seconds", "reason", "status", "due_at",
                       "claimed_by", "claimed_at", "finished_at", "action", "error", "created_at"]
    actions = ["cancel"]

    def has_add_permission(self, request):
        return False  # attempts come from auto-restart

    @admin.action(description="Cancel the selected pending restarts", permissions=["change_some"])
    def cancel(self, request, queryset):
        ids = [a.pk for a in self._changeable(request, queryset)]
        count = RestartAttempt.objects.filter(pk__in=ids, status="pending").update(
            status="skipped", error=f"cancelled by {request.user.get_username()}", finished_at=timezone.now()
        )
        self.message_user(request, f"Cancelled {count} pending restart(s).", messages.SUCCESS)
