"""Two engines holding the very same container IDs (a cloned VM) stay two sets of containers."""

from __future__ import annotations

import pytest

from containers import engine, services
from containers.engine import facts as engine_facts
from containers.models import Container

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def clone(testbed, alpha, run_container, unique):
    cid = run_container(alpha, f"twin-{unique}")
    twin = testbed.clone_engine("alpha", f"clone-{unique}")
    yield twin, cid
    testbed.remove_engine(twin.name)


def _sync(host):
    client = engine.client_for_host(host)
    try:
        facts = [engine_facts.inspect_container(client, f.container_id) for f in engine_facts.list_containers(client)]
    finally:
        client.close()
    return services.reconcile(host, facts, initial=True)


def test_identical_container_ids_on_two_hosts_are_distinct_by_key(clone, make_host, admin_client, alpha):
    twin, cid = clone
    host_a = make_host(alpha)
    host_b = make_host(twin)
    # Same engine ID too: exactly what a cloned VM reports, and why it is never an identity.
    assert services.test_host(host_a)["ok"] and services.test_host(host_b)["ok"]
    host_a.refresh_from_db()
    host_b.refresh_from_db()
    assert host_a.engine_id == host_b.engine_id

    _sync(host_a)
    _sync(host_b)
    rows = Container.objects.filter(short_id=cid[:12])
    assert {row.key for row in rows} == {f"{host_a.pk}:{cid[:12]}", f"{host_b.pk}:{cid[:12]}"}
    listed = admin_client.get(f"/api/v1/containers/?search={cid[:12]}").data["results"]
    assert sorted(c["host"] for c in listed) == sorted([str(host_a.pk), str(host_b.pk)])
    # Removing it on one engine leaves the other's record alone.
    twin.docker("rm", "-f", cid)
    _sync(host_b)
    assert Container.objects.get(pk=f"{host_b.pk}:{cid[:12]}").removed_at is not None
    assert Container.objects.get(pk=f"{host_a.pk}:{cid[:12]}").removed_at is None
