from django.apps import AppConfig


class HealthchecksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "healthchecks"
    verbose_name = "Health checks and auto-restart"

    def ready(self):
        from containers.signals import container_rekeyed
        from dockmon_site import bus
        from healthchecks import restarts
        from healthchecks.signals import follow_recreated_container

        container_rekeyed.connect(follow_recreated_container, dispatch_uid="healthchecks.follow_recreated_container")
        bus.subscribe(restarts.on_event)
