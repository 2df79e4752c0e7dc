"""manage.py export_config [-o FILE]: DockMon's configuration as JSON (see containers/config_io.py)."""

from __future__ import annotations

import json
import os

from django.core.management.base import BaseCommand, CommandError

from accounts import audit
from containers import config_io


class Command(BaseCommand):
    help = ("Write DockMon's configuration (hosts, tags, per-container settings, policies, registry credentials, health "
            "checks, channels, alert rules, maintenance windows) as JSON, without secrets, history or users.")

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", metavar="FILE", help="Write to FILE instead of standard output")

    def handle(self, *args, output=None, **options):
        document = config_io.export_config()
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if output and output != "-":
            try:
                # Written whole or not at all: a half-written file must not look like an export.
                partial = f"{output}.part"
                with open(partial, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(partial, output)
            except OSError as exc:
                raise CommandError(f"Cannot write {output}: {exc.strerror or exc}") from None
        else:
            self.stdout.write(text, ending="")
        audit.record(None, "config.export", changes={"counts": config_io.counts(document), "file": output or "-"},
                     object_type="dockmon.config")
        if output and output != "-":
            counts = ", ".join(f"{n} {kind}" for kind, n in config_io.counts(document).items() if n)
            self.stderr.write(f"Exported to {output}: {counts or 'nothing configured'}.")
