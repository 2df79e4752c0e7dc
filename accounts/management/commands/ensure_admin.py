import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Make sure an administrator exists. Uses DOCKMON_ADMIN_USER / DOCKMON_ADMIN_PASSWORD when set; "
        "otherwise creates 'admin' with a generated password printed once."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("DOCKMON_ADMIN_USER", "admin")
        password = os.environ.get("DOCKMON_ADMIN_PASSWORD", "")
        user = User.objects.filter(username=username).first()
        if user is not None:
            if password and not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
                self.stdout.write(f"Administrator {username!r}: password set from DOCKMON_ADMIN_PASSWORD.")
            else:
                self.stdout.write(f"Administrator {username!r} exists.")
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
