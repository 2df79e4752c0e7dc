from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self):
        from accounts import lockout, roles, schema, signals  # noqa: F401  (OpenAPI auth extension, audit and lockout hooks)

        # After every migrate (and every test-database flush), attach the permissions of apps
        # migrated since to the role groups; see accounts/roles.py.
        post_migrate.connect(roles.sync_roles_after_migrate, dispatch_uid="accounts.sync_roles")
        signals.connect_permission_signals()
