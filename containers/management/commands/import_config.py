"""manage.py import_config FILE [--dry-run]: read a file written by export_config (or by the API)."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from accounts import audit
from containers import config_io


def format_errors(errors, prefix: str = "") -> list[str]:
    """Field errors as 'section.item.field: message' lines."""
    lines: list[str] = []
    if isinstance(errors, dict):
        for key, value in errors.items():
            lines += format_errors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(errors, list) and all(isinstance(v, str) for v in errors):
        lines += [f"{prefix or 'document'}: {message}" for message in errors]
    elif isinstance(errors, list):
        for index, value in enumerate(errors):
            lines += format_errors(value, f"{prefix}.{index}" if prefix else str(index))
    else:
        lines.append(f"{prefix or 'document'}: {errors}")
    return lines


class Command(BaseCommand):
    help = ("Import a configuration file made by export_config: creates and updates what it names (nothing else is "
            "deleted; stored secrets are kept), in one transaction. Importing the same file twice changes nothing.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="The JSON file ('-' for standard input)")
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; write nothing")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the report as JSON")

    def handle(self, *args, file, dry_run=False, as_json=False, **options):
        document = self._read(file)
        try:
            report = config_io.import_config(document, dry_run=dry_run)
        except config_io.ConfigError as exc:
            lines = format_errors(json.loads(json.dumps(exc.errors, default=str)))
            raise CommandError("The file is not a valid DockMon configuration:\n  " + "\n  ".join(lines)) from None
        audit.record(None, "config.import", changes={"dry_run": dry_run, "file": file, "summary": report["summary"]},
                     object_type="dockmon.config")
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False))
            return
        self._print(report)

    def _read(self, file: str):
        try:
            if file == "-":
                text = sys.stdin.read()
            else:
                with open(file, encoding="utf-8") as handle:
                    text = handle.read()
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{file} is not UTF-8 text.") from None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CommandError(f"{file} is not JSON: {exc}") from None

    def _print(self, report: dict) -> None:
        if report["dry_run"]:
            self.stdout.write("Dry run: nothing was written.")
        for sync in report["engine_sync"]:
            self.stdout.write(f"engine of {sync['host']}: {sync['detail'] if sync['ok'] else 'not reached: ' + sync['detail']}")
        for kind, numbers in report["summary"].items():
            if any(numbers.values()):
                self.stdout.write(f"{kind}: " + ", ".join(f"{n} {result}" for result, n in numbers.items()))
        for item in report["items"]:
            line = f"  {item['kind']} {item['ref']}: {item['result']}"
            if item.get("reason"):
                line += f" ({item['reason']})"
            self.stdout.write(line)
            for note in item.get("notes", []):
                self.stdout.write(f"      ! {note}")

