"""Clients for Docker engines: URLs, the engine allow rules, ssh, TLS and timeouts.

A client is made without any network call; every call it makes carries a timeout. The engine's
identity (engine_info, probe, ping) is asked here too.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

import docker
import docker.constants
import docker.errors
from django.conf import settings

from containers.engine import tls as engine_tls
from containers.engine.errors import ENGINE_FAILURES, EngineError, note_ssh_failure, wrap_error
from dockmon_site import crypto

SUPPORTED_SCHEMES = ("unix", "tcp", "ssh")


@dataclass(frozen=True)
class EngineInfo:
    version: str
    api_version: str
    engine_id: str
    name: str
    os: str
    containers: int


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
                note_ssh_failure(lines[-1])

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


def engine_info(client) -> EngineInfo:
    try:
        version = client.api.version(api_version=False)
        # Speak the engine's own API version (newer engines drop old ones).
        client.api._version = version.get("ApiVersion") or client.api._version
        info = client.api.info()
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
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
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc

