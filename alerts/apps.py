from django.apps import AppConfig


class AlertsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "alerts"
    verbose_name = "Alerts and notifications"

    def ready(self):
        from django.db.models.signals import post_save

        from alerts import checks, evaluator, signals, views  # noqa: F401 (checks registers itself)
        from containers import bus, extensions
        from containers.models import DiskUsage
        from containers.signals import container_rekeyed

        bus.subscribe(signals.on_event)
        extensions.register_dashboard_part("alerts", views.open_alerts)
        container_rekeyed.connect(evaluator.follow_recreated_container, dispatch_uid="alerts.follow_recreated_container")
        post_save.connect(signals.on_disk_usage_saved, sender=DiskUsage, dispatch_uid="alerts.disk_usage")
