"""DockMon's HTTP checks as a readiness check (containers.readiness): after an update, the new
container must pass each of its enabled checks before the backup of the old one is removed."""

from __future__ import annotations

import time

from containers.readiness import NotReady, Readiness
from healthchecks.models import HealthCheck
from healthchecks.probe import ProbeSpec, probe
from healthchecks.services import body_limit


def http_checks_pass(readiness: Readiness) -> None:
    if not readiness.key:
        return
    for check in list(HealthCheck.objects.filter(container_id=readiness.key, enabled=True)):
        _wait_until_passed(readiness, check)


def _wait_until_passed(readiness: Readiness, check: HealthCheck) -> None:
    readiness.log(f"DockMon HTTP check {check.name or check.url} must pass")
    while True:
        last = probe(ProbeSpec.for_check(check, body_limit=body_limit()))
        if last.ok:
            readiness.log(f"HTTP check passed ({last.status_code}, {last.response_ms} ms)")
            return
        failure = readiness.failure()
        if failure:
            raise NotReady(failure)
        if time.monotonic() >= readiness.deadline:
            raise NotReady(f"The DockMon HTTP check {check.url} did not pass within {readiness.timeout}s: "
                           f"{last.error or last.status_code}")
        readiness.progress(f"HTTP check: {last.error or last.status_code}")
        time.sleep(min(1.0, max(0.1, check.interval_seconds / 10)))
