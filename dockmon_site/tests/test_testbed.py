"""The testbed itself: real engines (plain TCP and TLS), registry, clones, Redis, PostgreSQL.

Needs a running testbed (`python -m testkit.testbed up`); skipped without one,
except with CI=true where a missing testbed is an error.  No Django, no database.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid

import docker
import pytest
import requests

from testkit.testbed import (
    LOCAL_BUSYBOX_REF,
    SEED_APP_MARKER,
    SEED_APP_REPO,
    SEED_APP_TAG,
    DockerCommandError,
    Testbed,
    require_testbed,
)

# A container command that ends at once on SIGTERM (busybox sleep as PID 1 would not).
TRAP_LOOP = 'trap "exit 0" TERM; while true; do sleep 1; done'


@pytest.fixture(scope="module")
def tb() -> Testbed:
    return require_testbed()


@pytest.fixture
def no_ca_bundle(monkeypatch):
    """REQUESTS_CA_BUNDLE would override docker-py's own CA (see real-docker.md)."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def _tls_config(paths: dict | None, ca: str) -> docker.tls.TLSConfig:
    return docker.tls.TLSConfig(
        client_cert=(paths["cert"], paths["key"]) if paths else None,
        ca_cert=ca,
        verify=True,
    )


def _registry_get(tb: Testbed, path: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{tb.registry}{path}", timeout=5) as resp:
        return json.loads(resp.read())


# ---------------------------------------------------------------- engines


def test_state_shape(tb):
    assert set(tb.engines) >= {"alpha", "beta"}
    alpha, beta = tb.engines["alpha"], tb.engines["beta"]
    alpha_port = os.environ.get("DOCKMON_TESTBED_ALPHA_PORT") or "23750"
    beta_port = os.environ.get("DOCKMON_TESTBED_BETA_PORT") or "23761"
    assert alpha.tcp_url == f"tcp://127.0.0.1:{alpha_port}"
    assert beta.tcp_url == f"tcp://127.0.0.1:{beta_port}"
    assert alpha.tls is None and alpha.wrong_tls is None
    assert set(beta.tls) == {"ca", "cert", "key"}
    assert set(beta.wrong_tls) == {"ca", "cert", "key"}
    for e in (alpha, beta):
        assert e.unix_url == f"unix://{e.sock_path}"
        assert os.path.isdir(e.data_root)
        assert e.is_running() and e.pid
    assert tb.registry.startswith("127.0.0.1:")
    assert tb.redis_url.startswith("redis://127.0.0.1:")
    pg_port = os.environ.get("DOCKMON_TESTBED_PG_PORT") or "5432"
    assert tb.database_url == f"postgres://postgres@127.0.0.1:{pg_port}/postgres"


def test_alpha_answers_plain_tcp_and_unix(tb):
    alpha = tb.engines["alpha"]
    for url in (alpha.tcp_url, alpha.unix_url):
        client = docker.DockerClient(base_url=url, timeout=20)
        try:
            assert client.ping() is True
            assert client.version()["ApiVersion"] == "1.41"
        finally:
            client.close()


def test_beta_answers_tls_with_client_cert(tb, no_ca_bundle):
    beta = tb.engines["beta"]
    client = docker.DockerClient(base_url=beta.tcp_url, tls=_tls_config(beta.tls, beta.tls["ca"]), timeout=20)
    try:
        assert client.ping() is True
        info = client.info()
        assert info["Driver"] == "overlay2"
    finally:
        client.close()


def test_sdk_client_helper_ignores_requests_ca_bundle(tb, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    client = tb.engines["beta"].sdk_client(via="tcp")
    try:
        assert client.ping() is True
    finally:
        client.close()


@pytest.mark.parametrize("which", ["none", "wrong"])
def test_beta_refuses_client_without_valid_cert(tb, no_ca_bundle, which):
    beta = tb.engines["beta"]
    paths = None if which == "none" else beta.wrong_tls
    client = docker.DockerClient(
        base_url=beta.tcp_url,
        tls=_tls_config(paths, beta.tls["ca"]),
        timeout=10,
        version="1.41",
    )
    try:
        with pytest.raises(requests.exceptions.ConnectionError):
            client.ping()
    finally:
        client.close()
    # the docker CLI is refused too
    with pytest.raises(DockerCommandError):
        beta.docker_tcp("version", cert=None if which == "none" else "wrong", timeout=20)


def test_beta_refuses_plain_http(tb):
    client = docker.DockerClient(base_url=tb.engines["beta"].tcp_url, timeout=10, version="1.41")
    try:
        with pytest.raises((docker.errors.APIError, requests.exceptions.ConnectionError)):
            client.ping()
    finally:
        client.close()


def test_engines_are_separate_hosts(tb):
    alpha, beta = tb.engines["alpha"], tb.engines["beta"]
    name = f"tb-sep-{uuid.uuid4().hex[:8]}"
    alpha.docker("create", "--name", name, "--network", "none", LOCAL_BUSYBOX_REF, "true")
    try:
        assert beta.docker("inspect", name, check=False).returncode != 0
    finally:
        alpha.docker("rm", "-f", name, check=False)


# ---------------------------------------------------------------- registry and images


def test_registry_serves_seeded_image(tb):
    assert SEED_APP_REPO in _registry_get(tb, "/v2/_catalog")["repositories"]
    assert SEED_APP_TAG in _registry_get(tb, f"/v2/{SEED_APP_REPO}/tags/list")["tags"]
    digest = tb.registry_digest(SEED_APP_REPO, SEED_APP_TAG)
    assert digest and digest.startswith("sha256:")
    ref = tb.image_ref(SEED_APP_REPO, SEED_APP_TAG)
    assert ref == tb.seed_image
    for e in (tb.engines["alpha"], tb.engines["beta"]):
        img = e.inspect(ref)
        assert f"{tb.registry}/{SEED_APP_REPO}@{digest}" in img["RepoDigests"]
        out = e.docker("run", "--rm", "--network", "none", ref, "cat", "/etc/dockmon-release")
        assert out.stdout.strip() == SEED_APP_MARKER
        # local-only image, never pushed anywhere
        local = e.inspect(LOCAL_BUSYBOX_REF)
        assert local["RepoDigests"] == []


def test_new_release_changes_registry_digest(tb):
    beta = tb.engines["beta"]
    repo = f"tbtest/rel-{uuid.uuid4().hex[:8]}"
    ref = tb.image_ref(repo, "1")
    made = {"alpha": set(), "beta": set()}
    try:
        made["alpha"].add(tb.build_image("alpha", ref, "r1"))
        d1 = tb.push("alpha", ref)
        tb.pull("beta", ref)
        made["beta"].add(beta.inspect(ref)["Id"])
        assert f"{tb.registry}/{repo}@{d1}" in beta.inspect(ref)["RepoDigests"]

        cmd = ["cat", "/etc/dockmon-release"]
        made["alpha"].add(tb.build_image("alpha", ref, "r2", cmd=cmd))
        d2 = tb.push("alpha", ref)
        assert d2 != d1
        assert tb.registry_digest(repo, "1") == d2
        # beta still runs the old release and its RepoDigests still hold the old digest
        assert f"{tb.registry}/{repo}@{d1}" in beta.inspect(ref)["RepoDigests"]
        tb.pull("beta", ref)
        made["beta"].add(beta.inspect(ref)["Id"])
        assert f"{tb.registry}/{repo}@{d2}" in beta.inspect(ref)["RepoDigests"]
        out = beta.docker("run", "--rm", "--network", "none", ref)
        assert out.stdout.strip() == "r2"
    finally:
        for name, ids in made.items():
            for image_id in ids:
                tb.engines[name].docker("rmi", "-f", image_id, check=False)


def test_healthcheck_in_imported_image(tb):
    alpha = tb.engines["alpha"]
    ref = f"tbtest/health-{uuid.uuid4().hex[:8]}:1"
    name = ref.split(":")[0].replace("/", "-")
    tb.build_image(
        "alpha",
        ref,
        "hc",
        cmd=["sh", "-c", TRAP_LOOP],
        healthcheck="--interval=1s --timeout=2s --retries=1 CMD test -f /etc/dockmon-release",
    )
    try:
        hc = alpha.inspect(ref)["Config"]["Healthcheck"]
        assert hc["Test"] == ["CMD-SHELL", "test -f /etc/dockmon-release"]
        assert hc["Interval"] == 1_000_000_000
        alpha.docker("run", "-d", "--name", name, "--network", "none", ref)
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            status = alpha.inspect(name)["State"]["Health"]["Status"]
            if status == "healthy":
                break
            time.sleep(0.3)
        assert status == "healthy"
    finally:
        alpha.docker("rm", "-f", name, check=False)
        alpha.docker("rmi", "-f", ref, check=False)


# ---------------------------------------------------------------- clones


@pytest.fixture(scope="module")
def clone_setup(tb):
    alpha = tb.engines["alpha"]
    suffix = uuid.uuid4().hex[:8]
    stopped = f"tb-clone-stopped-{suffix}"
    running = f"tb-clone-running-{suffix}"
    alpha.docker(
        "create", "--name", stopped, "--network", "none", tb.seed_image,
        "cat", "/etc/dockmon-release",
    )  # fmt: skip
    alpha.docker(
        "run", "-d", "--name", running, "--network", "none", "--stop-timeout", "2",
        LOCAL_BUSYBOX_REF, "sh", "-c", TRAP_LOOP,
    )  # fmt: skip
    clone = tb.clone_engine("alpha", "alpha-clone")
    yield tb, clone, stopped, running
    tb.remove_engine("alpha-clone")
    alpha.docker("rm", "-f", stopped, running, check=False)


def test_clone_shows_same_container_ids(clone_setup):
    tb, clone, stopped, running = clone_setup
    alpha = tb.engines["alpha"]
    assert clone.name == "alpha-clone" and clone.sock_path != alpha.sock_path
    assert clone.data_root != alpha.data_root
    for name in (stopped, running):
        assert clone.inspect(name)["Id"] == alpha.inspect(name)["Id"]
    # engines report the same ID too (shared key.json), like cloned VMs
    assert clone.docker("info", "--format", "{{.ID}}").stdout == alpha.docker("info", "--format", "{{.ID}}").stdout
    # the source's running container was started again after the copy
    assert alpha.inspect(running)["State"]["Running"] is True
    # the copy runs independently on the clone
    clone.docker("start", "-a", stopped)
    assert clone.docker("logs", stopped).stdout.strip() == SEED_APP_MARKER
    clone.docker("rm", stopped)
    assert alpha.inspect(stopped)["Id"]
    # recorded in state, so down() stops it
    assert "alpha-clone" in Testbed.load().engines


def test_clone_has_own_tcp_listener(clone_setup):
    tb, clone, _stopped, _running = clone_setup
    assert clone.tcp_url and clone.tcp_url != tb.engines["alpha"].tcp_url
    client = docker.DockerClient(base_url=clone.tcp_url, timeout=20)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_engine_kill_and_start(clone_setup):
    _tb, clone, _stopped, _running = clone_setup
    containerd = clone.containerd_pid()
    assert containerd and clone.is_running()
    clone.kill()
    assert not clone.is_running()
    assert clone.containerd_pid() is None
    assert not clone.answers()
    clone.start()
    assert clone.is_running() and clone.answers()
    assert clone.containerd_pid() not in (None, containerd)
    clone.stop()
    assert not clone.is_running() and clone.containerd_pid() is None
    clone.start()
    assert clone.docker("version", "--format", "{{.Server.Version}}").stdout.strip()


def test_remove_engine(tb):
    clone = tb.clone_engine("beta", "beta-clone-rm")
    assert clone.tls == tb.engines["beta"].tls
    client = clone.sdk_client(via="tcp")
    try:
        assert client.ping() is True
    finally:
        client.close()
    home = clone.home
    tb.remove_engine("beta-clone-rm")
    assert not os.path.exists(home)
    assert not clone.is_running()
    assert "beta-clone-rm" not in Testbed.load().engines


# ---------------------------------------------------------------- redis and postgres


def test_redis_answers(tb):
    host_port = tb.redis_url.split("//")[1].split("/")[0]
    host, port = host_port.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(16).startswith(b"+PONG")


def test_postgres_answers(tb):
    res = subprocess.run(
        ["psql", "-w", tb.database_url, "-tAc", "select 1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "1"
