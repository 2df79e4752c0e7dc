from django.apps import AppConfig


class UpdatesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "updates"

    def ready(self):
        from containers.signals import container_rekeyed
        from updates.signals import follow_recreated_container

        container_rekeyed.connect(follow_recreated_container, dispatch_uid="updates.follow_recreated_container")
