"""The only module that talks to Docker engines (it alone imports the docker SDK).

Everything it returns is plain data (dataclasses, dicts, strings); callers never see SDK
objects other than the client handle and the event stream. Every call carries a timeout, and
every failure becomes an EngineError with a message a person can act on.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlparse

import docker
import docker.auth
import docker.constants
import docker.errors
import requests.exceptions
from django.conf import settings

from containers import engine_tls
from dockmon_site import crypto

logger = logging.getLogger(__name__)

SUPPORTED_SCHEMES = ("unix", "tcp", "ssh")
_HEALTH_IN_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_EXIT_IN_STATUS = re.compile(r"Exited \((-?\d+)\)")
_ZERO_TIME = "0001-01-01T00:00:00Z"


class EngineError(Exception):
    """A Docker engine could not do what was asked; the message is meant for people."""

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


class ContainerGone(EngineError):
    """The container no longer exists on the engine."""


@dataclass(frozen=True)
class EngineInfo:
    version: str
    api_version: str
    engine_id: str
    name: str
    os: str
    containers: int


@dataclass
class ContainerFacts:
    container_id: str
    name: str
    image: str = ""
    image_id: str = ""
    command: str = ""
    state: str = "created"
    status: str = ""
    health: str = "none"
    exit_code: int | None = None
    restart_count: int = 0
    labels: dict = field(default_factory=dict)
    ports: list = field(default_factory=list)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    mounts: list = field(default_factory=list)
    networks: list = field(default_factory=list)
    # True when the facts come from a full inspect (started_at etc. are then meaningful).
    complete: bool = True


@dataclass(frozen=True)
class EngineEvent:
    container_id: str
    action: str
    name: str
    time_nano: int
    attributes: dict


# ---------------------------------------------------------------------------
# URLs and clients
# ---------------------------------------------------------------------------
def normalize_url(url: str, *, tls: bool = False) -> str:
    """Check a host URL and return it in canonical form; ValueError says what is wrong."""
    url = (url or "").strip()
    if not url:
        raise ValueError("Enter the engine URL, e.g. unix:///var/run/docker.sock or tcp://127.0.0.1:2376.")
    parsed = urlparse(url)
    if parsed.scheme not in SUPPORTED_SCHEMES:
        raise ValueError(f"Unsupported scheme {parsed.scheme or '(none)'!r}: use unix://, tcp:// or ssh://.")
    if parsed.scheme == "unix":
        path = parsed.path or ""
        if parsed.netloc or not path.startswith("/"):
            raise ValueError("A unix URL needs an absolute socket path: unix:///var/run/docker.sock.")
        return f"unix://{path}"
    if parsed.query or parsed.fragment or parsed.path not in ("", "/"):
        raise ValueError("The URL must not have a path, query or fragment.")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError("The port is not a number between 1 and 65535.") from None
    if not parsed.hostname:
        raise ValueError("The URL has no host name.")
    if parsed.scheme == "ssh":
        user = f"{parsed.username}@" if parsed.username else ""
        return f"ssh://{user}{parsed.hostname}" + (f":{port}" if port else "")
    if port is None:
        port = 2376 if tls else 2375
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return f"tcp://{host}:{port}"


NO_TIMEOUT = -1.0

# --- ssh:// ---------------------------------------------------------------------------------
# The SDK reaches an ssh:// engine through the `ssh` command. As the SDK runs it, ssh may ask for
# a password or a host key on the terminal, and waits for a silent server for ever (the client's
# timeout never reaches it). DockMon runs it never to prompt and to give up connecting after the
# client's timeout, and keeps what ssh said when it fails, for the error message.
_ssh_failure = threading.local()


def _ssh_socket_class():
    try:
        from docker.transport import sshconn
    except ImportError:  # paramiko missing: the SDK says so when the client is made
        return None
    import math
    import subprocess
    import tempfile

    class BoundedSSHSocket(sshconn.SSHSocket):
        def connect(self, **kwargs):
            # Streams have no timeout (they may be idle), but connecting is bounded all the same.
            timeout = self.gettimeout() or settings.DOCKMON_ENGINE_TIMEOUT
            args = ["ssh", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
                    "-o", f"ConnectTimeout={max(1, math.ceil(timeout))}"]
            if self.user:
                args += ["-l", self.user]
            if self.port:
                args += ["-p", self.port]
            args += ["--", self.host, "docker system dial-stdio"]
            environment = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "SSL_CERT_FILE")}
            self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: ssh can never block on it
            self.proc = subprocess.Popen(args, env=environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._stderr, start_new_session=True)

        def _failed(self) -> None:
            try:
                self.proc.wait(timeout=1)
                self._stderr.seek(0)
                lines = self._stderr.read().decode(errors="replace").strip().splitlines()
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return
            if lines:
                _ssh_failure.message = lines[-1]

        def _write(self, data):
            try:
                return super()._write(data)
            except OSError:
                self._failed()
                raise

        def close(self):
            # The HTTP layer reads ssh's stdout directly and closes the socket on a failure;
            # an ssh that has exited by then failed: keep what it said.
            stderr = getattr(self, "_stderr", None)
            if self.proc is not None and stderr is not None and not stderr.closed and os.fstat(stderr.fileno()).st_size:
                self._failed()
            try:
                super().close()
            except OSError:
                pass  # ssh is gone already (the SDK writes to its closed stdin)
            if stderr is not None:
                stderr.close()

    sshconn.SSHSocket = BoundedSSHSocket
    return BoundedSSHSocket


_ssh_socket_class()
# --- end of ssh:// -------------------------------------------------------------------------


def check_engine_allowed(url: str) -> None:
    """DOCKMON_ENGINE_ALLOW: when set, a tcp:// or ssh:// engine must lie in it (a name must
    resolve to allowed addresses only); otherwise EngineError and nothing is sent, not even the
    ssh command is started. unix:// sockets are local and always allowed. The SDK (or ssh)
    resolves a name again when it connects: this keeps an administrator's typo or a generated
    URL off the network, it is not a defence against a DNS server that lies."""
    allow = settings.DOCKMON_ENGINE_ALLOW
    if not allow or url.startswith("unix://"):
        return
    from dockmon_site.outbound_rules import ip_of, parse_rules

    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (22 if parsed.scheme == "ssh" else 2375)
    literal = ip_of(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = [ip_of(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
        except (OSError, UnicodeError) as exc:
            raise EngineError(f"Cannot resolve {host}: {exc}", unreachable=True) from None
    rules = parse_rules(allow, setting="DOCKMON_ENGINE_ALLOW")
    for address in addresses:
        if address is None or not any(rule.matches(address, port) for rule in rules):
            raise EngineError(f"Refused: {host}:{port} is not in DOCKMON_ENGINE_ALLOW; nothing was sent.")


def connect(url: str, *, tls_ca: str = "", tls_cert: str = "", tls_key: str = "", timeout: float | None = None):
    """A docker client for one engine, without any network call yet.

    timeout=NO_TIMEOUT is for long-lived streams (log follow, stats stream) that may be idle;
    their owners close them explicitly.
    """
    timeout = settings.DOCKMON_ENGINE_TIMEOUT if timeout is None else timeout
    if timeout == NO_TIMEOUT:
        timeout = None
    if any(crypto.is_undecryptable(value) for value in (tls_ca, tls_cert, tls_key)):
        raise EngineError(crypto.UNDECRYPTABLE_TLS_MESSAGE)
    url = normalize_url(url, tls=bool(tls_cert or tls_ca))
    check_engine_allowed(url)
    context = None
    base_url = url
    use_ssh_client = False
    if url.startswith("tcp://") and (tls_ca or tls_cert):
        try:
            context = engine_tls.ssl_context(tls_ca, tls_cert, tls_key)  # in memory only: no key file on disk
        except engine_tls.TLSMaterialError as exc:
            raise EngineError(str(exc)) from exc
        base_url = "https://" + url[len("tcp://"):]
    elif url.startswith("ssh://"):
        use_ssh_client = True
    try:
        # A fixed API version avoids a network call (and its TLS check) during construction;
        # the real version is negotiated in engine_info().
        client = docker.DockerClient(
            base_url=base_url, version="1.41", timeout=timeout, tls=context is not None, use_ssh_client=use_ssh_client
        )
    except docker.errors.DockerException as exc:
        raise EngineError(f"Cannot set up a client for {url}: {exc}") from exc
    if context is not None:
        client.api.mount("https://", engine_tls.EngineTLSAdapter(context, bool(tls_ca), pool_connections=docker.constants.DEFAULT_NUM_POOLS))
    # requests lets REQUESTS_CA_BUNDLE / proxy variables override the session's own `verify`
    # and proxies; an engine's private CA must win, and engines are never reached via a proxy.
    client.api.trust_env = False
    return client


def client_for_host(host, timeout: float | None = None):
    return connect(host.url, tls_ca=host.tls_ca, tls_cert=host.tls_cert, tls_key=host.tls_key, timeout=timeout)


def describe_error(exc: BaseException) -> str:
    """Turn an SDK/requests error into one short sentence."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS handshake failed (check the CA, client certificate and key): {_short(text)}"
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout | socket.timeout):
        return "The engine did not answer in time."
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "Connection refused" in text:
            return "Connection refused: nothing listens at that address."
        if "No such file or directory" in text or "FileNotFoundError" in text:
            return "The socket does not exist."
        if "Permission denied" in text:
            return "Permission denied on the socket."
        if "Name or service not known" in text or "nodename nor servname" in text:
            return "The host name cannot be resolved."
        if "timed out" in text.lower():
            return "The engine did not answer in time."
        return f"Cannot connect: {_short(text)}"
    if isinstance(exc, docker.errors.APIError):
        return f"The engine refused: {exc.explanation or exc}"
    return _short(text) or exc.__class__.__name__


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _wrap(exc: BaseException) -> EngineError:
    if isinstance(exc, docker.errors.NotFound):
        return ContainerGone(describe_error(exc))
    unreachable = isinstance(
        exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout | socket.timeout | OSError
    ) and not isinstance(exc, requests.exceptions.SSLError | docker.errors.APIError)  # APIError is an OSError too
    ssh_said = getattr(_ssh_failure, "message", None)
    if ssh_said:
        _ssh_failure.message = None
        if unreachable:
            return EngineError(f"ssh: {_short(ssh_said.removeprefix('ssh: '))}", unreachable=True)
    return EngineError(describe_error(exc), unreachable=unreachable)


