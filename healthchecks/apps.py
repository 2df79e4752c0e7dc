from django.apps import AppConfig


class HealthchecksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "healthchecks"
    verbose_name = "Health checks and auto-restart"

    def ready(self):
        from rest_framework import serializers

        from containers import bus, container_settings, extensions, readiness
        from containers.signals import container_rekeyed
        from healthchecks import restarts, views
        from healthchecks.readiness import http_checks_pass
        from healthchecks.signals import follow_recreated_container

        container_rekeyed.connect(follow_recreated_container, dispatch_uid="healthchecks.follow_recreated_container")
        bus.subscribe(restarts.on_event)
        extensions.register_setting_rows("healthchecks", "healthchecks/_container_settings.html", views.settings_context)
        # PATCH /containers/{key}/settings/ {"auto_restart": true|false}: the design's shortcut
        # for the per-container config (/auto-restart/{key}/ holds the details).
        container_settings.register(
            "auto_restart",
            lambda: serializers.BooleanField(required=False),
            restarts.auto_restart_enabled,
            restarts.set_auto_restart,
        )
        # An updated container must pass its enabled HTTP checks before its backup goes.
        readiness.register("healthchecks.http", http_checks_pass)
