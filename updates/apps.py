from django.apps import AppConfig


class UpdatesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "updates"

    def ready(self):
        from containers import container_settings
        from containers.signals import container_rekeyed
        from updates import autoupdate
        from updates.api.serializers import MaintenanceWindowSerializer
        from updates.signals import follow_recreated_container

        container_rekeyed.connect(follow_recreated_container, dispatch_uid="updates.follow_recreated_container")
        # PATCH /containers/{key}/settings/ {"auto_update": bool, "auto_update_window": {...} | null}
        # (choosing what updates by itself is an update right, not a settings right).
        from rest_framework import serializers

        container_settings.register(
            "auto_update", lambda: serializers.BooleanField(required=False),
            autoupdate.get_setting, autoupdate.set_setting, permission="update",
        )
        container_settings.register(
            "auto_update_window", lambda: MaintenanceWindowSerializer(required=False, allow_null=True),
            autoupdate.get_window, autoupdate.set_window, permission="update",
        )
