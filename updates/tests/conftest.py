"""Fixtures of the updates app's tests: real registries, containers synced into the database."""

from __future__ import annotations

import pytest

from containers import engine as engine_api
from containers import services as container_services
from containers.engine import facts as engine_facts


@pytest.fixture(autouse=True)
def _fresh_update_cache():
    from updates.lookups import clear_cache

    clear_cache()
    yield


@pytest.fixture
def sync():
    """sync(host): bring the database in line with the engine (full inspect), like the monitor does."""

    def run(host):
        client = engine_api.client_for_host(host)
        facts = []
        try:
            for item in engine_facts.list_containers(client):
                try:
                    facts.append(engine_facts.inspect_container(client, item.container_id))
                except engine_api.ContainerGone:
                    pass  # another test removed it since the list (the engines are shared)
        finally:
            client.close()
        return container_services.reconcile(host, facts)

    return run


@pytest.fixture
def repo(unique):
    """A repository name of our own on the testbed registry."""
    return f"upd-{unique}/app"


@pytest.fixture
def images_to_remove(testbed):
    items: list = []
    yield items
    for engine, ref in items:
        engine.docker("rmi", "-f", ref, check=False)


@pytest.fixture
def basic_registry(tmp_path):
    from testkit.registry import start_basic_auth_registry

    registry = start_basic_auth_registry(tmp_path / "basic-registry", "upd-user", "upd-pass-123")
    registry.username, registry.password = "upd-user", "upd-pass-123"
    yield registry
    registry.stop()


@pytest.fixture
def token_registry(tmp_path):
    from testkit.registry import start_token_registry

    registry, tokens = start_token_registry(tmp_path / "token-registry", "tok-user", "tok-pass-123")
    registry.username, registry.password, registry.tokens = "tok-user", "tok-pass-123", tokens
    yield registry
    registry.stop()
    tokens.stop()


@pytest.fixture
def seeded_categories(django_db_blocker):
    """The categories of the data migration. Transactional tests flush every table afterwards
    (migration data included), so tests that rely on the seed put it back first."""
    import importlib

    from updates.models import PolicyCategory

    seed = importlib.import_module("updates.migrations.0002_seed_policy_categories")
    with django_db_blocker.unblock():
        PolicyCategory.objects.filter(builtin=True).delete()
        for item in seed.CATEGORIES:
            PolicyCategory.objects.create(**item, builtin=True)
    return PolicyCategory.objects.all()
