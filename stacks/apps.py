from django.apps import AppConfig


class StacksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "stacks"

    def ready(self):
        from containers import bus
        from stacks import external

        # Projects started outside DockMon appear (and go) with their containers.
        bus.subscribe(external.on_event)
