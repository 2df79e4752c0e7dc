"""The registry client against real registries (anonymous, basic auth, bearer token) and, for
rate limiting only, a local HTTP server that injects 429s (the real registry cannot)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dockmon_site.testing import free_port
from updates import services
from updates.choices import UpdateStatus
from updates.models import ContainerUpdate, RegistryCredential
from updates.registry import (
    DOCKER_HUB,
    Credential,
    ManifestNotFound,
    Platform,
    RateLimited,
    RegistryAuthError,
    RegistryClient,
    RegistryUnreachable,
    parse_reference,
)
from updates.testing import docker_cli


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", DOCKER_HUB, "library/nginx", "latest", ""),
        ("nginx:1.25-alpine", DOCKER_HUB, "library/nginx", "1.25-alpine", ""),
        ("docker.io/nginx", DOCKER_HUB, "library/nginx", "latest", ""),
        ("index.docker.io/library/nginx:1", DOCKER_HUB, "library/nginx", "1", ""),
        ("registry-1.docker.io/grafana/grafana:10.4.2", DOCKER_HUB, "grafana/grafana", "10.4.2", ""),
        ("grafana/grafana", DOCKER_HUB, "grafana/grafana", "latest", ""),
        ("ghcr.io/owner/app:v1.2.3", "ghcr.io", "owner/app", "v1.2.3", ""),
        ("localhost/app", "localhost", "app", "latest", ""),
        ("127.0.0.1:5000/demo/app:1.0", "127.0.0.1:5000", "demo/app", "1.0", ""),
        ("127.0.0.1:5000/demo/app@sha256:" + "a" * 64, "127.0.0.1:5000", "demo/app", "", "sha256:" + "a" * 64),
        ("nginx:1.25@sha256:" + "b" * 64, DOCKER_HUB, "library/nginx", "1.25", "sha256:" + "b" * 64),
    ],
)
def test_parse_reference_follows_docker_naming(text, registry, repository, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.pinned is bool(digest)


@pytest.mark.parametrize("text", ["", "sha256:" + "c" * 64, "c" * 64, "UPPER/case", "app:bad tag", "app@sha256:xyz"])
def test_parse_reference_refuses_what_is_not_a_reference(text):
    with pytest.raises(ValueError):
        parse_reference(text)


def test_docker_hub_uses_https_on_registry_1_and_loopback_uses_http():
    client = RegistryClient()
    assert client.base_url(DOCKER_HUB) == "https://registry-1.docker.io"
    assert client.base_url("ghcr.io") == "https://ghcr.io"
    assert client.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert client.base_url("localhost:5000") == "http://localhost:5000"
    assert RegistryClient({"registry.lan:5000": Credential(insecure=True)}).base_url("registry.lan:5000") == "http://registry.lan:5000"


def test_platform_resolution_in_an_index():
    from updates.registry import Manifest

    index = Manifest("sha256:i", "application/vnd.oci.image.index.v1+json", {"manifests": [
        {"digest": "sha256:arm7", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "sha256:arm64", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}},
    ]})
    assert index.is_index
    assert index.platform_digest(Platform.normalized("linux", "x86_64")) == "sha256:amd"
    assert index.platform_digest(Platform.normalized("linux", "aarch64")) == "sha256:arm64"
    assert index.platform_digest(Platform.normalized("linux", "arm", "v7")) == "sha256:arm7"
    assert index.platform_digest(Platform.normalized("linux", "s390x")) is None


@pytest.mark.django_db
def test_anonymous_head_get_and_tag_pagination_on_the_real_registry(testbed, images_to_remove, unique):
    from updates import testing as t

    repo = f"upd-{unique}/tags"
    ref_text = testbed.image_ref(repo, "1.0")
    testbed.build_image("alpha", ref_text, "tags")
    images_to_remove.append((testbed.engines["alpha"], ref_text))
    digest = testbed.push("alpha", ref_text)
    for i in range(7):
        t.push_variant(testbed.registry, repo, digest, tag=f"1.0.{i}")
    client = RegistryClient()
    ref = parse_reference(ref_text)
    head = client.head_manifest(ref)
    assert head.digest == digest and not head.is_index
    manifest = client.get_manifest(ref, digest)
    assert manifest.digest == digest
    assert manifest.config_digest == testbed.engines["alpha"].inspect(ref_text)["Id"]
    with pytest.raises(ManifestNotFound):
        client.head_manifest(ref.with_tag("nope"))

    assert sorted(client.list_tags(ref)) == sorted(["1.0", *[f"1.0.{i}" for i in range(7)]])


class _PagedTags:
    """Tag lists in pages of 3 with `Link: <...>; rel="next"`, as Docker Hub / GHCR / distribution 3
    send them. The distribution 2.8 registry here ignores `n` for tag lists, so it cannot show this."""

    def __init__(self, tags):
        self.requests: list[str] = []
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                from urllib.parse import parse_qs, urlsplit

                pages.requests.append(self.path)
                parts = urlsplit(self.path)
                last = parse_qs(parts.query).get("last", [""])[0]
                start = tags.index(last) + 1 if last else 0
                chunk = tags[start:start + 3]
                body = json.dumps({"name": "x/y", "tags": chunk}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if start + 3 < len(tags):
                    self.send_header("Link", f'</v2/x/y/tags/list?n=3&last={chunk[-1]}>; rel="next"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_tag_list_follows_link_pagination():
    tags = [f"1.{i}.0" for i in range(8)]
    server = _PagedTags(tags)
    try:
        client = RegistryClient()
        assert client.list_tags(parse_reference(f"127.0.0.1:{server.port}/x/y:1")) == tags
        assert len(server.requests) == 3
        assert "last=1.5.0" in server.requests[-1]
    finally:
        server.stop()


def test_unreachable_registry_is_a_clear_error():
    client = RegistryClient(timeout=2)
    with pytest.raises(RegistryUnreachable, match="refused"):
        client.head_manifest(parse_reference(f"127.0.0.1:{free_port()}/x/y:1"))


@pytest.mark.django_db(transaction=True)
def test_basic_auth_registry(testbed, alpha, basic_registry, tmp_path, unique, images_to_remove, make_host, run_container, sync):
    """A registry behind htpasswd: anonymous is refused, the stored credentials work end to end."""
    reg = basic_registry.addr
    ref_text = f"{reg}/upd-{unique}/private:1.0"
    config = tmp_path / "docker-config"
    docker_cli(alpha, config, "login", "-u", basic_registry.username, "--password-stdin", reg, input_text=basic_registry.password)
    testbed.build_image("alpha", ref_text, "private-one")
    images_to_remove.append((alpha, ref_text))
    docker_cli(alpha, config, "push", ref_text)

    ref = parse_reference(ref_text)
    with pytest.raises(RegistryAuthError):
        RegistryClient().head_manifest(ref)
    with pytest.raises(RegistryAuthError, match="refused"):
        RegistryClient({reg: Credential("upd-user", "wrong")}).head_manifest(ref)
    client = RegistryClient({reg: Credential(basic_registry.username, basic_registry.password)})
    first = client.head_manifest(ref).digest

    RegistryCredential.objects.create(registry=reg, username=basic_registry.username, password=basic_registry.password)
    host = make_host(alpha)
    cid = run_container(alpha, f"upd-basic-{unique}", image=ref_text)
    sync(host)
    services.check(force=True)
    row = ContainerUpdate.objects.get(container_id=f"{host.pk}:{cid[:12]}")
    assert (row.status, row.current_digest) == (UpdateStatus.OK, first), row.error

    testbed.build_image("beta", ref_text, "private-two")
    images_to_remove.append((testbed.engines["beta"], ref_text))
    docker_cli(testbed.engines["beta"], config, "push", ref_text)
    services.check(force=True)
    row.refresh_from_db()
    assert row.status == UpdateStatus.UPDATE_AVAILABLE and row.latest_digest != first


@pytest.mark.django_db(transaction=True)
def test_bearer_token_registry(testbed, alpha, token_registry, tmp_path, unique, images_to_remove, make_host, run_container, sync):
    """A registry with token auth: the challenge names the realm/service, the client gets a token
    with the password and the right scope, and update detection works through it."""
    reg = token_registry.addr
    ref_text = f"{reg}/upd-{unique}/tok:1.0"
    config = tmp_path / "docker-config"
    docker_cli(alpha, config, "login", "-u", token_registry.username, "--password-stdin", reg, input_text=token_registry.password)
    testbed.build_image("alpha", ref_text, "tok-one")
    images_to_remove.append((alpha, ref_text))
    docker_cli(alpha, config, "push", ref_text)

    ref = parse_reference(ref_text)
    with pytest.raises(RegistryAuthError):
        RegistryClient().head_manifest(ref)  # the token server refuses anonymous requests
    token_registry.tokens.requests.clear()
    client = RegistryClient({reg: Credential(token_registry.username, token_registry.password)})
    first = client.head_manifest(ref).digest
    assert client.head_manifest(ref).digest == first
    granted = [r for r in token_registry.tokens.requests if r["ok"]]
    assert len(granted) == 1, "the token is reused for the same scope"
    assert granted[0]["scope"] == [f"repository:upd-{unique}/tok:pull"]

    RegistryCredential.objects.create(registry=reg, username=token_registry.username, password=token_registry.password)
    host = make_host(alpha)
    cid = run_container(alpha, f"upd-tok-{unique}", image=ref_text)
    sync(host)
    services.check(force=True)
    row = ContainerUpdate.objects.get(container_id=f"{host.pk}:{cid[:12]}")
    assert (row.status, row.current_digest) == (UpdateStatus.OK, first), row.error

    testbed.build_image("beta", ref_text, "tok-two")
    images_to_remove.append((testbed.engines["beta"], ref_text))
    docker_cli(testbed.engines["beta"], config, "push", ref_text)
    services.check(force=True)
    row.refresh_from_db()
    assert row.status == UpdateStatus.UPDATE_AVAILABLE and row.latest_digest != first


class _Limiter:
    """Answers `fail` requests with 429 (+ Retry-After / RateLimit-Remaining), then 200."""

    def __init__(self, fail: int, retry_after: str | None = "1", remaining: str = "10;w=21600"):
        self.hits: list[tuple[str, float]] = []
        limiter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, body: bytes = b""):
                limiter.hits.append((self.command, time.monotonic()))
                if len(limiter.hits) <= fail:
                    self.send_response(429)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Docker-Content-Digest", "sha256:" + "d" * 64)
                self.send_header("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
                self.send_header("RateLimit-Remaining", remaining)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            def do_HEAD(self):
                self._answer()

            def do_GET(self):
                self._answer(json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:" + "e" * 64}}).encode())

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_429_with_retry_after_is_waited_out_with_bounded_backoff():
    limiter = _Limiter(fail=2, retry_after="1")
    waits: list[float] = []
    try:
        client = RegistryClient(max_retries=3, max_wait=10, sleep=waits.append)
        head = client.head_manifest(parse_reference(f"127.0.0.1:{limiter.port}/x/y:1"))
        assert head.digest == "sha256:" + "d" * 64
        assert waits == [1.0, 1.0] and client.stats["retries"] == 2
        assert len(limiter.hits) == 3
    finally:
        limiter.stop()


def test_429_gives_up_when_the_wait_bound_is_reached():
    limiter = _Limiter(fail=100, retry_after=None)
    waits: list[float] = []
    try:
        client = RegistryClient(max_retries=5, max_wait=5, sleep=waits.append)
        with pytest.raises(RateLimited, match="rate limiting"):
            client.head_manifest(parse_reference(f"127.0.0.1:{limiter.port}/x/y:1"))
        assert waits == [1.0, 2.0], "exponential backoff without Retry-After, stopped before exceeding 5 s"
    finally:
        limiter.stop()


def test_exhausted_rate_limit_stops_counted_gets_but_not_heads():
    limiter = _Limiter(fail=0, remaining="0;w=21600")
    try:
        client = RegistryClient()
        ref = parse_reference(f"127.0.0.1:{limiter.port}/x/y:1")
        client.head_manifest(ref)
        assert client.remaining(ref.registry) == 0
        with pytest.raises(RateLimited, match="RateLimit-Remaining"):
            client.get_manifest(ref, "sha256:" + "d" * 64)
        assert [m for m, _ in limiter.hits] == ["HEAD"], "no GET was sent with the limit used up"
        client.head_manifest(ref)
    finally:
        limiter.stop()
