"""The registry client against real registries (anonymous, basic auth, bearer token) and, for
rate limiting only, a local HTTP server that injects 429s (the real registry cannot)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from testkit.registry import docker_cli
from testkit.testing import free_port
from updates import lookups, services
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

# Every registry request passes the outbound policy, which reads the registered Docker engines
# from the database (a registry must never be an engine's address).
pytestmark = pytest.mark.django_db


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
    from testkit import registry as t

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


# ---------------------------------------------------------------------------
# OCI media types, anonymous tokens, a registry that hangs, the digest cache
# ---------------------------------------------------------------------------
def _row(host, cid) -> ContainerUpdate:
    return ContainerUpdate.objects.get(container_id=f"{host.pk}:{cid[:12]}")


@pytest.mark.django_db(transaction=True)
def test_oci_manifest_and_oci_index_on_the_real_registry(testbed, alpha, beta, make_host, run_container, sync, unique, images_to_remove):
    """GIVEN images pushed to the real registry with OCI media types: a single OCI manifest, and
    an OCI image index (amd64 + arm64) that the engine pulled through the index
    THEN HEAD reports the OCI types, detection says up to date; WHEN a new OCI manifest is pushed
    THEN an update; WHEN only the index's arm64 entry changes THEN no update; WHEN its amd64
    entry changes THEN an update."""
    from testkit import registry as t
    from updates.registry import OCI_INDEX, OCI_MANIFEST

    reg, repo = testbed.registry, f"upd-{unique}/oci"
    base_ref = testbed.image_ref(repo, "base")
    testbed.build_image("beta", base_ref, "oci-base")
    images_to_remove.append((beta, base_ref))
    base = testbed.push("beta", base_ref)
    single, _ = t.push_variant(reg, repo, base, tag="single", marker="single-one", oci=True)
    amd, amd_size = t.push_variant(reg, repo, base, marker="amd-one", oci=True)
    arm, arm_size = t.push_variant(reg, repo, base, architecture="arm64", marker="arm-one", oci=True)
    index1 = t.put_index(reg, repo, "1.0", [(amd, amd_size, "amd64"), (arm, arm_size, "arm64")], oci=True)

    client = RegistryClient()
    head = client.head_manifest(parse_reference(f"{reg}/{repo}:single"))
    assert (head.digest, head.media_type, head.is_index) == (single, OCI_MANIFEST, False)
    head = client.head_manifest(parse_reference(f"{reg}/{repo}:1.0"))
    assert (head.digest, head.media_type, head.is_index) == (index1, OCI_INDEX, True)
    index = client.get_manifest(parse_reference(f"{reg}/{repo}:1.0"), index1)
    assert index.is_index and index.platform_digest(Platform.normalized("linux", "amd64")) == amd

    host = make_host(alpha)
    refs = {}
    for tag in ("single", "1.0"):
        refs[tag] = f"{reg}/{repo}:{tag}"
        alpha.docker("pull", refs[tag])
        images_to_remove.append((alpha, refs[tag]))
    single_cid = run_container(alpha, f"upd-oci1-{unique}", image=refs["single"])
    index_cid = run_container(alpha, f"upd-oci2-{unique}", image=refs["1.0"])
    sync(host)
    services.check(force=True)
    assert (_row(host, single_cid).status, _row(host, single_cid).current_digest) == (UpdateStatus.OK, single)
    assert _row(host, index_cid).status == UpdateStatus.OK, _row(host, index_cid).error

    single2, _ = t.push_variant(reg, repo, base, tag="single", marker="single-two", oci=True)
    arm2, arm2_size = t.push_variant(reg, repo, base, architecture="arm64", marker="arm-two", oci=True)
    index2 = t.put_index(reg, repo, "1.0", [(amd, amd_size, "amd64"), (arm2, arm2_size, "arm64")], oci=True)
    services.check(force=True)
    row = _row(host, single_cid)
    assert (row.status, row.latest_digest) == (UpdateStatus.UPDATE_AVAILABLE, single2)
    row = _row(host, index_cid)
    assert (row.status, row.update_available, row.latest_digest) == (UpdateStatus.OK, False, index2), row.error

    amd2, amd2_size = t.push_variant(reg, repo, base, marker="amd-two", oci=True)
    index3 = t.put_index(reg, repo, "1.0", [(amd2, amd2_size, "amd64"), (arm2, arm2_size, "arm64")], oci=True)
    services.check(force=True)
    row = _row(host, index_cid)
    assert (row.status, row.latest_digest) == (UpdateStatus.UPDATE_AVAILABLE, index3)


@pytest.mark.django_db(transaction=True)
def test_anonymous_bearer_token_flow(testbed, alpha, tmp_path, unique, images_to_remove, make_host, run_container, sync):
    """GIVEN a token-auth registry whose token server hands out pull tokens without any
    credentials (the Docker Hub case) WHEN DockMon has no credentials for it THEN it follows the
    challenge, gets an anonymous pull-only token (once per scope) and detects updates."""
    from testkit.registry import start_token_registry

    registry, tokens = start_token_registry(tmp_path / "anon-registry", "anon-pusher", "anon-pass-123", anonymous_pull=True)
    try:
        reg = registry.addr
        ref_text = f"{reg}/upd-{unique}/public:1.0"
        config = tmp_path / "docker-config"
        docker_cli(alpha, config, "login", "-u", "anon-pusher", "--password-stdin", reg, input_text="anon-pass-123")
        testbed.build_image("alpha", ref_text, "public-one")
        images_to_remove.append((alpha, ref_text))
        docker_cli(alpha, config, "push", ref_text)

        tokens.requests.clear()
        client = RegistryClient()
        ref = parse_reference(ref_text)
        first = client.head_manifest(ref).digest
        assert client.head_manifest(ref).digest == first
        assert tokens.requests == [{"scope": [f"repository:upd-{unique}/public:pull"], "user": None, "ok": True}]

        host = make_host(alpha)
        cid = run_container(alpha, f"upd-anon-{unique}", image=ref_text)
        sync(host)
        assert not RegistryCredential.objects.exists()
        services.check(force=True)
        row = _row(host, cid)
        assert (row.status, row.current_digest) == (UpdateStatus.OK, first), row.error

        testbed.build_image("beta", ref_text, "public-two")
        images_to_remove.append((testbed.engines["beta"], ref_text))
        docker_cli(testbed.engines["beta"], config, "push", ref_text)
        services.check(force=True)
        row.refresh_from_db()
        assert row.status == UpdateStatus.UPDATE_AVAILABLE and row.latest_digest != first
    finally:
        registry.stop()
        tokens.stop()


@pytest.mark.django_db(transaction=True)
def test_a_registry_that_hangs_times_out_with_a_clear_status(testbed, alpha, unique, images_to_remove, make_host, run_container, sync):
    """GIVEN a registry that accepts connections but never answers (a stand-in holding every
    request: fault injection) THEN the client gives up after its timeout with a clear error, and
    a check marks the container `registry_error` saying so (never an update)."""
    from django.test import override_settings

    from testkit.registry import RegistryStandIn

    repo = f"upd-{unique}/hang"
    ref = testbed.image_ref(repo, "1.0")
    testbed.build_image("alpha", ref, "hang-one")
    images_to_remove.append((alpha, ref))
    testbed.push("alpha", ref)
    front = RegistryStandIn(testbed.registry, max_hold=60)
    try:
        front_ref = f"{front.addr}/{repo}:1.0"
        alpha.docker("pull", front_ref)
        images_to_remove.append((alpha, front_ref))
        host = make_host(alpha)
        cid = run_container(alpha, f"upd-hang-{unique}", image=front_ref)
        sync(host)
        front.hold("/v2/")
        with pytest.raises(RegistryUnreachable, match="did not answer in time"):
            RegistryClient(timeout=1).head_manifest(parse_reference(front_ref))
        with override_settings(DOCKMON_REGISTRY_TIMEOUT=1):
            summary = services.check(container_keys=[f"{host.pk}:{cid[:12]}"], force=True)
        row = _row(host, cid)
        assert (row.status, row.update_available) == (UpdateStatus.REGISTRY_ERROR, False)
        assert "did not answer in time" in row.error and summary.updates == []
        assert front.held, "the requests reached the stand-in and were held"
    finally:
        front.stop()


def _ttl(key: str) -> float:
    """Seconds the cache keeps `key` (Redis in the test settings; local memory also handled)."""
    import time as _time

    from django.core.cache import cache

    backend = getattr(cache, "_cache", None)
    if backend is not None and hasattr(backend, "get_client"):
        return backend.get_client(key, write=False).ttl(cache.make_key(key))
    return cache._expire_info[cache.make_and_validate_key(key)] - _time.time()


@pytest.mark.django_db(transaction=True)
def test_cache_ttls_per_kind_and_a_manual_check_bypasses_them(testbed, alpha, make_host, run_container, sync, unique, images_to_remove):
    """GIVEN distinct TTLs for mutable tags, version tags and digests WHEN a check runs THEN the
    answer for `latest` is kept shortest, for `1.2.3` longer, manifests by digest longest; a
    scheduled (not forced) check answers from the cache, so a fresh push is seen only after the
    TTL, while a manual (forced) check asks the registry and sees it at once."""
    from django.test import override_settings

    from testkit import registry as t

    reg, repo = testbed.registry, f"upd-{unique}/ttl"
    v_ref, latest_ref = testbed.image_ref(repo, "1.2.3"), testbed.image_ref(repo, "latest")
    testbed.build_image("alpha", v_ref, "ttl-one")
    alpha.docker("tag", v_ref, latest_ref)
    images_to_remove.extend([(alpha, v_ref), (alpha, latest_ref)])
    testbed.push("alpha", v_ref)
    testbed.push("alpha", latest_ref)
    # A multi-arch index whose other platform then changes: the check reads manifests by digest.
    amd_ref = testbed.image_ref(repo, "amd64-build")
    testbed.build_image("beta", amd_ref, "ttl-amd")  # built elsewhere: alpha knows it only by the index
    images_to_remove.append((testbed.engines["beta"], amd_ref))
    amd = testbed.push("beta", amd_ref)
    amd_size = t.manifest_size(reg, repo, amd)
    arm, arm_size = t.push_variant(reg, repo, amd, architecture="arm64", marker="arm-one")
    t.put_index(reg, repo, "multi", [(amd, amd_size, "amd64"), (arm, arm_size, "arm64")])
    multi_ref = testbed.image_ref(repo, "multi")
    alpha.docker("pull", multi_ref)
    images_to_remove.append((alpha, multi_ref))
    host = make_host(alpha)
    v_cid = run_container(alpha, f"ttl-v-{unique}", image=v_ref)
    latest_cid = run_container(alpha, f"ttl-l-{unique}", image=latest_ref)
    multi_cid = run_container(alpha, f"ttl-m-{unique}", image=multi_ref)
    sync(host)
    # This test's three containers only: other containers on the shared engine ask the registry too.
    keys = [f"{host.pk}:{cid[:12]}" for cid in (v_cid, latest_cid, multi_cid)]
    arm2, arm2_size = t.push_variant(reg, repo, amd, architecture="arm64", marker="arm-two")
    index2 = t.put_index(reg, repo, "multi", [(amd, amd_size, "amd64"), (arm2, arm2_size, "arm64")])

    ttls = {"DOCKMON_UPDATE_CACHE_MUTABLE_SECONDS": 100, "DOCKMON_UPDATE_CACHE_SECONDS": 1000,
            "DOCKMON_UPDATE_CACHE_IMMUTABLE_SECONDS": 10000}
    name = f"{reg}/{repo}"
    with override_settings(**ttls):
        first = services.check(keys, force=True)
        assert first.registry_stats["manifest_head"] == 3 and first.registry_stats["manifest_get"] == 2
        assert 0 < _ttl(lookups._head_key(name, "latest")) <= 100
        assert 100 < _ttl(lookups._head_key(name, "1.2.3")) <= 1000
        assert 0 < _ttl(lookups._head_key(name, "multi")) <= 100
        for digest in (index2, amd):
            assert 1000 < _ttl(lookups._manifest_key(name, digest)) <= 10000, digest

        # A new release under both tags: a scheduled check answers from the cache...
        testbed.build_image("alpha", v_ref, "ttl-two")
        alpha.docker("tag", v_ref, latest_ref)
        testbed.push("alpha", v_ref)
        new = testbed.push("alpha", latest_ref)
        cached = services.check(keys)
        assert cached.registry_stats.get("manifest_head", 0) == 0 and cached.cache_hits >= 3
        assert _row(host, latest_cid).status == UpdateStatus.OK and _row(host, v_cid).status == UpdateStatus.OK
        # ...a manual one asks again and sees the release at once.
        forced = services.check(keys, force=True)
        assert forced.registry_stats["manifest_head"] == 3
        assert (_row(host, latest_cid).status, _row(host, latest_cid).latest_digest) == (UpdateStatus.UPDATE_AVAILABLE, new)
        assert _row(host, v_cid).status == UpdateStatus.UPDATE_AVAILABLE
