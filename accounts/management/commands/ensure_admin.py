import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Make sure an administrator exists. Uses DOCKMON_ADMIN_USER / DOCKMON_ADMIN_PASSWORD when set; "
        "otherwise creates 'admin' with a generated password printed once. An existing user's password is never changed."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("DOCKMON_ADMIN_USER", "admin")
        password = os.environ.get("DOCKMON_ADMIN_PASSWORD", "")
        user = User.objects.filter(username=username).first()
        if user is not None:
            # Never reset on start-up: a password changed since (in the UI, the admin or with
            # changepassword) stays, and a leaked environment cannot reset it by a restart.
            note = " (DOCKMON_ADMIN_PASSWORD is used only when creating it; use `manage.py changepassword` to change it)"
            self.stdout.write(f"Administrator {username!r} exists{note if password else ''}.")
            return
        if User.objects.filter(is_superuser=True).exists() and not os.environ.get("DOCKMON_ADMIN_USER"):
            self.stdout.write("An administrator exists.")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(self.style.WARNING(f"Created administrator {username!r} with password: {password}  (shown once)"))
        else:
            self.stdout.write(f"Created administrator {username!r}.")