_ENGINE_FAILURES = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def engine_info(client) -> EngineInfo:
    try:
        version = client.api.version(api_version=False)
        # Speak the engine's own API version (newer engines drop old ones).
        client.api._version = version.get("ApiVersion") or client.api._version
        info = client.api.info()
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc
    return EngineInfo(
        version=version.get("Version", ""),
        api_version=version.get("ApiVersion", ""),
        engine_id=info.get("ID", "") or "",
        name=info.get("Name", "") or "",
        os=info.get("OperatingSystem", "") or "",
        containers=int(info.get("Containers") or 0),
    )


def probe(url: str, *, tls_ca: str = "", tls_cert: str = "", tls_key: str = "", timeout: float | None = None) -> EngineInfo:
    """Connect, ask the engine who it is, and close. Raises EngineError."""
    client = connect(url, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, timeout=timeout)
    try:
        return engine_info(client)
    finally:
        client.close()


def ping(client) -> None:
    try:
        client.api.ping()
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


# ---------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------
def parse_time(value) -> datetime | None:
    """Engine timestamps (RFC 3339 with nanoseconds and any offset, or epoch seconds) → aware UTC."""
    if value in (None, "", _ZERO_TIME, 0):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    text = str(value).strip()
    if text.startswith("0001-01-01"):
        return None
    match = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$", text)
    if not match:
        return None
    base, fraction, offset = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    offset = offset or "Z"
    if offset == "Z":
        offset = "+00:00"
    elif ":" not in offset:
        offset = offset[:3] + ":" + offset[3:]
    return datetime.fromisoformat(f"{base}.{micro}{offset}").astimezone(UTC)


