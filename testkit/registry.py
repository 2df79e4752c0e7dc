"""Test and benchmark helpers for the updates app: extra real registries (basic auth, bearer
token with a small token server), and direct registry-API manipulation (platform variants,
multi-arch indexes) for states the docker CLI cannot produce here (one architecture only).

Everything listens on 127.0.0.1 and is stopped by pid.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import shutil
import subprocess
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from testkit.testing import free_port

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def bcrypt_hash(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt as _crypt

        hashed = _crypt.crypt(password, _crypt.mksalt(_crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("this libc's crypt() cannot make bcrypt hashes (install apache2-utils for htpasswd -B)")
    return hashed


class RegistryProcess:
    """`docker-registry serve` on a free loopback port with its access log on, stopped by pid."""

    def __init__(self, base: Path, auth_yaml: str = ""):
        self.base = Path(base)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.log_path = self.base / "registry.log"
        (self.base / "data").mkdir(parents=True, exist_ok=True)
        self.config = self.base / "config.yml"
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.base / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.addr}\n"
            + auth_yaml
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> RegistryProcess:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [shutil.which("docker-registry") or "/usr/bin/docker-registry", "serve", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.base,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {self.log_path.read_text()[-2000:]}")
            try:
                resp = _session().get(f"http://{self.addr}/v2/", timeout=1)
                if resp.status_code in (200, 401):
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"registry did not answer on {self.addr}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def manifest_requests(self) -> list[str]:
        """Access-log lines of manifest requests (HEAD or GET /v2/<name>/manifests/<ref>)."""
        return [line for line in self.log_lines() if "/manifests/" in line and ('"HEAD ' in line or '"GET ' in line)]


def start_basic_auth_registry(base: Path, username: str, password: str) -> RegistryProcess:
    base.mkdir(parents=True, exist_ok=True)
    htpasswd = base / "htpasswd"
    htpasswd.write_text(f"{username}:{bcrypt_hash(password).replace('$2b$', '$2y$', 1)}\n")
    auth = f"auth:\n  htpasswd:\n    realm: dockmon-test\n    path: {htpasswd}\n"
    return RegistryProcess(base, auth).start()


# ---------------------------------------------------------------------------
# Bearer tokens: a token server the registry trusts through `rootcertbundle`
# ---------------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues RS256 JWTs the way Docker's token spec says, to holders of the right password."""

    service = "dockmon-test-registry"
    issuer = "dockmon-test-issuer"

    def __init__(self, base: Path, username: str, password: str, *, anonymous_pull: bool = False):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.username, self.password = username, password
        # Docker Hub's way: a token without any credentials, good for pulling public images.
        self.anonymous_pull = anonymous_pull
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockmon test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        base.mkdir(parents=True, exist_ok=True)
        self.cert_path = base / "token-signer.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._der = self.cert.public_bytes(serialization.Encoding.DER)
        self.requests: list[dict] = []
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    given_user, _, given_pw = base64.b64decode(header[6:]).decode().partition(":")
                    if (given_user, given_pw) != (server.username, server.password):
                        server.requests.append({"scope": query.get("scope", []), "user": given_user, "ok": False})
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = given_user
                if user is None and not server.anonymous_pull:
                    # No anonymous pulls on this registry: everything needs the password.
                    server.requests.append({"scope": query.get("scope", []), "user": None, "ok": False})
                    self.send_response(401)
                    self.end_headers()
                    return
                server.requests.append({"scope": query.get("scope", []), "user": user, "ok": True})
                allowed = ("pull", "push") if user else ("pull",)
                body = json.dumps({"token": server.token(user or "", query.get("scope", []), allowed), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def token(self, user: str, scopes: list[str], allowed=("pull", "push")) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for scope in scopes:
            for item in scope.split(" "):
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind == "repository" and name:
                    access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a in allowed]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._der).decode()]}
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def start(self) -> TokenServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_token_registry(base: Path, username: str, password: str, *, anonymous_pull: bool = False) -> tuple[RegistryProcess, TokenServer]:
    tokens = TokenServer(base, username, password, anonymous_pull=anonymous_pull).start()
    auth = (
        "auth:\n  token:\n"
        f"    realm: {tokens.realm}\n    service: {tokens.service}\n    issuer: {tokens.issuer}\n"
        f"    rootcertbundle: {tokens.cert_path}\n"
    )
    try:
        return RegistryProcess(base, auth).start(), tokens
    except Exception:
        tokens.stop()
        raise


