"""Fixtures shared by every app's tests: the real testbed, users, API clients, and DockMon's own
processes (monitor, daphne) running against the test database."""

from __future__ import annotations

import uuid

import pytest

from testkit import testing


@pytest.fixture(autouse=True)
def bus_dispatch(request):
    """Subscribers get events on the bus's dispatcher thread after commit. A test whose rows sit
    in a transaction that never commits (django_db without transaction=True) has them run in its
    own thread instead, as nothing would ever reach the dispatcher; any other test's emit()
    returns once the dispatcher has handled the event, and nothing is left queued for the next test."""
    from containers import bus

    marker = request.node.get_closest_marker("django_db")
    committed = "transactional_db" in request.fixturenames or "live_server" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction"))
    with bus.dispatch_mode("wait" if committed else "inline"):
        yield
    assert bus.drain(30), "event subscribers still busy 30 s after the test"


@pytest.fixture(scope="session")
def testbed():
    from testkit.testbed import require_testbed

    return require_testbed()


@pytest.fixture
def alpha(testbed):
    return testbed.engines["alpha"]


@pytest.fixture
def beta(testbed):
    return testbed.engines["beta"]


@pytest.fixture
def unique():
    """A short unique suffix for container and host names."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def containers_to_remove():
    """Collects (engine, name) pairs; each is force-removed after the test."""
    items: list = []
    yield items
    for engine, name in items:
        engine.docker("rm", "-f", name, check=False)


@pytest.fixture
def run_container(containers_to_remove, testbed):
    """Start a busybox container on an engine; removed after the test."""

    def run(engine, name: str, *cmd: str, image: str = "dockmon/busybox:latest", detach: bool = True, extra: tuple = (), network: str = "none"):
        # Only "none" or "host" (listening on 127.0.0.1): engines here have no bridge network.
        args = ["run", "--network", network, "--name", name, *extra]
        if detach:
            args.insert(1, "-d")
        containers_to_remove.append((engine, name))
        result = engine.docker(*args, image, *(cmd or ("sleep", "3600")))
        if detach:
            # Also by id: a test may rename the container, and the name would then miss it.
            containers_to_remove.append((engine, result.stdout.strip()))
        return result.stdout.strip()

    return run


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser("boss", password="pw-boss-12345")


@pytest.fixture
def admin_client(admin):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(admin)
    return client


@pytest.fixture
def make_host(testbed):
    """Create a DockerHost for a testbed engine: via="unix" | "tcp" | "tls"."""
    from containers.models import DockerHost

    def make(engine, name: str | None = None, via: str = "unix", **extra):
        fields = {"name": name or f"{engine.name}-{uuid.uuid4().hex[:6]}"}
        if via == "unix":
            fields["url"] = engine.unix_url
        elif via == "tcp":
            fields["url"] = engine.tcp_url
        else:
            fields["url"] = engine.tcp_url
            fields["tls_ca"] = open(engine.tls["ca"]).read()
            fields["tls_cert"] = open(engine.tls["cert"]).read()
            fields["tls_key"] = open(engine.tls["key"]).read()
        fields.update(extra)
        return DockerHost.objects.create(**fields)

    return make


@pytest.fixture
def monitor(transactional_db):
    """Start `manage.py monitor` on the test database; call it to start (again), stopped after the test."""
    processes: list[testing.ManagedProcess] = []

    def start(**env):
        process = testing.start_monitor(**env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


@pytest.fixture
def watched_container(make_host, run_container, monitor):
    """watched_container(engine, name, *cmd): a host for the engine, the container started on it
    and the monitor running; returns (host, key) once the monitor has recorded it running."""
    from containers.models import Container

    def start(engine, name: str, *cmd: str):
        host = make_host(engine)
        cid = run_container(engine, name, *cmd)
        monitor()
        key = f"{host.pk}:{cid[:12]}"
        testing.wait_for(lambda: Container.objects.filter(pk=key, state="running").exists(), message="monitor sync", timeout=30)
        return host, key

    return start


@pytest.fixture
def daphne(transactional_db):
    port = testing.free_port()
    process = testing.start_daphne(port)
    process.port = port
    yield process
    process.stop()


@pytest.fixture
def sync_container():
    """Record one engine container in the database the way the monitor would (no monitor needed)."""
    from containers import engine, services
    from containers.engine import facts as engine_facts

    def sync(host, container_id: str):
        client = engine.client_for_host(host)
        try:
            return services.apply_facts(host.pk, engine_facts.inspect_container(client, container_id))
        finally:
            client.close()

    return sync


@pytest.fixture
def people(django_user_model, unique):
    """An administrator and the users `granted` and `outsider` (testkit/people.py); a module that
    needs more overrides this fixture and builds on it."""
    from testkit.people import People

    return People(django_user_model, unique)


@pytest.fixture
def eager():
    """Celery runs every apply_async inline, as a worker would run it (signals included)."""
    from dockmon_site.celery import app

    with testing.eager_tasks(app):
        yield app


# Local HTTP servers on 127.0.0.1 (testkit/receivers.py), each closed after the test.
@pytest.fixture
def receiver():
    """A notification service: records every request; `script()` sets the answers of a path."""
    from testkit.receivers import Receiver

    with Receiver() as server:
        yield server


@pytest.fixture
def local_server():
    """A web endpoint with a few behaviours chosen by path (/status, /redirect, /drip, ...)."""
    from testkit.receivers import WebService

    with WebService() as server:
        yield server


@pytest.fixture
def tls_server(testbed):
    """The same endpoint over HTTPS, with the testbed CA's server certificate."""
    from testkit.receivers import WebService

    with WebService(tls=testbed.tls) as server:
        yield server


@pytest.fixture
def hanging_server():
    """Accepts connections and never answers."""
    from testkit.receivers import HangingServer

    server = HangingServer()
    yield server
    server.close()