def _humanize(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = seconds // 60
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = minutes // 60
    if hours < 48:
        return "About an hour" if hours == 1 else f"{hours} hours"
    days = hours // 24
    if days < 14:
        return f"{days} days"
    if days < 60:
        return f"{days // 7} weeks"
    if days < 730:
        return f"{days // 30} months"
    return f"{days // 365} years"


def _status_text(state: str, health: str, exit_code, started_at, finished_at) -> str:
    now = datetime.now(UTC)
    if state == "running" or state == "paused":
        text = "Up " + _humanize((now - started_at).total_seconds()) if started_at else "Up"
        if health in ("healthy", "unhealthy"):
            text += f" ({health})"
        elif health == "starting":
            text += " (health: starting)"
        if state == "paused":
            text += " (Paused)"
        return text
    if state == "exited":
        ago = f" {_humanize((now - finished_at).total_seconds())} ago" if finished_at else ""
        return f"Exited ({exit_code if exit_code is not None else 0}){ago}"
    return state.capitalize()


def _ports_from_inspect(port_map: dict | None) -> list[dict]:
    ports = []
    for spec, bindings in sorted((port_map or {}).items()):
        private, _, proto = spec.partition("/")
        if not bindings:
            ports.append({"private_port": int(private), "type": proto or "tcp", "public_port": None, "ip": ""})
            continue
        for binding in bindings:
            public = binding.get("HostPort")
            ports.append(
                {
                    "private_port": int(private),
                    "type": proto or "tcp",
                    "public_port": int(public) if public else None,
                    "ip": binding.get("HostIp", ""),
                }
            )
    return ports


def _ports_from_summary(port_list: list | None) -> list[dict]:
    ports = [
        {
            "private_port": p.get("PrivatePort"),
            "type": p.get("Type", "tcp"),
            "public_port": p.get("PublicPort"),
            "ip": p.get("IP", ""),
        }
        for p in port_list or []
    ]
    return sorted(ports, key=lambda p: (p["private_port"] or 0, p["type"], p["ip"] or ""))


def facts_from_inspect(data: dict) -> ContainerFacts:
    state = data.get("State") or {}
    config = data.get("Config") or {}
    status = state.get("Status") or "created"
    health = ((state.get("Health") or {}).get("Status") or "none").lower()
    started_at = parse_time(state.get("StartedAt"))
    finished_at = parse_time(state.get("FinishedAt"))
    exit_code = state.get("ExitCode")
    cmd = config.get("Cmd") or []
    entrypoint = config.get("Entrypoint") or []
    return ContainerFacts(
        container_id=data["Id"],
        name=(data.get("Name") or "").lstrip("/"),
        image=config.get("Image") or "",
        image_id=data.get("Image") or "",
        command=" ".join([*entrypoint, *cmd]) if isinstance(cmd, list) else str(cmd),
        state=status,
        status=_status_text(status, health, exit_code, started_at, finished_at),
        health=health if health in ("starting", "healthy", "unhealthy") else "none",
        exit_code=exit_code if status in ("exited", "dead") else None,
        restart_count=int(data.get("RestartCount") or 0),
        labels=config.get("Labels") or {},
        ports=_ports_from_inspect((data.get("NetworkSettings") or {}).get("Ports")),
        created_at=parse_time(data.get("Created")),
        started_at=started_at,
        finished_at=finished_at,
        mounts=[
            {
                "type": m.get("Type", ""), "name": m.get("Name", ""), "source": m.get("Source", ""),
                "destination": m.get("Destination", ""), "mode": m.get("Mode", ""), "rw": bool(m.get("RW")),
            }
            for m in data.get("Mounts") or []
        ],
        networks=sorted(((data.get("NetworkSettings") or {}).get("Networks") or {}).keys())
        or ([network_mode] if (network_mode := (data.get("HostConfig") or {}).get("NetworkMode")) else []),
    )


def facts_from_summary(item: dict) -> ContainerFacts:
    status = item.get("Status") or ""
    health_match = _HEALTH_IN_STATUS.search(status)
    health = "none"
    if health_match:
        health = "starting" if health_match.group(1) == "health: starting" else health_match.group(1)
    exit_match = _EXIT_IN_STATUS.search(status)
    names = item.get("Names") or []
    return ContainerFacts(
        container_id=item["Id"],
        name=(names[0] if names else "").lstrip("/"),
        image=item.get("Image") or "",
        image_id=item.get("ImageID") or "",
        command=item.get("Command") or "",
        state=item.get("State") or "created",
        status=status,
        health=health,
        exit_code=int(exit_match.group(1)) if exit_match else None,
        labels=item.get("Labels") or {},
        ports=_ports_from_summary(item.get("Ports")),
        created_at=parse_time(item.get("Created")),
        complete=False,
    )


def list_containers(client) -> list[ContainerFacts]:
    """Every container on the engine (running or not), from one list call."""
    try:
        items = client.api.containers(all=True)
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc
    return [facts_from_summary(item) for item in items]


def inspect_container(client, container_id: str) -> ContainerFacts:
    try:
        data = client.api.inspect_container(container_id)
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc
    return facts_from_inspect(data)


def open_event_stream(client, since: int | None = None):
    """A blocking iterator of container EngineEvents; close() on the returned stream ends it."""
    try:
        stream = client.api.events(decode=True, since=since, filters={"type": ["container"]})
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc
    return stream


def to_engine_event(raw: dict) -> EngineEvent | None:
    if raw.get("Type") != "container":
        return None
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    action, _, detail = (raw.get("Action") or raw.get("status") or "").partition(":")
    container_id = actor.get("ID") or raw.get("id") or ""
    if not container_id:
        return None
    if detail.strip():
        # "health_status: healthy", "exec_start: sh -c ..." carry their value after the colon.
        attributes = {**attributes, "detail": detail.strip()}
    return EngineEvent(
        container_id=container_id,
        action=action.strip(),
        name=attributes.get("name", ""),
        time_nano=int(raw.get("timeNano") or int(raw.get("time") or 0) * 1_000_000_000),
        attributes=attributes,
    )


def event_time(event: EngineEvent) -> datetime | None:
    if not event.time_nano:
        return None
    return datetime.fromtimestamp(event.time_nano / 1_000_000_000, tz=UTC)


def status_text(state: str, health: str, exit_code, started_at, finished_at) -> str:
    """Docker's human status line ("Up 5 minutes (healthy)", "Exited (0) 2 hours ago")."""
    return _status_text(state, health, exit_code, started_at, finished_at)


EVENT_STREAM_ERRORS = _ENGINE_FAILURES


def wrap_error(exc: BaseException) -> EngineError:
    return _wrap(exc)


# ---------------------------------------------------------------------------
# Container operations
# ---------------------------------------------------------------------------
OPERATIONS = ("start", "stop", "restart", "kill", "pause", "unpause")


def operate(client, container_id: str, action: str, *, timeout: int | None = None, signal: str | None = None) -> None:
    """Run one lifecycle operation. `timeout` is the stop grace period in seconds."""
    if action not in OPERATIONS:
        raise ValueError(f"unknown operation {action!r}")
    api = client.api
    try:
        if action == "start":
            api.start(container_id)
        elif action == "stop":
            # The HTTP call lasts as long as the grace period: give the socket that long too.
            api.stop(container_id, timeout=timeout if timeout is not None else 10)
        elif action == "restart":
            api.restart(container_id, timeout=timeout if timeout is not None else 10)
        elif action == "kill":
            api.kill(container_id, signal=signal or "SIGKILL")
        elif action == "pause":
            api.pause(container_id)
        else:
            api.unpause(container_id)
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


def rename(client, container_id: str, name: str) -> None:
    try:
        client.api.rename(container_id, name)
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


def remove(client, container_id: str, *, force: bool = False, volumes: bool = False) -> None:
    try:
        client.api.remove_container(container_id, force=force, v=volumes)
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


def engine_status_code(exc: BaseException) -> int | None:
    cause = exc.__cause__
    if isinstance(cause, docker.errors.APIError) and cause.response is not None:
        return cause.response.status_code
    return None


# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LogLine:
    ts: datetime | None
    stream: str
    text: str


MAX_LINE_BYTES = 16 * 1024


def _split_timestamp(raw: bytes) -> tuple[datetime | None, bytes]:
    head, sep, rest = raw.partition(b" ")
    if sep and head[:2].isdigit():
        ts = parse_time(head.decode("ascii", "replace"))
        if ts is not None:
            return ts, rest
    return None, raw


def decode_line(raw: bytes, stream: str, *, limit: int = MAX_LINE_BYTES) -> LogLine:
    """One raw log line (with the engine's timestamp prefix) → LogLine; never raises on bad bytes."""
    ts, body = _split_timestamp(raw.rstrip(b"\r\n") if raw.endswith(b"\n") else raw)
    if len(body) > limit:
        dropped = len(body) - limit
        body = body[:limit]
        text = body.decode("utf-8", "replace") + f" …[{dropped} more bytes]"
    else:
        text = body.decode("utf-8", "replace")
    return LogLine(ts=ts, stream=stream, text=text)


def _is_tty(client, container_id: str) -> bool:
    data = client.api.inspect_container(container_id)
    return bool((data.get("Config") or {}).get("Tty"))


def follow_logs(client, container_id: str, stream_name: str, *, tail: int = 0):
    """A blocking stream of raw log chunks for one of stdout/stderr; close() it to stop."""
    try:
        return client.api.logs(
            container_id, stdout=stream_name == "stdout", stderr=stream_name == "stderr",
            timestamps=True, stream=True, follow=True, tail=tail,
        )
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


def container_is_tty(client, container_id: str) -> bool:
    try:
        return _is_tty(client, container_id)
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


# ---------------------------------------------------------------------------
# Stats
# ---------------------------------------------------------------------------
@dataclass
class StatsSample:
    container_id: str
    ts: datetime
    cpu_percent: float
    mem_bytes: int
    mem_limit: int
    net_rx: int
    net_tx: int
    blk_read: int
    blk_write: int
    pids: int


def compute_stats(container_id: str, data: dict) -> StatsSample:
    """The numbers `docker stats` shows, from one stats document (with precpu_stats)."""
    cpu = data.get("cpu_stats") or {}
    pre = data.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    # No previous reading (a stream's first frame, a one-shot call): the deltas would be the
    # container's whole lifetime, not the recent interval `docker stats` shows. Report 0.
    system_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0) if pre.get("system_cpu_usage") else 0
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_percent = (cpu_delta / system_delta) * online * 100.0 if cpu_delta > 0 and system_delta > 0 else 0.0

    memory = data.get("memory_stats") or {}
    usage = memory.get("usage") or 0
    mstats = memory.get("stats") or {}
    # Like the docker CLI: page cache that can be dropped is not "used" memory.
    if "total_inactive_file" in mstats and mstats["total_inactive_file"] < usage:  # cgroup v1
        usage -= mstats["total_inactive_file"]
    elif "inactive_file" in mstats and mstats["inactive_file"] < usage:  # cgroup v2
        usage -= mstats["inactive_file"]

    rx = tx = 0
    for net in (data.get("networks") or {}).values():
        rx += net.get("rx_bytes", 0)
        tx += net.get("tx_bytes", 0)
    read = write = 0
    for entry in ((data.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []):
        op = (entry.get("op") or "").lower()
        if op == "read":
            read += entry.get("value", 0)
        elif op == "write":
            write += entry.get("value", 0)
    return StatsSample(
        container_id=container_id,
        ts=parse_time(data.get("read")) or datetime.now(UTC),
        cpu_percent=round(cpu_percent, 3),
        mem_bytes=int(usage),
        mem_limit=int(memory.get("limit") or 0),
        net_rx=rx,
        net_tx=tx,
        blk_read=read,
        blk_write=write,
        pids=int((data.get("pids_stats") or {}).get("current") or 0),
    )


def container_stats(client, container_id: str) -> StatsSample:
    """One sample. The engine waits ~1 s to measure CPU over an interval, so call these concurrently."""
    try:
        data = client.api.stats(container_id, stream=False)
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc
    return compute_stats(container_id, data)


def container_stats_doc(client, container_id: str, *, one_shot: bool = False) -> dict:
    """One raw stats document. With one_shot the engine answers from its next collector tick
    without first waiting for a priming one (about half the wait), but sends no precpu_stats:
    the caller supplies the previous reading for CPU % (containers.stats does)."""
    try:
        return client.api.stats(container_id, stream=False, one_shot=one_shot)
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


def stats_stream(client, container_id: str):
    """A blocking stream of decoded stats documents, about one a second; close() it to stop."""
    try:
        return client.api.stats(container_id, stream=True, decode=True)
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


def running_container_ids(client) -> list[str]:
    try:
        return [item["Id"] for item in client.api.containers(filters={"status": "running"})]
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


# ---------------------------------------------------------------------------
# Disk usage
# ---------------------------------------------------------------------------
def disk_usage(client) -> dict:
    """`docker system df` in numbers: sizes in bytes and counts, with what is reclaimable."""
    try:
        data = client.api.df()
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc
    images = data.get("Images") or []
    containers = data.get("Containers") or []
    volumes = data.get("Volumes") or []
    cache = data.get("BuildCache") or []
    return {
        "images_count": len(images),
        "images_size": int(data.get("LayersSize") or 0),
        "images_reclaimable": sum(int(i.get("Size") or 0) for i in images if not i.get("Containers")),
        "containers_count": len(containers),
        "containers_size": sum(int(c.get("SizeRw") or 0) for c in containers),
        "containers_reclaimable": sum(int(c.get("SizeRw") or 0) for c in containers if c.get("State") != "running"),
        "volumes_count": len(volumes),
        "volumes_size": sum(max(0, int((v.get("UsageData") or {}).get("Size") or 0)) for v in volumes),
        "volumes_reclaimable": sum(
            max(0, int((v.get("UsageData") or {}).get("Size") or 0)) for v in volumes if not (v.get("UsageData") or {}).get("RefCount")
        ),
        "build_cache_count": len(cache),
        "build_cache_size": sum(int(c.get("Size") or 0) for c in cache),
        "build_cache_reclaimable": sum(int(c.get("Size") or 0) for c in cache if not c.get("InUse")),
    }


# ---------------------------------------------------------------------------
# Images (used by the update checker: what a container actually runs)
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageFacts:
    image_id: str
    repo_tags: tuple[str, ...] = ()
    # "repo@sha256:..." for every registry manifest this image was pulled or pushed as.
    repo_digests: tuple[str, ...] = ()
    architecture: str = ""
    os: str = ""
    variant: str = ""


def _image_facts(data: dict) -> ImageFacts:
    return ImageFacts(
        image_id=data.get("Id") or "",
        repo_tags=tuple(t for t in data.get("RepoTags") or () if t and t != "<none>:<none>"),
        repo_digests=tuple(d for d in data.get("RepoDigests") or () if d and not d.startswith("<none>@")),
        architecture=data.get("Architecture") or "",
        os=data.get("Os") or "",
        variant=data.get("Variant") or "",
    )


def list_images(client) -> dict[str, ImageFacts]:
    """Every image on the engine by ID, from one list call (no platform fields: see inspect_image)."""
    try:
        items = client.api.images(all=False)
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc
    return {facts.image_id: facts for facts in map(_image_facts, items)}


def inspect_image(client, image: str) -> ImageFacts:
    """One image with its platform (Architecture/Os/Variant); ContainerGone-like NotFound → EngineError."""
    try:
        data = client.api.inspect_image(image)
    except docker.errors.NotFound as exc:
        raise EngineError(f"The image {image} is not on the engine.") from exc
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc
    return _image_facts(data)


# ---------------------------------------------------------------------------
# Recreating a container (updates): the user's whole configuration, on a new image
# ---------------------------------------------------------------------------
# Network modes that are not a network to re-join.
_SPECIAL_NETWORK_MODES = ("host", "none", "default")


def inspect_raw(client, container_id: str) -> dict:
    try:
        return client.api.inspect_container(container_id)
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


def inspect_image_raw(client, ref: str) -> dict | None:
    try:
        return client.api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        return None
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


def pull(client, ref: str, on_progress=None, timeout: float = 600.0) -> str:
    """Pull an image, reporting progress as (done_bytes, total_bytes, status); returns its ID.

    `timeout` bounds the whole pull: a registry that stalls (mid-blob, or before any byte) ends
    the pull with an EngineError once it has passed, instead of holding the caller for ever.
    The pull's connection is then closed, which makes the engine abandon the pull: the tag keeps
    naming the image it named before.
    """
    repository, tag = _split_ref(ref)
    api = client.api
    registry, _ = docker.auth.resolve_repository_name(repository)
    headers = {}
    auth_header = docker.auth.get_config_header(api, registry)
    if auth_header:
        headers["X-Registry-Auth"] = auth_header
    layers: dict[str, tuple[int, int]] = {}
    expired = threading.Event()
    started = time.monotonic()

    def too_slow() -> EngineError:
        return EngineError(f"Pull of {ref} did not finish within {timeout:g} s (the registry stalled or is too slow).")

    try:
        # The read timeout covers a stream that goes quiet; the watchdog covers one that trickles.
        response = api._post(api._url("/images/create"), params={"fromImage": repository, "tag": tag}, headers=headers,
                             stream=True, timeout=(settings.DOCKMON_ENGINE_TIMEOUT, timeout + 1))
        api._raise_for_status(response)

        def expire():
            expired.set()
            _cut_stream(response)

        watchdog = threading.Timer(max(0.0, timeout - (time.monotonic() - started)), expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            for item in api._stream_helper(response, decode=True):
                if "error" in item:
                    raise EngineError(f"Pull of {ref} failed: {item['error']}")
                detail = item.get("progressDetail") or {}
                if item.get("id") and detail.get("total"):
                    layers[item["id"]] = (int(detail.get("current") or 0), int(detail["total"]))
                if on_progress is not None:
                    done = sum(c for c, _ in layers.values())
                    total = sum(t for _, t in layers.values())
                    on_progress(done, total, item.get("status", ""))
        except Exception as exc:
            if expired.is_set():  # however the cut stream ended the read
                raise too_slow() from exc
            raise
        finally:
            watchdog.cancel()
            response.close()
        if expired.is_set():
            raise too_slow()
        image = api.inspect_image(ref)
    except _ENGINE_FAILURES as exc:
        if expired.is_set() or (isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)
                                and time.monotonic() - started >= timeout):
            raise too_slow() from exc
        raise _wrap(exc) from exc
    except ValueError as exc:  # a stream cut in the middle of a JSON document
        raise EngineError(f"Pull of {ref} failed: the engine's answer was cut off ({exc})") from exc
    return image["Id"]


def _cut_stream(response) -> None:
    """End a streamed response from another thread: shut its socket down, which wakes the
    blocked read with an end of stream (closing the response here instead would race with the
    reader). Where no socket can be reached (ssh), closing is the fallback."""
    try:
        raw = response.raw._fp.fp.raw
        sock = getattr(raw, "_sock", raw)
        sock.shutdown(socket.SHUT_RDWR)
        return
    except (AttributeError, OSError):
        pass
    try:
        response.close()
    except Exception:  # closing is best effort
        logger.debug("closing a pull stream failed", exc_info=True)


def _split_ref(ref: str) -> tuple[str, str | None]:
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return name, digest
    name, _, tag = ref.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return ref, "latest"


def _differs(value, image_value) -> bool:
    return value not in (None, "", [], {}) and value != image_value


def recreate_spec(container: dict, old_image: dict | None, image_ref: str) -> tuple[dict, list[tuple[str, dict]]]:
    """What to send to `POST /containers/create` to get the same container on `image_ref`.

    Only what the user set is carried: values equal to the old image's own defaults (env,
    command, labels, exposed ports, healthcheck...) are left out so the new image's apply.
    Returns (create body, [(network, endpoint config)] to connect after creation).
    """
    config = container.get("Config") or {}
    host_config = dict(container.get("HostConfig") or {})
    image_config = (old_image or {}).get("Config") or {}
    body: dict = {"Image": image_ref}

    if config.get("Hostname") and config["Hostname"] != container["Id"][:12]:
        body["Hostname"] = config["Hostname"]
    for field_name in ("Domainname", "Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr", "StopTimeout", "MacAddress"):
        if config.get(field_name) not in (None, "", False):
            body[field_name] = config[field_name]
    for field_name in ("User", "WorkingDir", "StopSignal"):
        if _differs(config.get(field_name), image_config.get(field_name)):
            body[field_name] = config[field_name]
    image_env = set(image_config.get("Env") or [])
    env = [item for item in config.get("Env") or [] if item not in image_env]
    if env:
        body["Env"] = env
    entrypoint_changed = _differs(config.get("Entrypoint"), image_config.get("Entrypoint"))
    if entrypoint_changed:
        body["Entrypoint"] = config["Entrypoint"]
    if entrypoint_changed or _differs(config.get("Cmd"), image_config.get("Cmd")):
        if config.get("Cmd") is not None:
            body["Cmd"] = config["Cmd"]
    image_labels = image_config.get("Labels") or {}
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if image_labels.get(k) != v}
    if labels:
        body["Labels"] = labels
    image_ports = image_config.get("ExposedPorts") or {}
    exposed = {k: {} for k in (config.get("ExposedPorts") or {}) if k not in image_ports}
    if exposed:
        body["ExposedPorts"] = exposed
    image_volumes = image_config.get("Volumes") or {}
    volumes = {k: {} for k in (config.get("Volumes") or {}) if k not in image_volumes}
    if volumes:
        body["Volumes"] = volumes
    if _differs(config.get("Healthcheck"), image_config.get("Healthcheck")):
        body["Healthcheck"] = config["Healthcheck"]

    # Anonymous volumes (and named ones the image declared) are kept: re-attach them by name,
    # so the data in them survives the update.
    covered = {b.split(":")[1] for b in host_config.get("Binds") or [] if ":" in b}
    covered |= {m.get("Target") for m in host_config.get("Mounts") or []}
    binds = list(host_config.get("Binds") or [])
    for mount in container.get("Mounts") or []:
        if mount.get("Type") == "volume" and mount.get("Destination") not in covered and mount.get("Name"):
            binds.append(f"{mount['Name']}:{mount['Destination']}" + ("" if mount.get("RW", True) else ":ro"))
    if binds:
        host_config["Binds"] = binds
    body["HostConfig"] = host_config

    extra: list[tuple[str, dict]] = []
    mode = host_config.get("NetworkMode") or "default"
    networks = ((container.get("NetworkSettings") or {}).get("Networks") or {})
    if mode not in _SPECIAL_NETWORK_MODES and not mode.startswith("container:") and networks:
        short = container["Id"][:12]

        def endpoint(settings_: dict) -> dict:
            data = {}
            aliases = [a for a in settings_.get("Aliases") or [] if a != short]
            if aliases:
                data["Aliases"] = aliases
            if settings_.get("IPAMConfig"):
                data["IPAMConfig"] = settings_["IPAMConfig"]
            if settings_.get("Links"):
                data["Links"] = settings_["Links"]
            if settings_.get("DriverOpts"):
                data["DriverOpts"] = settings_["DriverOpts"]
            return data

        first = mode if mode in networks else sorted(networks)[0]
        body["NetworkingConfig"] = {"EndpointsConfig": {first: endpoint(networks[first])}}
        extra = [(name, endpoint(networks[name])) for name in sorted(networks) if name != first]
    return body, extra


