import asyncio
import logging

from django.core.management.base import BaseCommand, CommandError

from containers import bus
from containers.monitor import Monitor, parse_shard


class Command(BaseCommand):
    help = "Watch every enabled Docker host's events and keep the inventory in sync (runs until SIGTERM)."
    # The system checks load the whole URLconf (every API module): seconds of start-up for
    # nothing the monitor uses; `manage.py check` and the web process still run them.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--shard", default="0/1", help="Watch only hosts whose id falls in shard i of n (i/n)")
        parser.add_argument("--once", action="store_true", help="Reconcile every host once and exit")

    def handle(self, *args, **options):
        try:
            shard = parse_shard(options["shard"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        logging.getLogger("containers").setLevel(logging.INFO)
        bus.start()  # runs what a dead process left in the event outbox, even before any event
        asyncio.run(Monitor(shard=shard, once=options["once"]).run())
