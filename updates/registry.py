"""The registry client: the only module in DockMon that talks HTTP to image registries.

Docker Registry HTTP API v2 / OCI distribution: anonymous, basic and bearer-token auth (the
token endpoint is discovered from the ``WWW-Authenticate`` challenge, as Docker Hub, GHCR,
Quay, GitLab and self-hosted registries do it), ``HEAD`` manifest requests with the full Accept
list, ``GET`` only where the body is needed (multi-arch indexes, platform manifests), tag lists
with ``Link`` pagination. Every request has a timeout; 429 / ``Retry-After`` are waited out with
a bounded backoff; an exhausted ``RateLimit-Remaining`` stops GETs (which count against Docker
Hub's limit) instead of burning through it.

Every request goes through the outbound policy (dockmon_site/outbound.py): the registry itself,
the token realm a registry names in its challenge, ``Link`` pages and every redirect hop (blob and
manifest redirects to storage) are checked and connected to as checked - never a registered
Docker engine's address:port, ports 2375/2376, link-local or metadata addresses, nor what the
administrators' deny/allow lists exclude. Answers are read up to a size cap within a total
deadline. Loopback registries (127.0.0.1:5000...) stay allowed: that is where local ones live.

Nothing here touches the database (the policy reads the registered engines itself); callers
pass credentials in.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode, urljoin, urlsplit

from django.conf import settings

from dockmon_site import crypto, outbound

logger = logging.getLogger(__name__)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX))

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_IMAGE_ID_RE = re.compile(r"^(sha256:)?[a-f0-9]{64}$")
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm", "i386": "386"}
_TAG_PAGE_SIZE = 1000
_MAX_TAG_PAGES = 50
# Answer caps: registries refuse manifests over 4 MiB; a page of 1000 tags is far below it.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_TOKEN_BYTES = 256 * 1024


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
class RegistryError(Exception):
    """A registry could not answer the question; the message is meant for people."""

    kind = "error"


class RegistryUnreachable(RegistryError):
    kind = "unreachable"


class RegistryAuthError(RegistryError):
    kind = "auth"


class ManifestNotFound(RegistryError):
    kind = "not_found"


class RateLimited(RegistryError):
    kind = "rate_limited"


class RegistryRefused(RegistryError):
    """The outbound policy refuses the registry, its token service or a redirect."""

    kind = "refused"


# ---------------------------------------------------------------------------
# Image references
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageReference:
    registry: str  # canonical registry name: "docker.io", "ghcr.io", "127.0.0.1:5000"
    repository: str  # "library/nginx"
    tag: str = ""
    digest: str = ""

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """Registry + repository, e.g. "docker.io/library/nginx"."""
        return f"{self.registry}/{self.repository}"

    @property
    def pinned(self) -> bool:
        return bool(self.digest)

    def with_tag(self, tag: str) -> ImageReference:
        return ImageReference(self.registry, self.repository, tag, "")

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def canonical_registry(host: str) -> str:
    host = (host or "").strip().lower().rstrip("/")
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix):]
    host = host.split("/", 1)[0]
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES or not host else host


def is_image_id(text: str) -> bool:
    return bool(_IMAGE_ID_RE.match((text or "").strip()))


def parse_reference(text: str) -> ImageReference:
    """Parse an image reference the way Docker does (``nginx`` → docker.io/library/nginx:latest).

    ValueError when the text is not a reference (an image ID, empty, malformed).
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("empty image reference")
    if is_image_id(text):
        raise ValueError("an image ID, not a reference")
    name, digest = text, ""
    if "@" in text:
        name, digest = text.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise ValueError(f"malformed digest {digest!r}")
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise ValueError(f"malformed tag {tag!r}")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = canonical_registry(first), rest
    else:
        registry, path = DOCKER_HUB, name
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not all(_PATH_COMPONENT.match(part) for part in path.split("/")):
        raise ValueError(f"malformed repository name {path!r}")
    if not tag and not digest:
        tag = "latest"
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest)


