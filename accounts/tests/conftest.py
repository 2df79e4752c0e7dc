"""A small world for permission tests: two hosts, containers and events on each, and the
people of the matrix (administrator, a user granted host A, a user granted one container of
host A, a user granted only host B)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from accounts.models import APIToken
from containers.models import Container, DockerHost, Event

FAKE_KEY = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIK0secretsecretsecretsecretsecret\n-----END PRIVATE KEY-----\n"


@dataclass
class World:
    host_a: DockerHost
    host_b: DockerHost
    a1: Container
    a2: Container
    b1: Container
    event_a1: Event
    event_a2: Event
    event_b1: Event
    admin: object
    granted: object
    container_granted: object
    outsider: object

    def client(self, who: str | None) -> APIClient:
        """An API client authenticated with a real token (None: anonymous)."""
        client = APIClient()
        if who is not None:
            _, raw = APIToken.issue(getattr(self, who), name="matrix")
            client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
        return client

    def identifiers_of_a(self) -> list[str]:
        """Text that must never reach someone who may not see host A."""
        return [str(self.host_a.pk), self.host_a.name, self.a1.key, self.a1.name, self.a2.key, self.a2.name, self.event_a1.message]

    def identifiers_of_b(self) -> list[str]:
        return [str(self.host_b.pk), self.host_b.name, self.b1.key, self.b1.name, self.event_b1.message]


def _container(host, name):
    return Container.objects.create(
        host=host, short_id=name.encode().hex()[:12].ljust(12, "0"), container_id=name.encode().hex().ljust(64, "0"),
        name=name, image="dockmon/busybox:latest", state="running",
    )


@pytest.fixture
def world(db, django_user_model, alpha, unique):
    # Rows only: nothing here contacts an engine (the matrix does not run operations).
    host_a = DockerHost.objects.create(name=f"hosta-{unique}", url=alpha.unix_url, tls_key=FAKE_KEY)
    host_b = DockerHost.objects.create(name=f"hostb-{unique}", url=alpha.tcp_url)
    a1, a2 = _container(host_a, f"alphaone{unique}"), _container(host_a, f"alphatwo{unique}")
    b1 = _container(host_b, f"betaone{unique}")
    events = [
        Event.objects.create(category="container", type="container.state", host=host_a, container_key=c.key,
                             container_name=c.name, message=f"event-of-{c.name}")
        for c in (a1, a2, b1)
    ]
    # No passwords: these people use tokens, and hashing four passwords costs seconds per test.
    admin = django_user_model.objects.create_superuser(f"admin{unique}", password=None)
    granted = django_user_model.objects.create_user(f"granted{unique}")
    container_granted = django_user_model.objects.create_user(f"cgranted{unique}")
    outsider = django_user_model.objects.create_user(f"outsider{unique}")
    assign_perm("containers.view_dockerhost", granted, host_a)
    assign_perm("containers.view_container", container_granted, a1)
    assign_perm("containers.view_dockerhost", outsider, host_b)
    events[2].host = host_b
    events[2].save()
    return World(host_a, host_b, a1, a2, b1, *events, admin, granted, container_granted, outsider)


@pytest.fixture
def fresh_lockout():
    """Forget failed-login counts for the usernames and addresses a test uses (and after it)."""
    from accounts import lockout

    used: list[tuple[str | None, str | None]] = []

    def forget(username=None, address=None):
        used.append((username, address))
        lockout.reset(username=username, address=address)

    yield forget
    for username, address in used:
        lockout.reset(username=username, address=address)
