from django.core.management.base import BaseCommand, CommandError

from containers import services
from containers.choices import HostStatus
from containers.models import DockerHost
from dockmon_site import crypto, keyrotation


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (TLS keys, registry passwords, channel and health-check secrets) "
        "with the first key of DOCKMON_ENCRYPTION_KEYS, in one transaction. Afterwards the older keys can "
        "be removed from the list. Values no configured key opens are listed and left as they are; "
        "hosts whose TLS material is among them are marked with an error. Exits non-zero when there are any."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would change; write nothing")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, dry_run=False, batch_size=500, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        keys = crypto.key_materials()
        self.stdout.write(f"{len(keys)} key(s) configured; the first encrypts.{' Dry run: nothing is written.' if dry_run else ''}")
        report = keyrotation.rotate(dry_run=dry_run, batch_size=batch_size)
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        for item in report.fields:
            line = (f"{item.label}: {item.rotated} {verb}, {item.encrypted} plain text {'to encrypt' if dry_run else 'encrypted'}, "
                    f"{item.current} already current, {len(item.undecryptable)} undecryptable")
            if item.undecryptable:
                line += f" (ids: {', '.join(str(pk) for pk in item.undecryptable[:20])}{' …' if len(item.undecryptable) > 20 else ''})"
            self.stdout.write(line)
        changed = report.total("rotated") + report.total("encrypted")
        self.stdout.write(f"Total: {changed} value(s) {verb if dry_run else 're-encrypted'}, {report.total('current')} already current, "
                          f"{report.total('undecryptable')} undecryptable.")
        broken_hosts = report.undecryptable_pks(DockerHost._meta.label)
        if broken_hosts and not dry_run:
            for pk in broken_hosts:
                services.set_host_status(pk, HostStatus.ERROR, error=crypto.UNDECRYPTABLE_TLS_MESSAGE)
        if report.total("undecryptable"):
            raise CommandError(
                f"{report.total('undecryptable')} stored value(s) cannot be decrypted with any configured key and were left as "
                "they are: add the key that wrote them to DOCKMON_ENCRYPTION_KEYS and run this again, or re-enter them."
            )