# ---------------------------------------------------------------------------
# Docker CLI with its own config (logins never touch the shared testbed config)
# ---------------------------------------------------------------------------
def docker_cli(engine, config_dir: Path, *args: str, timeout: float = 120, input_text: str | None = None) -> subprocess.CompletedProcess:
    from testkit.testbed import docker_bin

    config_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.run([docker_bin(), "--config", str(config_dir), "-H", engine.unix_url, *args],
                          capture_output=True, text=True, timeout=timeout, check=True, input=input_text)


# ---------------------------------------------------------------------------
# Direct registry writes (anonymous registries): platform variants and indexes
# ---------------------------------------------------------------------------
def _upload_blob(registry: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    s = _session()
    resp = s.post(f"http://{registry}/v2/{repo}/blobs/uploads/", timeout=10)
    resp.raise_for_status()
    location = resp.headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    sep = "&" if "?" in location else "?"
    resp = s.put(f"{location}{sep}digest={digest}", data=data, headers={"Content-Type": "application/octet-stream"}, timeout=30)
    resp.raise_for_status()
    return digest


def put_manifest(registry: str, repo: str, reference: str, body: dict, media_type: str) -> str:
    data = json.dumps(body).encode()
    resp = _session().put(f"http://{registry}/v2/{repo}/manifests/{reference}", data=data,
                          headers={"Content-Type": media_type}, timeout=10)
    resp.raise_for_status()
    return resp.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(data).hexdigest()


def get_manifest(registry: str, repo: str, reference: str) -> tuple[dict, bytes]:
    resp = _session().get(f"http://{registry}/v2/{repo}/manifests/{reference}",
                          headers={"Accept": f"{DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}, {OCI_MANIFEST}, {OCI_INDEX}"}, timeout=10)
    resp.raise_for_status()
    return resp.json(), resp.content


def push_variant(registry: str, repo: str, base_reference: str, *, tag: str | None = None,
                 architecture: str | None = None, marker: str = "", oci: bool = False) -> tuple[str, int]:
    """A new single-platform manifest made from an existing one (same layers, a changed config):
    another architecture and/or a marker label; with oci=True an OCI image manifest (OCI media
    types for it, its config and its gzip layers: the same bytes). Returns (digest, size); tagged
    when `tag` is given."""
    manifest, _ = get_manifest(registry, repo, base_reference)
    config_digest = manifest["config"]["digest"]
    resp = _session().get(f"http://{registry}/v2/{repo}/blobs/{config_digest}", timeout=10)
    resp.raise_for_status()
    config = resp.json()
    if architecture:
        config["architecture"] = architecture
    config.setdefault("config", {}).setdefault("Labels", {})
    config["config"]["Labels"] = {**(config["config"]["Labels"] or {}), "dockmon.test.marker": marker or secrets.token_hex(4)}
    data = json.dumps(config).encode()
    new_config = _upload_blob(registry, repo, data)
    manifest["config"] = {**manifest["config"], "digest": new_config, "size": len(data)}
    media_type = DOCKER_MANIFEST
    if oci:
        media_type = OCI_MANIFEST
        manifest["mediaType"] = OCI_MANIFEST
        manifest["config"]["mediaType"] = OCI_CONFIG
        manifest["layers"] = [{**layer, "mediaType": OCI_LAYER_GZIP} for layer in manifest["layers"]]
    body = json.dumps(manifest).encode()
    digest = put_manifest(registry, repo, tag or "sha256:" + hashlib.sha256(body).hexdigest(), manifest, media_type)
    return digest, len(body)


def put_index(registry: str, repo: str, tag: str, entries: list[tuple[str, int, str]], *, oci: bool = False) -> str:
    """A Docker manifest list (or, with oci=True, an OCI image index of OCI manifests) under `tag`:
    entries are (digest, size, architecture) on linux."""
    index_type, entry_type = (OCI_INDEX, OCI_MANIFEST) if oci else (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
    body = {
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [
            {"mediaType": entry_type, "digest": d, "size": size, "platform": {"architecture": arch, "os": "linux"}}
            for d, size, arch in entries
        ],
    }
    return put_manifest(registry, repo, tag, body, index_type)


def manifest_size(registry: str, repo: str, reference: str) -> int:
    return len(get_manifest(registry, repo, reference)[1])


def delete_manifest(registry: str, repo: str, digest: str) -> None:
    """Delete a manifest (and so every tag pointing at it); the registry must allow deletes."""
    resp = _session().delete(f"http://{registry}/v2/{repo}/manifests/{digest}", timeout=10)
    resp.raise_for_status()


# ---------------------------------------------------------------------------
# Fault injection: a front for the real registry that can hold or stall answers
# ---------------------------------------------------------------------------
class RegistryStandIn:
    """A loopback HTTP front that forwards reads (GET/HEAD) to a real registry and injects the
    faults the real one cannot be made to produce:

    - hold(substring): requests whose path contains it wait (up to `max_hold` s) until release();
    - stall_blobs = True: a blob download sends its headers and half its bytes, then nothing more
      until stop() (a registry stalling mid-blob).

    Engines pull through it like through any loopback registry (plain HTTP, trusted by default).
    """

    FORWARDED_HEADERS = ("Content-Type", "Docker-Content-Digest", "Docker-Distribution-Api-Version", "Link",
                         "WWW-Authenticate", "RateLimit-Remaining", "Retry-After", "ETag")

    def __init__(self, upstream: str, *, max_hold: float = 60.0):
        self.upstream = upstream
        self.max_hold = max_hold
        self.stall_blobs = False
        self.requests: list[tuple[str, str]] = []
        self.stalled: list[str] = []
        self.held: list[str] = []
        self._holds: list[str] = []
        self._released = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                front._serve(self, body=False)

            def do_GET(self):
                front._serve(self, body=True)

        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def hold(self, substring: str) -> None:
        with self._lock:
            self._holds.append(substring)
            self._released.clear()

    def release(self) -> None:
        with self._lock:
            self._holds.clear()
        self._released.set()

    def stop(self) -> None:
        self._stopping.set()
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = handler.path
        with self._lock:
            self.requests.append((handler.command, path))
            held = any(s in path for s in self._holds)
            if held:
                self.held.append(path)
        if held:
            self._released.wait(self.max_hold)
            if self._stopping.is_set():
                return  # the connection just closes: no answer at all
        headers = {}
        for name in ("Accept", "Authorization", "Range"):
            values = handler.headers.get_all(name) or []
            if values:
                # Engines send one Accept header per media type: all of them count.
                headers[name] = ", ".join(values)
        try:
            resp = _session().request(handler.command, f"http://{self.upstream}{path}", headers=headers, timeout=30,
                                      allow_redirects=True)
        except requests.RequestException:
            handler.send_error(502)
            return
        content = resp.content if body else b""
        handler.send_response(resp.status_code)
        for name in self.FORWARDED_HEADERS:
            if name in resp.headers:
                handler.send_header(name, resp.headers[name])
        handler.send_header("Content-Length", resp.headers.get("Content-Length", str(len(content))) if not body else str(len(content)))
        handler.end_headers()
        if not body:
            return
        if self.stall_blobs and "/blobs/sha256:" in path and resp.status_code == 200 and len(content) > 1:
            with self._lock:
                self.stalled.append(path)
            handler.wfile.write(content[: len(content) // 2])
            handler.wfile.flush()
            self._stopping.wait()  # never sends the rest; the connection closes at stop()
            return
        handler.wfile.write(content)
