from django.core.management.base import BaseCommand

from accounts.roles import sync_roles


class Command(BaseCommand):
    help = "Create the built-in role groups (Administrators, Operators, Viewers) and attach their permissions."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="Make each role hold exactly what its rules match")

    def handle(self, *args, reset=False, **options):
        for role, count in sync_roles(reset=reset).items():
            self.stdout.write(f"{role}: {count} permissions")