def create_from_spec(client, name: str, body: dict) -> str:
    """Create a container from a recreate_spec() body; returns the new container's ID."""
    try:
        response = client.api._post_json(client.api._url("/containers/create"), data=body, params={"name": name})
        return client.api._result(response, True)["Id"]
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


def connect_network(client, network: str, container_id: str, endpoint: dict) -> None:
    try:
        client.api.connect_container_to_network(
            container_id, network,
            aliases=endpoint.get("Aliases"),
            links=[f"{k}" for k in endpoint.get("Links") or []] or None,
            ipv4_address=(endpoint.get("IPAMConfig") or {}).get("IPv4Address") or None,
            ipv6_address=(endpoint.get("IPAMConfig") or {}).get("IPv6Address") or None,
            driver_opt=endpoint.get("DriverOpts"),
        )
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


def dependents_sharing_network(client, container_id: str) -> list[str]:
    """IDs of containers whose network mode is `container:<this one>` (recreated after it)."""
    try:
        ids = [item["Id"] for item in client.api.containers(all=True)]
        result = []
        for other in ids:
            try:
                data = client.api.inspect_container(other)
            except docker.errors.NotFound:
                continue  # removed since the list: it shares nothing any more
            mode = ((data.get("HostConfig") or {}).get("NetworkMode") or "")
            if mode in (f"container:{container_id}", f"container:{container_id[:12]}"):
                result.append(other)
        return result
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc


# ---------------------------------------------------------------------------
# Update executor helpers (updates.executor): finding backups, removing old images
# ---------------------------------------------------------------------------
def containers_by_name(client, pattern: str) -> list[dict]:
    """[{id, name, state, image_id}] of the containers whose name matches `pattern` (the engine's
    name filter: a regular expression on the name with its leading slash)."""
    try:
        items = client.api.containers(all=True, filters={"name": pattern})
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc
    result = []
    for item in items:
        names = item.get("Names") or []
        result.append({"id": item["Id"], "name": (names[0] if names else "").lstrip("/"), "state": item.get("State") or "",
                       "image_id": item.get("ImageID") or ""})
    return result


def remove_image(client, image: str) -> bool:
    """Remove an image that no container uses; False when it is in use (or already gone)."""
    try:
        client.api.remove_image(image, force=False, noprune=False)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.response is not None and exc.response.status_code == 409:
            return False
        raise _wrap(exc) from exc
    except _ENGINE_FAILURES as exc:
        raise _wrap(exc) from exc
