from django.apps import AppConfig


class ContainersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "containers"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from containers import receivers
        from containers.models import DockerHost
        from dockmon_site import outbound_engines

        # Open WebSockets re-check their access, and new tokens are events, on accounts' signals.
        receivers.connect()

        # The outbound policy never lets a user-set URL reach a registered engine: it reads
        # their URLs from here (cached briefly; re-read at once after any host change).
        outbound_engines.register_engine_targets(lambda: list(DockerHost.objects.values_list("url", flat=True)))
        for signal in (post_save, post_delete):
            signal.connect(lambda **kwargs: outbound_engines.invalidate_engine_targets(), sender=DockerHost, weak=False,
                           dispatch_uid=f"containers.outbound_engines.{signal is post_save}")
