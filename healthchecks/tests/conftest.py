"""Fixtures of the health-check tests: a spy on connections, a real httpd in a container, and
running checks once. The local HTTP endpoints (local_server, tls_server, hanging_server) and
inline Celery tasks come from the root conftest.py."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture(autouse=True)
def _recorder_lets_go_of_the_database():
    """The runner's recorder thread holds its own connection; release it after each test so the
    test database can be flushed or dropped."""
    yield
    from healthchecks import runner

    runner.close_db()


@pytest.fixture
def connect_spy(monkeypatch):
    """Records every TCP connection attempt of the process (a spy: connections still happen)."""
    attempts: list = []
    original = socket.socket.connect

    def connect(self, address):
        attempts.append(address)
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def httpd_container(alpha, containers_to_remove, unique):
    """A real busybox httpd in a host-network container on alpha, serving /www/index.html on a
    free 127.0.0.1 port. Returns (container id, port, name)."""
    from testkit.testing import free_port

    def start(text: str = "service-ok"):
        port = free_port()
        name = f"hc-httpd-{unique}-{port}"
        containers_to_remove.append((alpha, name))
        script = f"mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"
        cid = alpha.docker("run", "-d", "--network", "host", "--stop-timeout", "1", "--name", name,
                           "dockmon/busybox:latest", "sh", "-c", script).stdout.strip()
        return cid, port, name

    return start


def run_once(*checks):
    """Make the checks due now and run them through the real claim + run path; the results."""
    from django.utils import timezone

    from healthchecks import services
    from healthchecks.models import HealthCheck

    ids = [c.pk for c in checks]
    HealthCheck.objects.filter(pk__in=ids).update(next_due_at=timezone.now())
    owner, claimed = services.claim_due(limit=1000)
    assert set(ids) <= set(claimed), (ids, claimed)
    others = sorted(set(claimed) - set(ids))
    services.release(others, owner)
    results = services.run_claimed(ids, owner, wait=True)
    for check in checks:
        check.refresh_from_db()
    return [result for _, result in results]
