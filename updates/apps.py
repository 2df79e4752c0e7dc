from django.apps import AppConfig


class UpdatesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "updates"

    def ready(self):
        from django.core import checks as system_checks

        from containers import container_settings, extensions
        from containers.signals import container_rekeyed
        from updates import autoupdate, checks, fragments
        from updates.api.serializers import MaintenanceWindowSerializer
        from updates.signals import follow_recreated_container

        system_checks.register(checks.update_check_cron)
        container_rekeyed.connect(follow_recreated_container, dispatch_uid="updates.follow_recreated_container")
        extensions.register_annotation("update_available", fragments.with_update_available)
        extensions.register_panel("updates", "updates/_container_updates.html", fragments.panel_context)
        extensions.register_setting_rows("updates", "updates/_container_settings.html", fragments.settings_context)
        # PATCH /containers/{key}/settings/ {"auto_update": bool, "auto_update_window": {...} | null}
        # (choosing what updates by itself is an update right, not a settings right).
        from rest_framework import serializers

        from updates import policies
        from updates.choices import Policy

        # {"update_policy": "allow" | "warn" | "block" | ""}: rule 2 of the priority order; ""
        # removes the container's own policy (labels, categories and the default decide again).
        container_settings.register(
            "update_policy",
            lambda: serializers.ChoiceField(choices=Policy.choices, required=False, allow_blank=True),
            policies.get_container_policy, policies.set_container_policy,
        )
        container_settings.register(
            "auto_update", lambda: serializers.BooleanField(required=False),
            autoupdate.get_setting, autoupdate.set_setting, permission="update",
        )
        container_settings.register(
            "auto_update_window", lambda: MaintenanceWindowSerializer(required=False, allow_null=True),
            autoupdate.get_window, autoupdate.set_window, permission="update",
        )
