import os

from django.core.management.base import BaseCommand

from containers import services
from containers.models import DockerHost


class Command(BaseCommand):
    help = "Add the local Docker socket as the first host when it exists and no host uses it yet."

    def add_arguments(self, parser):
        parser.add_argument("--socket", default=os.environ.get("DOCKMON_LOCAL_SOCKET", "/var/run/docker.sock"))
        parser.add_argument("--name", default="local")

    def handle(self, *args, **options):
        path = options["socket"]
        url = f"unix://{path}"
        if not os.path.exists(path):
            self.stdout.write(f"No Docker socket at {path}; add hosts in the admin or the API.")
            return
        if DockerHost.objects.filter(url=url).exists():
            self.stdout.write(f"Host for {url} exists.")
            return
        name = options["name"]
        if DockerHost.objects.filter(name=name).exists():
            name = f"{name}-{path.strip('/').replace('/', '-')}"
        host = DockerHost.objects.create(name=name, url=url)
        result = services.test_host(host)
        self.stdout.write(f"Added host {host.name} ({url}): {result['status']} {result['error']}".rstrip())
