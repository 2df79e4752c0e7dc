from django.apps import AppConfig


class StacksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "stacks"

    def ready(self):
        from containers import bus, extensions
        from stacks import external

        # Projects started outside DockMon appear (and go) with their containers.
        bus.subscribe(external.on_event)
        # GET /containers/ and /containers/{key}/: `stack`, the id of the container's stack.
        extensions.register_annotation("stack", external.with_stack_id)