def is_loopback(registry: str) -> bool:
    host = urlsplit(f"//{registry}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_destination(registry: str, *, insecure: bool = False) -> None:
    """The outbound policy on a registry host, without a lookup (save time): ValueError when it
    is a registered engine's address:port, port 2375/2376, link-local, metadata or denied. Each
    request checks again, with every address the name resolves to."""
    host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
    parts = urlsplit(f"//{host}")
    port = parts.port or (80 if is_loopback(registry) or insecure else 443)
    outbound.check_host_port(parts.hostname or host, port, resolve=False)


# ---------------------------------------------------------------------------
# Platforms and manifests
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    @classmethod
    def normalized(cls, os: str, architecture: str, variant: str = "") -> Platform:
        arch = _ARCH_ALIASES.get((architecture or "").lower(), (architecture or "").lower())
        variant = (variant or "").lower()
        if arch == "arm64" and variant == "v8":
            variant = ""  # arm64 is v8 unless said otherwise; indexes write it both ways
        return cls((os or "linux").lower(), arch or "amd64", variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class ManifestHead:
    digest: str
    media_type: str
    size: int | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: dict = field(hash=False, compare=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or (
            not self.media_type and isinstance(self.body.get("manifests"), list)
        )

    @property
    def config_digest(self) -> str:
        return ((self.body.get("config") or {}).get("digest")) or ""

    def platform_digest(self, platform: Platform) -> str | None:
        """The digest of the entry of this index that serves `platform` (None if none does)."""
        exact, loose = None, None
        for entry in self.body.get("manifests") or []:
            plat = entry.get("platform") or {}
            candidate = Platform.normalized(plat.get("os", ""), plat.get("architecture", ""), plat.get("variant", ""))
            if candidate.os != platform.os or candidate.architecture != platform.architecture:
                continue  # also skips attestation entries ("unknown/unknown")
            if candidate.variant == platform.variant:
                exact = exact or entry.get("digest")
            elif not platform.variant or not candidate.variant:
                loose = loose or entry.get("digest")
        return exact or loose


# ---------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Credential:
    username: str = ""
    password: str = field(default="", repr=False)
    ca_cert: str = field(default="", repr=False)
    insecure: bool = False


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`` → ("bearer", {...})."""
    scheme, _, rest = (header or "").strip().partition(" ")
    params = {key.lower(): value for key, value in re.findall(r'(\w+)\s*=\s*"?([^",]*)"?', rest)}
    return scheme.lower(), params


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _describe(exc: outbound.OutboundError) -> str:
    # The policy's messages name hosts and ports, never a path or query (signed storage URLs).
    text = " ".join(str(exc).split())
    if isinstance(exc, outbound.Timeout):
        return "The registry did not answer in time."
    if "Connection refused" in text:
        return "Connection refused: no registry listens there."
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return "The registry's host name cannot be resolved."
    if text.startswith("TLS error"):
        return f"TLS verification failed: {text[:200]}"
    return f"Cannot connect: {text[:200]}"


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------
class RegistryClient:
    """One client per check run: it keeps tokens and rate-limit state between requests.

    Thread-safe: each request has its own connection (outbound.request); shared state is locked.
    """

    def __init__(
        self,
        credentials: Mapping[str, Credential] | None = None,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_wait: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.credentials = {canonical_registry(k): v for k, v in (credentials or {}).items()}
        self.timeout = settings.DOCKMON_REGISTRY_TIMEOUT if timeout is None else timeout
        self.max_retries = settings.DOCKMON_REGISTRY_MAX_RETRIES if max_retries is None else max_retries
        self.max_wait = settings.DOCKMON_REGISTRY_MAX_WAIT if max_wait is None else max_wait
        self._sleep = sleep
        self._lock = threading.Lock()
        self._challenges: dict[str, tuple[str, dict]] = {}
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._remaining: dict[str, int] = {}
        self.stats: Counter = Counter()

    # -- plumbing -----------------------------------------------------------------------
    def _credential(self, registry: str) -> Credential:
        cred = self.credentials.get(canonical_registry(registry)) or Credential()
        if crypto.is_undecryptable(cred.password):
            # Never fall back to anonymous or an empty password: say what to do instead.
            raise RegistryAuthError(f"{registry}: " + crypto.undecryptable_message("the stored registry password"))
        return cred

    def base_url(self, registry: str) -> str:
        # Docker itself talks plain HTTP to loopback registries; others need HTTPS unless the
        # registry is configured as insecure.
        host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        plain = is_loopback(registry) or self._credential(registry).insecure
        return f"{'http' if plain else 'https'}://{host}"

    def _send(self, method: str, registry: str, url: str, *, what: str, headers: dict | None = None, auth=None,
              max_bytes: int = MAX_ANSWER_BYTES) -> outbound.Response:
        """One request under the outbound policy, with the registry's TLS settings. Credentials
        (`headers`, `auth`) go to `url`'s origin only, never to a host a redirect points at.

        Permission: update checks read registries for anyone who may check a container (view);
        only GET/HEAD are sent, and the destinations come from image names, administrators'
        registry settings, or the registry's own answers - all checked by the policy."""
        cred = self._credential(registry)
        try:
            resp = outbound.request(
                method, url, headers={"User-Agent": "DockMon update checker", **(headers or {})}, auth=auth,
                timeout=self.timeout, max_bytes=max_bytes, ca_pem=cred.ca_cert, follow_redirects=True,
            )
        except outbound.Refused as exc:
            raise RegistryRefused(f"{what}: {' '.join(str(exc).split())}") from None
        except outbound.TooManyRedirects:
            raise RegistryError(f"{what}: too many redirects.") from None
        except outbound.OutboundError as exc:
            raise RegistryUnreachable(f"{what}: {_describe(exc)}") from None
        if resp.truncated:
            raise RegistryError(f"{what}: the answer is larger than {max_bytes // 1024} KiB.")
        return resp

    def _auth_headers(self, registry: str, scope: str) -> dict:
        with self._lock:
            challenge = self._challenges.get(registry)
        if challenge is None:
            return {}
        scheme, params = challenge
        cred = self._credential(registry)
        if scheme == "basic":
            if not cred.username:
                raise RegistryAuthError(f"{registry} needs a user name and password (add registry credentials).")
            return {}  # sent as `auth=` (to the registry's origin only)
        if scheme == "bearer":
            return {"Authorization": f"Bearer {self._token(registry, params, scope)}"}
        raise RegistryAuthError(f"{registry} asks for an unsupported authentication scheme {scheme!r}.")

    def _token(self, registry: str, params: dict, scope: str) -> str:
        key = (registry, scope)
        with self._lock:
            cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        realm = params.get("realm")
        if not realm:
            raise RegistryAuthError(f"{registry} sent a bearer challenge without a realm.")
        query = {"service": params["service"]} if params.get("service") else {}
        if scope:
            query["scope"] = scope
        if urlsplit(realm).scheme != "https" and urlsplit(self.base_url(registry)).scheme == "https":
            # The registry is reached over TLS: its credentials never travel in clear to a realm it names.
            raise RegistryAuthError(f"{registry} names a token service without TLS ({_origin_of(realm)}); refused.")
        cred = self._credential(registry)
        auth = (cred.username, cred.password) if cred.username else None
        self.stats["token"] += 1
        # The realm is a URL chosen by the registry: the outbound policy decides whether it may
        # be reached (and each redirect from it), like any other destination.
        url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
        resp = self._send("GET", registry, url, what=f"Token service of {registry}", auth=auth, max_bytes=MAX_TOKEN_BYTES)
        if resp.status_code in (401, 403):
            raise RegistryAuthError(f"{registry} refused the credentials (token service answered {resp.status_code}).")
        if resp.status_code != 200:
            raise RegistryAuthError(f"Token service of {registry} answered {resp.status_code}.")
        try:
            data = resp.json()
        except ValueError:
            raise RegistryAuthError(f"Token service of {registry} did not answer JSON.") from None
        token = data.get("token") or data.get("access_token")
        if not token:
            raise RegistryAuthError(f"Token service of {registry} returned no token.")
        lifetime = float(data.get("expires_in") or 60)
        with self._lock:
            # Renew a little early so a token never expires between fetch and use.
            self._tokens[key] = (token, time.monotonic() + max(1.0, lifetime - 10))
        return token

    def _note_rate_limit(self, registry: str, resp: outbound.Response) -> None:
        value = resp.headers.get("RateLimit-Remaining")
        if value:
            try:
                remaining = int(value.split(";", 1)[0].strip())
            except ValueError:
                return
            with self._lock:
                self._remaining[registry] = remaining

    def remaining(self, registry: str) -> int | None:
        with self._lock:
            return self._remaining.get(registry)

    def _request(self, method: str, registry: str, url: str, *, scope: str, headers: dict | None = None, counts: bool = False):
        """Send one request with auth, retries on 429/503 and a bounded total wait."""
        if counts and self.remaining(registry) == 0:
            # Docker Hub counts manifest GETs against the pull limit; with none left, asking
            # again only earns a 429 and delays the next scheduled pull of the user's hosts.
            raise RateLimited(f"{registry}: the pull rate limit is used up (RateLimit-Remaining: 0).")
        waited, attempt, reauthed = 0.0, 0, False
        while True:
            send_headers = dict(headers or {})
            send_headers.update(self._auth_headers(registry, scope))
            cred = self._credential(registry)
            with self._lock:
                basic = self._challenges.get(registry, ("",))[0] == "basic"
            auth = (cred.username, cred.password) if basic and cred.username else None
            self.stats["requests"] += 1
            resp = self._send(method, registry, url, what=registry, headers=send_headers, auth=auth)
            self._note_rate_limit(registry, resp)
            if resp.status_code == 401 and not reauthed:
                reauthed = True
                scheme, params = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                with self._lock:
                    self._challenges[registry] = (scheme, params)
                    self._tokens.pop((registry, scope), None)
                continue
            if resp.status_code in (401, 403):
                who = f"as {cred.username}" if cred.username else "anonymously"
                raise RegistryAuthError(f"{registry} refused access {who} (HTTP {resp.status_code}).")
            if resp.status_code == 429 or (resp.status_code == 503 and resp.headers.get("Retry-After")):
                delay = _retry_after(resp.headers.get("Retry-After"))
                if delay is None:
                    delay = min(2.0**attempt, 30.0)
                attempt += 1
                if attempt > self.max_retries or waited + delay > self.max_wait:
                    raise RateLimited(
                        f"{registry} is rate limiting (HTTP {resp.status_code}); gave up after {attempt} tries "
                        f"and {waited:.0f}s of waiting."
                    )
                self.stats["retries"] += 1
                logger.info("registry %s answered %s; waiting %.1fs", registry, resp.status_code, delay)
                self._sleep(delay)
                waited += delay
                continue
            return resp

    # -- API ----------------------------------------------------------------------------
    def _manifest_url(self, ref: ImageReference, reference: str) -> str:
        return f"{self.base_url(ref.registry)}/v2/{ref.repository}/manifests/{reference}"

    @staticmethod
    def _scope(ref: ImageReference) -> str:
        return f"repository:{ref.repository}:pull"

    def head_manifest(self, ref: ImageReference, reference: str | None = None) -> ManifestHead:
        """The digest and media type of a tag (or digest) without downloading the manifest."""
        reference = reference or ref.digest or ref.tag
        self.stats["manifest_head"] += 1
        resp = self._request("HEAD", ref.registry, self._manifest_url(ref, reference), scope=self._scope(ref),
                             headers={"Accept": ACCEPT})
        self._raise_for(resp, ref, reference)
        digest = resp.headers.get("Docker-Content-Digest", "")
        media_type = resp.headers.get("Content-Type", "").split(";", 1)[0].strip()
        if not digest:
            # Some registries leave the digest out of HEAD answers: compute it from the body.
            manifest = self.get_manifest(ref, reference)
            return ManifestHead(manifest.digest, manifest.media_type, None)
        size = resp.headers.get("Content-Length")
        return ManifestHead(digest, media_type, int(size) if size and size.isdigit() else None)

    def get_manifest(self, ref: ImageReference, reference: str | None = None) -> Manifest:
        reference = reference or ref.digest or ref.tag
        self.stats["manifest_get"] += 1
        resp = self._request("GET", ref.registry, self._manifest_url(ref, reference), scope=self._scope(ref),
                             headers={"Accept": ACCEPT}, counts=True)
        self._raise_for(resp, ref, reference)
        computed = "sha256:" + hashlib.sha256(resp.content).hexdigest()
        digest = resp.headers.get("Docker-Content-Digest") or computed
        if reference.startswith("sha256:") and computed != reference:
            raise RegistryError(f"{ref.name}: the manifest served for {reference} does not match its digest.")
        try:
            body = json.loads(resp.content)
        except ValueError:
            raise RegistryError(f"{ref.name}:{reference}: the manifest is not JSON.") from None
        media_type = resp.headers.get("Content-Type", "").split(";", 1)[0].strip() or body.get("mediaType", "")
        return Manifest(digest=digest, media_type=media_type, body=body)

    def list_tags(self, ref: ImageReference) -> list[str]:
        """Every tag of the repository, following ``Link: <...>; rel="next"`` pages (bounded)."""
        base = self.base_url(ref.registry)
        url = f"{base}/v2/{ref.repository}/tags/list?n={_TAG_PAGE_SIZE}"
        tags: list[str] = []
        for _ in range(_MAX_TAG_PAGES):
            self.stats["tags_list"] += 1
            resp = self._request("GET", ref.registry, url, scope=self._scope(ref))
            self._raise_for(resp, ref, "tags/list")
            try:
                tags.extend((resp.json() or {}).get("tags") or [])
            except ValueError:
                raise RegistryError(f"{ref.name}: the tag list is not JSON.") from None
            match = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", resp.headers.get("Link", ""))
            if not match:
                return tags
            url = urljoin(base + "/", match.group(1))
            if _origin_of(url) != _origin_of(base):
                # The next page is the registry's own; a Link elsewhere would carry its token there.
                logger.warning("%s: the tag list's next page points at another host; using the tags so far", ref.name)
                return tags
        logger.warning("%s has more than %d pages of tags; using the first ones", ref.name, _MAX_TAG_PAGES)
        return tags

    def _raise_for(self, resp: outbound.Response, ref: ImageReference, reference: str) -> None:
        if resp.status_code == 200:
            return
        if resp.status_code == 404:
            raise ManifestNotFound(f"{ref.name}:{reference} does not exist in the registry.")
        raise RegistryError(f"{ref.name}:{reference}: the registry answered HTTP {resp.status_code}.")
