"""DockMon testbed: real Docker engines, a registry, Redis and PostgreSQL on loopback.

Standard library only (the docker CLI ``/usr/bin/docker`` talks to the engines with
``-H``), so tests and scripts can import it without Django.  Command line::

    python -m testkit.testbed up|down|status

``up`` installs what is missing (apt-get, services kept from auto-starting), starts or
reuses every piece, seeds the images and writes ``$DIR/state.json``; it is idempotent.
``down`` stops what the testbed started (by pid; redis/postgres only if started by us).
``status`` prints JSON and exits 0 only when everything answers.

Pieces (all on 127.0.0.1; nothing is ever sent to a non-loopback address):

* engine ``alpha``: ``unix://$DIR/alpha/docker.sock`` and plain ``tcp://127.0.0.1:23750``
* engine ``beta``:  ``unix://$DIR/beta/docker.sock`` and TLS ``tcp://127.0.0.1:23761``
  (client certificate required; CA/server/client and an unrelated "wrong" CA + client
  cert in ``$DIR/tls``; ``$DIR/tls/client`` is a DOCKER_CERT_PATH-style folder)
* registry ``127.0.0.1:5000``, seeded with ``127.0.0.1:5000/demo/app:1.0`` (pulled on both
  engines; /etc/dockmon-release says ``1.0``) and a local-only ``dockmon/busybox:latest``
  on both engines (never pushed, empty RepoDigests)
* Redis ``redis://127.0.0.1:6379/0`` and PostgreSQL
  ``postgres://postgres@127.0.0.1:5432/postgres`` (reused when already answering)

Environment: ``DOCKMON_TESTBED_DIR`` ($DIR, default ``/tmp/dockmon-testbed``),
``DOCKMON_TESTBED_REGISTRY_PORT``, ``DOCKMON_TESTBED_ALPHA_PORT``,
``DOCKMON_TESTBED_BETA_PORT``, ``DOCKMON_TESTBED_REDIS_PORT``, ``DOCKMON_TESTBED_PG_PORT``
(for a second testbed beside the default one), ``DOCKMON_TESTBED_QUIET=1``, ``CI=true``
(require_testbed() raises instead of skipping).

Python API::

    tb = require_testbed()            # Testbed.load(), pytest.skip if down (raise if CI)
    tb = Testbed.load()               # TestbedUnavailable if not up; restarts a dead
                                      # alpha/beta/registry (heal=True)
    tb.engines["alpha"], tb.registry ("127.0.0.1:5000"), tb.redis_url, tb.database_url
    tb.seed_image ("127.0.0.1:5000/demo/app:1.0"), tb.busybox_image, tb.tls (paths)
    e = tb.engines["beta"]
    e.name e.sock_path e.unix_url e.tcp_url e.tls e.wrong_tls e.data_root e.pid e.home
    e.docker("ps", "-a", check=True, timeout=60)   # CompletedProcess, text
    e.docker_tcp("version", cert="good"|"wrong"|None)  # via the TCP/TLS listener
    e.sdk_client(via="unix"|"tcp", cert="good"|"wrong"|None)  # docker SDK client
    e.is_running() e.answers() e.stop() e.kill() e.start() e.containerd_pid()
    clone = tb.clone_engine("alpha", "alpha-clone")  # same container IDs as alpha
    tb.remove_engine("alpha-clone")
    tb.build_image("alpha", ref, marker, cmd=None, healthcheck=None, changes=(), files=None)
    digest = tb.push("alpha", ref); tb.pull("beta", ref); tb.registry_digest(repo, tag)

Notes for tests:

* Engines have no bridge and no iptables rules: run test containers with
  ``--network host`` (listen on 127.0.0.1:PORT) or ``--network none``.
* Use your own repository names for "new releases" (e.g. ``tb.image_ref("t/x", "1")``);
  re-pushing ``demo/app:1.0`` makes the next ``up`` re-seed it.
* busybox ``sleep`` as PID 1 ignores SIGTERM, so stopping it (or an engine running it)
  takes the full stop timeout (10 s).  Use ``sh -c 'trap "exit 0" TERM; while true; do
  sleep 1; done'`` or ``--stop-timeout 1``.  After ``e.kill()`` the containers keep
  running (shims survive, like a crashed daemon); the next ``e.start()`` kills them,
  which takes that same timeout.
* docker-py over TLS: the machine sets REQUESTS_CA_BUNDLE, which requests lets override
  the client's CA.  ``sdk_client()`` switches requests' ``trust_env`` off; a test that
  builds its own client must unset the variable (monkeypatch) or do the same.
* Every engine reports the same engine ID and name (shared /etc/docker/key.json and
  hostname), clones included.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = [
    "BASE_ENGINES",
    "LOCAL_BUSYBOX_REF",
    "SEED_APP_REPO",
    "SEED_APP_TAG",
    "DockerCommandError",
    "Engine",
    "Testbed",
    "TestbedError",
    "TestbedUnavailable",
    "down",
    "require_testbed",
    "state_dir",
    "status",
    "up",
]

# --------------------------------------------------------------------------- constants

DEFAULT_DIR = "/tmp/dockmon-testbed"
LOOPBACK = "127.0.0.1"

#: The two engines every testbed has: name -> (TCP port, TLS?)
BASE_ENGINES = {
    "alpha": {"tcp_port": 23750, "tls": False},
    "beta": {"tcp_port": 23761, "tls": True},
}

SEED_APP_REPO = "demo/app"
SEED_APP_TAG = "1.0"
SEED_APP_MARKER = "1.0"
LOCAL_BUSYBOX_REF = "dockmon/busybox:latest"
LOCAL_BUSYBOX_MARKER = "busybox"

#: busybox applets linked into every image made by build_image()
APPLETS = [
    "sh",
    "httpd",
    "sleep",
    "wget",
    "cat",
    "true",
    "false",
    "echo",
    "ls",
    "mkdir",
    "env",
    "id",
    "yes",
    "dd",
    "head",
    "printf",
    "test",
    "kill",
    "rm",
    "touch",
    "grep",
    "ps",
    "hostname",
    "uname",
    "date",
    "nc",
    "timeout",
]

ENGINE_READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
TERM_GRACE = 10.0

MANIFEST_ACCEPT = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.oci.image.index.v1+json"
)

# Environment variables that must not leak into the engines or the CLI we run.
_SCRUB_ENV = (
    "DOCKER_HOST",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_CONTEXT",
    "DOCKER_API_VERSION",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


class TestbedError(RuntimeError):
    """Something of the testbed could not be started, stopped or used."""

    __test__ = False  # not a pytest test class


class TestbedUnavailable(TestbedError):
    """No running testbed (state.json missing, marked down, or its pieces are dead)."""

    __test__ = False


class DockerCommandError(subprocess.CalledProcessError):
    """A docker CLI command failed; str() includes its stderr."""

    def __str__(self) -> str:
        cmd = " ".join(self.cmd) if isinstance(self.cmd, (list, tuple)) else str(self.cmd)
        err = (self.stderr or "").strip() or (self.output or "").strip()
        return f"`{cmd}` exited {self.returncode}: {err[-2000:]}"


# --------------------------------------------------------------------------- small helpers


def state_dir() -> Path:
    return Path(os.environ.get("DOCKMON_TESTBED_DIR") or DEFAULT_DIR)


def _state_path() -> Path:
    return state_dir() / "state.json"


def registry_port() -> int:
    return int(os.environ.get("DOCKMON_TESTBED_REGISTRY_PORT") or 5000)


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _log(msg: str) -> None:
    if os.environ.get("DOCKMON_TESTBED_QUIET") != "1":
        print(f"[testbed] {msg}", file=sys.stderr, flush=True)


def docker_bin() -> str:
    if os.path.exists("/usr/bin/docker"):
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if not found:
        raise TestbedError("docker CLI not found (apt-get install docker.io)")
    return found


def _clean_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
    path = env.get("PATH", "")
    for p in ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if p not in path.split(":"):
            path = f"{path}:{p}" if path else p
    env["PATH"] = path
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    if extra:
        env.update(extra)
    return env


def _cli_env() -> dict:
    cfg = state_dir() / "docker-config"
    cfg.mkdir(parents=True, exist_ok=True)
    return _clean_env({"DOCKER_CONFIG": str(cfg)})


def _sp(args, **kw) -> subprocess.CompletedProcess:
    """subprocess.run without raising on a non-zero exit (callers look at returncode)."""
    kw.setdefault("check", False)
    return subprocess.run(args, **kw)


def _run(args, *, check=True, timeout=120, env=None, input=None, text=True):
    try:
        res = _sp(
            [str(a) for a in args],
            capture_output=True,
            text=text,
            timeout=timeout,
            env=env if env is not None else _clean_env(),
            input=input,
        )
    except FileNotFoundError as exc:
        raise TestbedError(f"command not found: {args[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"`{' '.join(map(str, args))}` timed out after {timeout}s") from exc
    if check and res.returncode != 0:
        raise DockerCommandError(res.returncode, [str(a) for a in args], res.stdout, res.stderr)
    return res


def _tail(path, lines: int = 40) -> str:
    try:
        data = Path(path).read_bytes()[-20000:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_URL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(url: str, method: str = "GET", headers: dict | None = None, timeout: float = 5.0):
    """(status, headers, body) of a loopback HTTP request; never uses a proxy."""
    assert url.startswith(("http://127.0.0.1", "http://localhost")), url
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with _URL_OPENER.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), exc.read() if exc.fp else b""


# ------------------------------------------------------------------ processes (/proc)

_CHILDREN: dict[int, subprocess.Popen] = {}


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]


def _proc_stat(pid: int):
    """(state, ppid) or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], int(rest[1])


def pid_alive(pid) -> bool:
    if not pid or int(pid) <= 0:
        return False
    pid = int(pid)
    _reap(pid)
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _pid_matches(pid, marker: str) -> bool:
    return pid_alive(pid) and marker in " ".join(_proc_cmdline(int(pid)))


def _all_procs():
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            st = _proc_stat(pid)
            if st is None or st[0] in ("Z", "X"):
                continue
            yield pid, st[1], _proc_cmdline(pid)


def _procs_with(marker: str, exe: str | None = None) -> list[int]:
    """Live pids whose command line contains marker (and whose argv[0] basename is exe)."""
    out = []
    for pid, _ppid, argv in _all_procs():
        if not argv or pid == os.getpid():
            continue
        if exe is not None and os.path.basename(argv[0]) != exe:
            continue
        if marker in " ".join(argv):
            out.append(pid)
    return out


def _descendants(pids) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid, _ in _all_procs():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], list(pids)
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            if c not in out:
                out.append(c)
                todo.append(c)
    return out


def _signal(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pids, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if pid_alive(p)]
    return alive


def terminate(pids, grace: float = TERM_GRACE) -> None:
    """SIGTERM the pids, SIGKILL whatever is still alive after ``grace`` seconds."""
    pids = [int(p) for p in pids if p and pid_alive(p)]
    for p in pids:
        _signal(p, signal.SIGTERM)
    left = _wait_gone(pids, grace)
    for p in left:
        _signal(p, signal.SIGKILL)
    left = _wait_gone(left, 5)
    if left:
        raise TestbedError(f"processes {left} survived SIGKILL")


def _kill_tree(pids) -> None:
    pids = [p for p in pids if pid_alive(p)]
    everything = pids + _descendants(pids)
    for p in everything:
        _signal(p, signal.SIGKILL)
    _wait_gone(everything, 5)


def _umount_under(path) -> None:
    """Lazily unmount every mount at or below path (left by a killed dockerd)."""
    path = str(Path(path).resolve())
    points = []
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = line.split()[4]
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), mp)
            if mp == path or mp.startswith(path + "/"):
                points.append(mp)
    except OSError:
        return
    for mp in sorted(set(points), key=len, reverse=True):
        _sp(["umount", "-l", mp], capture_output=True)


# ------------------------------------------------------------------ installation


_APT_UPDATED = False


def _is_static_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            hdr = f.read(64)
            if hdr[:4] != b"\x7fELF":
                return False
            end = "<" if hdr[5] == 1 else ">"
            if hdr[4] == 2:
                phoff = struct.unpack(end + "Q", hdr[32:40])[0]
                phentsize, phnum = struct.unpack(end + "HH", hdr[54:58])
            else:
                phoff = struct.unpack(end + "I", hdr[28:32])[0]
                phentsize, phnum = struct.unpack(end + "HH", hdr[42:46])
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                if struct.unpack(end + "I", f.read(4))[0] == 3:  # PT_INTERP
                    return False
            return True
    except OSError:
        return False


def static_busybox() -> str | None:
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(cand) and _is_static_elf(cand):
            return cand
    return None


def apt_install(packages) -> None:
    """apt-get install -y packages (apt-get update once), without starting their services."""
    global _APT_UPDATED
    packages = sorted(set(packages))
    if not packages:
        return
    if os.geteuid() != 0:
        raise TestbedError(f"missing packages {packages} and not root: install them first")
    if not shutil.which("apt-get"):
        raise TestbedError(f"missing packages {packages} and no apt-get on this machine")
    _log(f"installing {' '.join(packages)} with apt-get")
    state_dir().mkdir(parents=True, exist_ok=True)
    log = state_dir() / "apt.log"
    env = _clean_env({"DEBIAN_FRONTEND": "noninteractive"})
    # Keep the packages' own services (system dockerd, a registry on *:5000, ...) from starting.
    policy = Path("/usr/sbin/policy-rc.d")
    created = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        created = True
    try:
        steps = []
        if not _APT_UPDATED:
            steps.append(["apt-get", "update"])
        steps.append(["apt-get", "install", "-y", *packages])
        for cmd in steps:
            with open(log, "ab") as out:
                rc = _sp(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=1200).returncode
            if rc != 0:
                raise TestbedError(f"`{' '.join(cmd)}` failed ({rc}):\n{_tail(log, 25)}")
            if cmd[1] == "update":
                _APT_UPDATED = True
    finally:
        if created:
            policy.unlink(missing_ok=True)


def _ensure_core_packages() -> None:
    need = set()
    if not os.path.exists("/usr/sbin/dockerd") and not shutil.which("dockerd"):
        need.add("docker.io")
    if not os.path.exists("/usr/bin/docker"):
        need.add("docker.io")
    if not shutil.which("containerd", path=_clean_env()["PATH"]):
        need.add("docker.io")
    if not shutil.which("docker-registry"):
        need.add("docker-registry")
    if static_busybox() is None:
        need.add("busybox-static")
    if not shutil.which("openssl"):
        need.add("openssl")
    # The browser tests drive Debian's Chromium through Playwright (no browser download).
    if not os.path.exists("/usr/bin/chromium"):
        need.add("chromium")
    # The deployment test builds DockMon's image on a debootstrapped base and runs the compose file.
    if not shutil.which("debootstrap"):
        need.add("debootstrap")
    if not shutil.which("docker-compose"):
        need.add("docker-compose")
    apt_install(need)
    if static_busybox() is None:
        raise TestbedError("no static busybox at /bin/busybox after installing busybox-static")


# ------------------------------------------------------------------ state file

_LOCK_DEPTH = 0
_LOCK_FILE = None


@contextlib.contextmanager
def _locked():
    """Process-wide exclusive lock on the state dir (re-entrant within a process)."""
    global _LOCK_DEPTH, _LOCK_FILE
    if _LOCK_DEPTH == 0:
        state_dir().mkdir(parents=True, exist_ok=True)
        _LOCK_FILE = open(state_dir() / ".lock", "a+")
        fcntl.flock(_LOCK_FILE, fcntl.LOCK_EX)
    _LOCK_DEPTH += 1
    try:
        yield
    finally:
        _LOCK_DEPTH -= 1
        if _LOCK_DEPTH == 0:
            fcntl.flock(_LOCK_FILE, fcntl.LOCK_UN)
            _LOCK_FILE.close()
            _LOCK_FILE = None


def _read_state() -> dict | None:
    try:
        return json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return None


def _write_state(state: dict) -> None:
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------ TLS material


def _openssl(*args, cwd) -> None:
    res = _sp(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise TestbedError(f"openssl {' '.join(args)} failed: {res.stderr.strip()}")


def _make_ca(d: Path, prefix: str, cn: str) -> None:
    _openssl("genrsa", "-out", f"{prefix}ca-key.pem", "2048", cwd=d)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        f"{prefix}ca-key.pem",
        "-sha256",
        "-days",
        "3650",
        "-subj",
        f"/CN={cn}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        f"{prefix}ca.pem",
        cwd=d,
    )


def _make_cert(d: Path, ca_prefix: str, name: str, cn: str, ext: list[str]) -> None:
    _openssl("genrsa", "-out", f"{name}-key.pem", "2048", cwd=d)
    _openssl(
        "req",
        "-new",
        "-key",
        f"{name}-key.pem",
        "-subj",
        f"/CN={cn}",
        "-out",
        f"{name}.csr",
        cwd=d,
    )
    (d / f"{name}-ext.cnf").write_text(
        "\n".join(
            [
                "basicConstraints=CA:FALSE",
                "subjectKeyIdentifier=hash",
                "authorityKeyIdentifier=keyid,issuer",
                *ext,
            ]
        )
        + "\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca_prefix}ca.pem",
        "-CAkey",
        f"{ca_prefix}ca-key.pem",
        "-CAcreateserial",
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        f"{name}-ext.cnf",
        "-out",
        f"{name}-cert.pem",
        cwd=d,
    )
    (d / f"{name}.csr").unlink()
    (d / f"{name}-ext.cnf").unlink()


TLS_FILES = (
    "ca.pem",
    "ca-key.pem",
    "server-cert.pem",
    "server-key.pem",
    "client-cert.pem",
    "client-key.pem",
    "wrong-ca.pem",
    "wrong-ca-key.pem",
    "wrong-client-cert.pem",
    "wrong-client-key.pem",
)


def ensure_tls(base: Path | None = None) -> dict:
    """Create (once) the CA, server and client certs, plus an unrelated 'wrong' CA + client."""
    base = base or state_dir()
    d = base / "tls"
    if not all((d / f).exists() for f in TLS_FILES):
        tmp = base / "tls.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _make_ca(tmp, "", "DockMon testbed CA")
        _make_cert(
            tmp,
            "",
            "server",
            "localhost",
            [
                "keyUsage=critical,digitalSignature,keyEncipherment",
                "extendedKeyUsage=serverAuth",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
        )
        _make_cert(
            tmp,
            "",
            "client",
            "dockmon-client",
            [
                "keyUsage=critical,digitalSignature,keyEncipherment",
                "extendedKeyUsage=clientAuth",
            ],
        )
        _make_ca(tmp, "wrong-", "Unrelated CA")
        _make_cert(
            tmp,
            "wrong-",
            "wrong-client",
            "dockmon-client",
            [
                "keyUsage=critical,digitalSignature,keyEncipherment",
                "extendedKeyUsage=clientAuth",
            ],
        )
        # docker CLI style folders (ca.pem, cert.pem, key.pem) for DOCKER_CERT_PATH users
        for sub, prefix, ca in (
            ("client", "client", "ca.pem"),
            ("wrong-client", "wrong-client", "wrong-ca.pem"),
        ):
            (tmp / sub).mkdir()
            shutil.copy(tmp / ca, tmp / sub / "ca.pem")
            shutil.copy(tmp / f"{prefix}-cert.pem", tmp / sub / "cert.pem")
            shutil.copy(tmp / f"{prefix}-key.pem", tmp / sub / "key.pem")
        for p in tmp.rglob("*key.pem"):
            p.chmod(0o600)
        shutil.rmtree(d, ignore_errors=True)
        os.replace(tmp, d)
    return {
        "dir": str(d),
        "ca": str(d / "ca.pem"),
        "server_cert": str(d / "server-cert.pem"),
        "server_key": str(d / "server-key.pem"),
        "client": {
            "ca": str(d / "ca.pem"),
            "cert": str(d / "client-cert.pem"),
            "key": str(d / "client-key.pem"),
        },
        # the wrong client trusts the real CA (so only its own cert is wrong)
        "wrong_client": {
            "ca": str(d / "ca.pem"),
            "cert": str(d / "wrong-client-cert.pem"),
            "key": str(d / "wrong-client-key.pem"),
        },
        "wrong_ca": str(d / "wrong-ca.pem"),
        "client_dir": str(d / "client"),
        "wrong_client_dir": str(d / "wrong-client"),
    }


# ------------------------------------------------------------------ engines


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def _ping(conn: http.client.HTTPConnection) -> bool:
    try:
        conn.request("GET", "/_ping")
        resp = conn.getresponse()
        return resp.status == 200 and resp.read().strip() == b"OK"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _in_home(filename: str) -> property:
    """A read-only path below the engine's home directory."""
    return property(lambda engine: f"{engine.home}/{filename}")


def tls_flags(ca: str, pair: dict | None = None) -> list[str]:
    """docker/dockerd flags that verify against `ca`, with a cert/key pair when given."""
    flags = ["--tlsverify", "--tlscacert", ca]
    if pair:
        flags += ["--tlscert", pair["cert"], "--tlskey", pair["key"]]
    return flags


def dockerd_argv(dockerd: str, engine: Engine) -> list[str]:
    """The dockerd command line of an engine: its own paths, sockets and containerd namespaces,
    and no bridge network or iptables rules (the engines share the machine's network)."""
    argv = [dockerd]
    for flag, value in (("--config-file", engine.config_file), ("--data-root", engine.data_root),
                        ("--exec-root", engine.exec_root), ("--pidfile", engine.pidfile), ("-H", engine.unix_url)):
        argv += [flag, value]
    if engine.tcp_port:
        argv += ["-H", engine.tcp_url]
        # --tls=false is explicit: without it dockerd pauses 15 s to warn about an open port.
        argv += tls_flags(engine.server_tls["ca"], engine.server_tls) if engine.server_tls else ["--tls=false"]
    namespace = engine.namespace
    argv += ["--containerd-namespace", namespace, "--containerd-plugins-namespace", f"{namespace}-plugins",
             "--cgroup-parent", f"/{namespace}", "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip6tables=false"]
    return argv


class Engine:
    """One dockerd of the testbed.  Attributes are plain strings/ints (JSON friendly)."""

    def __init__(
        self,
        name: str,
        home: str,
        tcp_port: int | None = None,
        server_tls: dict | None = None,
        tls: dict | None = None,
        wrong_tls: dict | None = None,
        pid: int | None = None,
        clone_of: str | None = None,
        argv: list[str] | None = None,
        **_ignored,
    ):
        self.name = name
        self.home = str(home)
        self.tcp_port = tcp_port
        self.server_tls = server_tls
        self.tls = tls
        self.wrong_tls = wrong_tls
        self.pid = pid
        self.clone_of = clone_of
        self.argv = argv or self._build_argv()

    # paths ---------------------------------------------------------------------------
    sock_path = _in_home("docker.sock")
    data_root = _in_home("data")
    exec_root = _in_home("exec")
    pidfile = _in_home("docker.pid")
    log_path = _in_home("dockerd.log")
    config_file = _in_home("daemon.json")

    @property
    def namespace(self) -> str:
        # DOCKMON_TESTBED_TAG tells apart the engines of a second testbed on the same machine
        # (same engine names, own containerd namespaces and cgroup parent).
        return f"dockmon{os.environ.get('DOCKMON_TESTBED_TAG', '')}-{self.name}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.sock_path}"

    @property
    def tcp_url(self) -> str | None:
        return f"tcp://{LOOPBACK}:{self.tcp_port}" if self.tcp_port else None

    @property
    def containerd_pidfile(self) -> str:
        return f"{self.exec_root}/containerd/containerd.pid"

    def _build_argv(self) -> list[str]:
        dockerd = shutil.which("dockerd", path=_clean_env()["PATH"]) or "/usr/sbin/dockerd"
        return dockerd_argv(dockerd, self)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "home": self.home,
            "tcp_port": self.tcp_port,
            "tcp_url": self.tcp_url,
            "unix_url": self.unix_url,
            "sock_path": self.sock_path,
            "data_root": self.data_root,
            "exec_root": self.exec_root,
            "log_path": self.log_path,
            "server_tls": self.server_tls,
            "tls": self.tls,
            "wrong_tls": self.wrong_tls,
            "pid": self.pid,
            "containerd_pid": self.containerd_pid(),
            "clone_of": self.clone_of,
            "argv": self.argv,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Engine:
        return cls(**d)

    def __repr__(self) -> str:
        return f"<Engine {self.name} pid={self.pid} {self.unix_url} {self.tcp_url}>"

    # process -------------------------------------------------------------------------
    def _find_pid(self) -> int | None:
        """The live dockerd of this engine (recorded pid, pidfile, or a /proc scan)."""
        marker = f"--pidfile {self.pidfile}"
        if self.pid and _pid_matches(self.pid, marker):
            return int(self.pid)
        try:
            p = int(Path(self.pidfile).read_text().strip())
            if _pid_matches(p, marker):
                return p
        except (OSError, ValueError):
            pass
        found = _procs_with(marker, exe="dockerd")
        return found[0] if found else None

    def containerd_pid(self) -> int | None:
        marker = f"{self.exec_root}/containerd/containerd.toml"
        try:
            p = int(Path(self.containerd_pidfile).read_text().strip())
            if _pid_matches(p, marker):
                return p
        except (OSError, ValueError):
            pass
        found = _procs_with(marker, exe="containerd")
        return found[0] if found else None

    def _stray_pids(self) -> list[int]:
        """containerd and shims bound to this engine's exec-root."""
        return _procs_with(f"{self.exec_root}/containerd/")

    def is_running(self) -> bool:
        pid = self._find_pid()
        if pid:
            self.pid = pid
        return pid is not None

    def answers(self, timeout: float = 3.0) -> bool:
        """The unix socket answers GET /_ping."""
        return os.path.exists(self.sock_path) and _ping(_UnixHTTPConnection(self.sock_path, timeout))

    def tcp_answers(self, timeout: float = 3.0) -> bool:
        """The TCP listener answers /_ping (with the good client cert when TLS)."""
        if not self.tcp_port:
            return True
        if self.server_tls:
            ctx = ssl.create_default_context(cafile=self.tls["ca"])
            ctx.load_cert_chain(self.tls["cert"], self.tls["key"])
            conn = http.client.HTTPSConnection(LOOPBACK, self.tcp_port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(LOOPBACK, self.tcp_port, timeout=timeout)
        return _ping(conn)

    def _cleanup_stale(self) -> None:
        if self._find_pid() is None:
            for p in (self.pidfile, self.sock_path, self.containerd_pidfile):
                with contextlib.suppress(OSError):
                    os.unlink(p)

    def _launch(self) -> None:
        self._cleanup_stale()
        Path(self.home).mkdir(parents=True, exist_ok=True)
        Path(self.data_root).mkdir(parents=True, exist_ok=True)
        cfg = Path(self.config_file)
        if not cfg.exists():
            cfg.write_text("{}\n")
        log = Path(self.log_path)
        if log.exists() and log.stat().st_size > 50 * 1024 * 1024:
            log.unlink()
        with open(log, "ab") as out:
            out.write(f"\n===== testbed start {time.strftime('%F %T')} =====\n".encode())
            out.flush()
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                cwd=self.home,
                env=_clean_env(),
            )
        _CHILDREN[proc.pid] = proc
        self.pid = proc.pid

    def _wait_ready(self, timeout: float = ENGINE_READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not pid_alive(self.pid):
                raise TestbedError(
                    f"engine {self.name}: dockerd (pid {self.pid}) exited during start; "
                    f"tail of {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self.answers(1.0) and self.tcp_answers(1.0):
                return
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"engine {self.name} did not answer within {timeout:.0f}s "
                    f"({self.unix_url} {self.tcp_url or ''}); tail of {self.log_path}:\n"
                    f"{_tail(self.log_path)}"
                )
            time.sleep(0.2)

    def start(self, timeout: float = ENGINE_READY_TIMEOUT) -> Engine:
        """Start dockerd (same arguments as before) and wait until it answers."""
        if self.is_running() and self.answers():
            return self
        if self.is_running():  # alive but not answering: restart it
            self.stop()
        self._launch()
        self._wait_ready(timeout)
        self._save()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM dockerd, wait until it and its containerd are gone (SIGKILL after timeout)."""
        pid = self._find_pid()
        containerd = self.containerd_pid()
        forced = False
        if pid:
            _signal(pid, signal.SIGTERM)
            if _wait_gone([pid], timeout):
                _log(f"engine {self.name}: dockerd {pid} ignored SIGTERM for {timeout:.0f}s; SIGKILL")
                _signal(pid, signal.SIGKILL)
                _wait_gone([pid], 5)
                forced = True
        if containerd and _wait_gone([containerd], 10 if not forced else 0):
            _signal(containerd, signal.SIGKILL)
            _wait_gone([containerd], 5)
        if forced:
            _kill_tree(self._stray_pids())
        self._cleanup_stale()
        self.pid = None
        self._save()

    def kill(self) -> None:
        """SIGKILL dockerd and its containerd (container shims are left, like a crash)."""
        targets = [p for p in (self._find_pid(), self.containerd_pid()) if p]
        for p in targets:
            _signal(p, signal.SIGKILL)
        left = _wait_gone(targets, 10)
        if left:
            raise TestbedError(f"engine {self.name}: {left} survived SIGKILL")
        self._cleanup_stale()
        self.pid = None
        self._save()

    def kill_strays(self) -> None:
        """Kill leftover containerd / shims (and their containers) of a stopped engine."""
        if self._find_pid():
            raise TestbedError(f"engine {self.name} is running; stop it first")
        _kill_tree(self._stray_pids())

    def _save(self) -> None:
        """Record this engine's current pid in state.json (if it is recorded there)."""
        with _locked():
            state = _read_state()
            if not state or self.name not in state.get("engines", {}):
                return
            rec = state["engines"][self.name]
            if rec.get("home") != self.home:
                return
            rec["pid"] = self.pid
            rec["containerd_pid"] = self.containerd_pid() if self.pid else None
            _write_state(state)

    # clients -------------------------------------------------------------------------
    def docker(self, *args, check: bool = True, timeout: float = 60, input=None):
        """Run ``docker -H unix://sock ARGS``; returns subprocess.CompletedProcess (text)."""
        return _run(
            [docker_bin(), "-H", self.unix_url, *args],
            check=check,
            timeout=timeout,
            env=_cli_env(),
            input=input,
        )

    def docker_tcp(self, *args, cert: str | None = "good", check: bool = True, timeout: float = 60):
        """Run docker over the TCP listener (TLS flags added for TLS engines)."""
        if not self.tcp_port:
            raise TestbedError(f"engine {self.name} has no TCP listener")
        flags = []
        if self.server_tls:
            paths = {"good": self.tls, "wrong": self.wrong_tls}.get(cert or "")
            flags = tls_flags(self.tls["ca"], paths)
        return _run(
            [docker_bin(), "-H", self.tcp_url, *flags, *args],
            check=check,
            timeout=timeout,
            env=_cli_env(),
        )

    def sdk_client(self, via: str = "unix", cert: str | None = "good", timeout: int = 30):
        """A docker SDK client (lazy import).  via='unix'|'tcp'; cert='good'|'wrong'|None.

        For TLS engines the client is built so REQUESTS_CA_BUNDLE cannot override the
        testbed CA (requests' trust_env is switched off before the first request).
        """
        import docker

        if via == "unix":
            return docker.DockerClient(base_url=self.unix_url, timeout=timeout)
        if not self.tcp_port:
            raise TestbedError(f"engine {self.name} has no TCP listener")
        tls = None
        if self.server_tls:
            paths = {"good": self.tls, "wrong": self.wrong_tls}.get(cert or "")
            tls = docker.tls.TLSConfig(
                client_cert=(paths["cert"], paths["key"]) if paths else None,
                ca_cert=self.tls["ca"],
                verify=True,
            )
        client = docker.DockerClient(base_url=self.tcp_url, tls=tls, timeout=timeout, version="1.41")
        client.api.trust_env = False
        return client

    def image_exists(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0

    def inspect(self, obj: str) -> dict:
        return json.loads(self.docker("inspect", obj).stdout)[0]


def _base_engine(name: str, tls: dict) -> Engine:
    spec = BASE_ENGINES[name]
    home = state_dir() / name
    port = int(os.environ.get(f"DOCKMON_TESTBED_{name.upper()}_PORT") or spec["tcp_port"])
    if spec["tls"]:
        return Engine(
            name,
            str(home),
            port,
            server_tls={
                "ca": tls["ca"],
                "cert": tls["server_cert"],
                "key": tls["server_key"],
            },
            tls=dict(tls["client"]),
            wrong_tls=dict(tls["wrong_client"]),
        )
    return Engine(name, str(home), port)


def _adopt_engine(e: Engine) -> bool:
    """True if e's dockerd is already running and answering (then its pid is recorded)."""
    pid = e._find_pid()
    if not pid:
        return False
    e.pid = pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if e.answers(1.0) and e.tcp_answers(1.0):
            return True
        time.sleep(0.2)
    _log(f"engine {e.name}: pid {pid} is alive but does not answer; restarting it")
    e.stop()
    return False


def _start_engines(engines: list[Engine]) -> None:
    """Start the engines in parallel and wait for all of them."""
    todo = [e for e in engines if not _adopt_engine(e)]
    for e in todo:
        _log(f"starting engine {e.name}")
        e._launch()
    for e in todo:
        e._wait_ready()


# ------------------------------------------------------------------ registry


def _registry_answers(port: int) -> bool:
    try:
        status, headers, _ = _http(f"http://{LOOPBACK}:{port}/v2/", timeout=2)
    except OSError:
        return False
    return status == 200 and "registry/2.0" in str(headers.get("Docker-Distribution-Api-Version", ""))


def _ensure_registry(old: dict | None) -> dict:
    port = registry_port()
    base = state_dir() / "registry"
    (base / "data").mkdir(parents=True, exist_ok=True)
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {base / 'data'}\n"
        "  delete:\n    enabled: true\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        "http:\n"
        f"  addr: {LOOPBACK}:{port}\n"
        "  headers:\n    X-Content-Type-Options: [nosniff]\n"
    )
    marker = f"serve {config}"
    rec = {
        "addr": f"{LOOPBACK}:{port}",
        "port": port,
        "config": str(config),
        "log": str(base / "registry.log"),
        "pid": None,
        "started_by_us": True,
    }
    pid = (old or {}).get("pid")
    if not _pid_matches(pid, marker):
        found = _procs_with(marker)
        pid = found[0] if found else None
    if pid:
        if _wait_until(lambda: _registry_answers(port), 10):
            rec["pid"] = pid
            return rec
        terminate([pid])
    if _port_open(port):
        if _registry_answers(port):
            _log(f"reusing the registry already answering on {LOOPBACK}:{port} (not ours)")
            rec["started_by_us"] = False
            return rec
        raise TestbedError(f"port {port} is taken by something that is not a registry (set DOCKMON_TESTBED_REGISTRY_PORT)")
    _log(f"starting registry on {LOOPBACK}:{port}")
    with open(base / "registry.log", "ab") as out:
        proc = subprocess.Popen(
            [
                shutil.which("docker-registry") or "docker-registry",
                "serve",
                str(config),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=base,
            env=_clean_env(),
        )
    _CHILDREN[proc.pid] = proc
    rec["pid"] = proc.pid
    if not _wait_until(lambda: _registry_answers(port) or not pid_alive(proc.pid), 15) or not pid_alive(proc.pid):
        raise TestbedError(f"registry did not answer on {LOOPBACK}:{port}; tail of log:\n{_tail(base / 'registry.log')}")
    return rec


def _wait_until(pred, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


# ------------------------------------------------------------------ redis


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _ensure_redis(old: dict | None) -> dict:
    port = int(os.environ.get("DOCKMON_TESTBED_REDIS_PORT") or 6379)
    rec = {
        "url": f"redis://{LOOPBACK}:{port}/0",
        "port": port,
        "pid": None,
        "started_by_us": False,
    }
    old = old or {}
    marker = f"{LOOPBACK}:{port}"
    if old.get("started_by_us") and _pid_matches(old.get("pid"), marker) and _redis_ping(port):
        rec.update(pid=old["pid"], started_by_us=True)
        return rec
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        apt_install(["redis-server"])
    res = _sp(
        ["redis-cli", "-h", LOOPBACK, "-p", str(port), "ping"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if res.stdout.strip() == "PONG":
        return rec
    if _port_open(port):
        raise TestbedError(f"port {port} is taken but redis-cli ping got {res.stdout!r} {res.stderr!r}")
    _log(f"starting redis on {LOOPBACK}:{port}")
    base = state_dir() / "redis"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "redis.log", "ab") as out:
        proc = subprocess.Popen(
            ["redis-server", "--daemonize", "no", "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", str(base)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=base,
            env=_clean_env(),
        )
    _CHILDREN[proc.pid] = proc
    rec.update(pid=proc.pid, started_by_us=True)
    if not _wait_until(lambda: _redis_ping(port) or not pid_alive(proc.pid), 15) or not pid_alive(proc.pid):
        raise TestbedError(f"redis did not answer on {port}:\n{_tail(base / 'redis.log')}")
    return rec


# ------------------------------------------------------------------ postgres


def _pg_clusters() -> list[dict]:
    if not shutil.which("pg_lsclusters"):
        return []
    res = _sp(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
    out = []
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append(
                {
                    "version": parts[0],
                    "cluster": parts[1],
                    "port": int(parts[2]),
                    "status": parts[3],
                }
            )
    return out


def _pg_ready(port: int) -> bool:
    if shutil.which("pg_isready"):
        res = _sp(
            ["pg_isready", "-q", "-h", LOOPBACK, "-p", str(port), "-t", "2"],
            capture_output=True,
        )
        return res.returncode == 0
    return _port_open(port)


def _psql_ok(port: int) -> tuple[bool, str]:
    res = _sp(
        [
            "psql",
            "-w",
            "-h",
            LOOPBACK,
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
            "select 1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=_clean_env({"PGCONNECT_TIMEOUT": "5"}),
    )
    return res.returncode == 0 and res.stdout.strip() == "1", (res.stderr or res.stdout).strip()


def _pg_trust(version: str, cluster: str) -> bool:
    """Make sure loopback TCP connections are trusted; True if pg_hba.conf changed."""
    hba = Path(f"/etc/postgresql/{version}/{cluster}/pg_hba.conf")
    if not hba.exists():
        return False
    text = hba.read_text()
    lines = ["host all all 127.0.0.1/32 trust", "host all all ::1/128 trust"]
    if all(re.search(r"(?m)^" + re.escape(ln).replace(r"\ ", r"\s+") + r"\s*$", text) for ln in lines):
        return False
    hba.write_text("# added by dockmon testbed\n" + "\n".join(lines) + "\n" + text)
    return True


def _ensure_postgres(old: dict | None) -> dict:
    port = int(os.environ.get("DOCKMON_TESTBED_PG_PORT") or 5432)
    rec = {
        "url": f"postgres://postgres@{LOOPBACK}:{port}/postgres",
        "port": port,
        "started_by_us": False,
        "version": None,
        "cluster": None,
    }
    old = old or {}
    if old.get("started_by_us") and old.get("port") == port:
        rec.update(started_by_us=True, version=old.get("version"), cluster=old.get("cluster"))
    if not shutil.which("psql") or not shutil.which("pg_isready"):
        apt_install(["postgresql-client"] if _port_open(port) else ["postgresql"])
    if not _pg_ready(port):
        if not shutil.which("pg_ctlcluster") or not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
            apt_install(["postgresql"])
        clusters = [c for c in _pg_clusters() if c["port"] == port]
        if not clusters:
            version = max(
                Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                key=lambda p: int(p.parent.parent.name),
            ).parent.parent.name
            name = "main" if not any(c["cluster"] == "main" and c["version"] == version for c in _pg_clusters()) else "dockmon"
            _log(f"creating PostgreSQL cluster {version}/{name} on port {port}")
            _run(["pg_createcluster", "-p", str(port), version, name], timeout=300)
            clusters = [{"version": version, "cluster": name, "port": port, "status": "down"}]
        c = clusters[0]
        _pg_trust(c["version"], c["cluster"])
        _log(f"starting PostgreSQL cluster {c['version']}/{c['cluster']} on port {port}")
        res = _sp(
            _pg_ctl(c["version"], c["cluster"], "start"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if res.returncode != 0 and not _pg_ready(port):
            raise TestbedError(
                f"pg_ctlcluster {c['version']} {c['cluster']} start failed: {res.stderr.strip() or res.stdout.strip()}"
            )
        rec.update(started_by_us=True, version=c["version"], cluster=c["cluster"])
        if not _wait_until(lambda: _pg_ready(port), 30, 0.3):
            raise TestbedError(f"PostgreSQL did not answer on {LOOPBACK}:{port} after start")
    ok, err = _psql_ok(port)
    if not ok:
        # a local Debian cluster that does not trust loopback yet: fix it and reload
        for c in _pg_clusters():
            if c["port"] == port and _pg_trust(c["version"], c["cluster"]):
                _sp(
                    _pg_ctl(c["version"], c["cluster"], "reload"),
                    capture_output=True,
                    timeout=60,
                )
                time.sleep(0.5)
                ok, err = _psql_ok(port)
    if not ok:
        raise TestbedError(f"PostgreSQL on {LOOPBACK}:{port} answers but `psql -U postgres -c 'select 1'` fails: {err}")
    return rec


def _pg_ctl(version: str, cluster: str, action: str) -> list[str]:
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, action]


def _stop_postgres(rec: dict) -> None:
    if rec and rec.get("started_by_us") and rec.get("version") and rec.get("cluster"):
        _sp(
            _pg_ctl(rec["version"], rec["cluster"], "stop"),
            capture_output=True,
            timeout=120,
        )


# ------------------------------------------------------------------ images


BASE_IMAGE = "debian:bookworm-slim"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split(None, 1)[1].split()[0]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return "http://deb.debian.org/debian"


def ensure_base_image(engine: Engine, ref: str = BASE_IMAGE) -> str:
    """`ref` on the engine, made with debootstrap when missing (no registry pull); its image ID.
    The debootstrapped tree is kept as a tarball in the testbed dir for the next engine or run."""
    if engine.image_exists(ref):
        return engine.docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip()
    cache = state_dir() / "base" / "bookworm-minbase.tar"
    if not cache.exists():
        if not shutil.which("debootstrap"):
            apt_install(["debootstrap"])
        work = state_dir() / "base" / "rootfs"
        shutil.rmtree(work, ignore_errors=True)
        work.parent.mkdir(parents=True, exist_ok=True)
        _log(f"debootstrap bookworm (minbase) from {debian_mirror()}")
        res = _sp(["debootstrap", "--variant=minbase", "bookworm", str(work), debian_mirror()], capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            raise TestbedError(f"debootstrap failed: {(res.stderr or res.stdout)[-2000:]}")
        # Smaller image: no apt lists or package cache.
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (work / sub).glob("*"):
                if item.is_file():
                    item.unlink()
        tmp = cache.with_suffix(".partial")
        res = _sp(["tar", "-C", str(work), "-cf", str(tmp), "."], capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise TestbedError(f"tar of the base failed: {res.stderr}")
        tmp.rename(cache)
        shutil.rmtree(work, ignore_errors=True)
    with open(cache, "rb") as tar:
        res = _sp([docker_bin(), "-H", engine.unix_url, "import", "-", ref], stdin=tar, capture_output=True, text=True, timeout=300,
                  env=_cli_env())
    if res.returncode != 0:
        raise TestbedError(f"docker import of the base failed: {res.stderr}")
    return res.stdout.strip().splitlines()[-1]


def ensure_wheels(requirements: Path, build_requirements: Path | None = None) -> Path:
    """Wheels for `requirements` downloaded on this machine (the image's pip cannot reach PyPI
    here), plus what building its source-only packages needs (`build_requirements`, no hashes);
    kept in the testbed dir per requirements content."""
    import hashlib

    build = build_requirements.read_bytes() if build_requirements is not None else b""
    digest = hashlib.sha256(requirements.read_bytes() + build).hexdigest()[:16]
    folder = state_dir() / "wheels" / digest
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        _log(f"pip download of {requirements.name} into {folder}")
        runs = [["-r", str(requirements)]] + ([["-r", str(build_requirements)]] if build_requirements is not None else [])
        for args in runs:
            res = _sp([sys.executable, "-m", "pip", "download", "-q", "-d", str(folder), *args],
                      capture_output=True, text=True, timeout=900)
            if res.returncode != 0:
                raise TestbedError(f"pip download failed: {res.stderr[-2000:]}")
        done.write_text(digest)
    return folder


def _rootfs_tar(dest: Path, marker: str, files: dict | None = None) -> Path:
    """A busybox root filesystem tarball with /etc/dockmon-release = marker."""
    root = dest / "rootfs"
    for sub in ("bin", "etc", "tmp", "root", "var", "www", "proc", "sys", "dev"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(static_busybox() or "/bin/busybox", root / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "dockmon-release").write_text(f"{marker}\n")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for rel, content in (files or {}).items():
        p = root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)

    def owner(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    tar = dest / "rootfs.tar"
    with tarfile.open(tar, "w") as tf:
        for child in sorted(root.iterdir()):
            tf.add(child, arcname=child.name, filter=owner)
    return tar


def build_image(
    engine: Engine,
    ref: str,
    marker: str,
    cmd=None,
    healthcheck=None,
    changes=(),
    files: dict | None = None,
) -> str:
    """Import a busybox image as ``ref`` on engine (no pull); returns the image ID.

    marker: text of /etc/dockmon-release.  cmd: list (exec form) or str (shell form),
    default ["/bin/sh"].  healthcheck: Dockerfile HEALTHCHECK arguments as a str, e.g.
    "--interval=1s --retries=1 CMD wget -q -O- http://127.0.0.1:8080/ || exit 1",
    or an exec-form list; ``docker import -c HEALTHCHECK`` is honoured by the engine.
    changes: extra Dockerfile instructions (LABEL, ENV, EXPOSE, WORKDIR, USER...).
    files: {path: str|bytes} extra files in the image.
    """
    if cmd is None:
        cmd_change = 'CMD ["/bin/sh"]'
    elif isinstance(cmd, str):
        cmd_change = f"CMD {cmd}"
    else:
        cmd_change = "CMD " + json.dumps(list(cmd))
    all_changes = [cmd_change]
    if healthcheck is not None:
        if isinstance(healthcheck, str):
            hc = healthcheck.strip()
            all_changes.append(hc if hc.upper().startswith("HEALTHCHECK") else f"HEALTHCHECK {hc}")
        else:
            all_changes.append("HEALTHCHECK CMD " + json.dumps(list(healthcheck)))
    all_changes += list(changes)
    tmp_base = state_dir() / "tmp"
    tmp_base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_base) as d:
        tar = _rootfs_tar(Path(d), marker, files)
        args = ["import"]
        for c in all_changes:
            args += ["-c", c]
        res = engine.docker(*args, str(tar), ref, timeout=120)
    return res.stdout.strip().splitlines()[-1]


_DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")


def push(engine: Engine, ref: str) -> str:
    """docker push ref; returns the manifest digest the registry stored."""
    res = engine.docker("push", ref, timeout=180)
    m = _DIGEST_RE.search(res.stdout)
    if not m:
        raise TestbedError(f"no digest in push output of {ref}: {res.stdout[-500:]}")
    return m.group(1)


def registry_digest(registry: str, repo: str, tag: str) -> str | None:
    """Docker-Content-Digest of HEAD /v2/<repo>/manifests/<tag> (None when absent)."""
    status, headers, _ = _http(
        f"http://{registry}/v2/{repo}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": MANIFEST_ACCEPT},
    )
    if status != 200:
        return None
    return headers.get("Docker-Content-Digest")


def _repo_digests(engine: Engine, ref: str) -> list[str] | None:
    res = engine.docker("image", "inspect", "--format", "{{json .RepoDigests}}", ref, check=False)
    if res.returncode != 0:
        return None
    return json.loads(res.stdout) or []


def _seed_images(registry: str, alpha: Engine, beta: Engine) -> dict:
    app_ref = f"{registry}/{SEED_APP_REPO}:{SEED_APP_TAG}"
    digest = registry_digest(registry, SEED_APP_REPO, SEED_APP_TAG)
    want = f"{registry}/{SEED_APP_REPO}@{digest}"
    ok = digest is not None and all(want in (_repo_digests(e, app_ref) or []) for e in (alpha, beta))
    if not ok:
        _log(f"seeding {app_ref}")
        build_image(alpha, app_ref, SEED_APP_MARKER)
        digest = push(alpha, app_ref)
        beta.docker("pull", app_ref, timeout=180)
    for e in (alpha, beta):
        if not e.image_exists(LOCAL_BUSYBOX_REF):
            build_image(e, LOCAL_BUSYBOX_REF, LOCAL_BUSYBOX_MARKER)
    return {"app": app_ref, "app_digest": digest, "busybox": LOCAL_BUSYBOX_REF}


# ------------------------------------------------------------------ Testbed


class Testbed:
    """A running testbed, read from state.json.  See the module docstring."""

    __test__ = False  # not a pytest test class

    def __init__(self, state: dict):
        self.state = state
        self.dir = state["dir"]
        self.engines: dict[str, Engine] = {name: Engine.from_dict(rec) for name, rec in state.get("engines", {}).items()}
        self.registry: str = state["registry"]["addr"]
        self.redis_url: str = state["redis"]["url"]
        self.database_url: str = state["postgres"]["url"]
        self.tls: dict = state.get("tls", {})
        self.images: dict = state.get("images", {})
        self.seed_image: str = self.images.get("app", f"{self.registry}/{SEED_APP_REPO}:{SEED_APP_TAG}")
        self.busybox_image: str = self.images.get("busybox", LOCAL_BUSYBOX_REF)

    @classmethod
    def load(cls, heal: bool = True) -> Testbed:
        """The running testbed; TestbedUnavailable if state.json is missing or it is down.

        heal=True restarts a base engine (alpha/beta) or our registry found dead (e.g. a
        previous test stopped it and failed before starting it again).
        """
        state = _read_state()
        if not state:
            raise TestbedUnavailable(f"no testbed state at {_state_path()}: run `python -m testkit.testbed up`")
        if not state.get("up"):
            raise TestbedUnavailable(f"testbed at {state_dir()} is not up (an `up` failed or is still running)")
        tb = cls(state)
        for name in BASE_ENGINES:
            e = tb.engines.get(name)
            if e is None:
                raise TestbedUnavailable(f"engine {name} missing from {_state_path()}")
            if not (e.is_running() and e.answers()):
                if not heal:
                    raise TestbedUnavailable(f"engine {name} is not running")
                try:
                    with _locked():  # another process may be healing it right now
                        if not (e.is_running() and e.answers()):
                            _log(f"engine {name} was down; starting it again")
                            e.start()
                except TestbedError as exc:
                    raise TestbedUnavailable(f"engine {name} is down and failed to restart: {exc}") from exc
        reg = state["registry"]
        if not _registry_answers(reg["port"]):
            if not (heal and reg.get("started_by_us")):
                raise TestbedUnavailable(f"registry {tb.registry} does not answer")
            with _locked():
                st = _read_state() or state
                try:
                    st["registry"] = _ensure_registry(st.get("registry"))
                except TestbedError as exc:
                    raise TestbedUnavailable(str(exc)) from exc
                _write_state(st)
            tb = cls(st)
        return tb

    def reload(self) -> Testbed:
        return Testbed.load(heal=False)

    def engine(self, name: str) -> Engine:
        try:
            return self.engines[name]
        except KeyError:
            raise TestbedError(f"no engine {name!r} (have {sorted(self.engines)})") from None

    # images --------------------------------------------------------------------------
    def build_image(
        self,
        engine_name: str,
        ref: str,
        marker: str,
        cmd=None,
        healthcheck=None,
        changes=(),
        files: dict | None = None,
    ) -> str:
        """See module-level build_image(); returns the image ID."""
        return build_image(
            self.engine(engine_name),
            ref,
            marker,
            cmd=cmd,
            healthcheck=healthcheck,
            changes=changes,
            files=files,
        )

    def push(self, engine_name: str, ref: str) -> str:
        """docker push from that engine; returns the registry's manifest digest."""
        return push(self.engine(engine_name), ref)

    def pull(self, engine_name: str, ref: str) -> None:
        self.engine(engine_name).docker("pull", ref, timeout=180)

    def registry_digest(self, repo: str, tag: str) -> str | None:
        return registry_digest(self.registry, repo, tag)

    def image_ref(self, repo: str, tag: str) -> str:
        return f"{self.registry}/{repo}:{tag}"

    # clones --------------------------------------------------------------------------
    def clone_engine(self, source: str, name: str, tcp: bool = True) -> Engine:
        """A new engine started from a copy of source's data-root (same container IDs).

        source is stopped (SIGTERM) while its data-root is copied and started again; its
        containers that were running are started again afterwards.  The clone gets its
        own socket, exec-root and containerd namespaces and, with tcp=True, a TCP
        listener on a free loopback port (with the same TLS settings as source).
        An existing engine called name is removed first.
        """
        if name in BASE_ENGINES or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
            raise TestbedError(f"bad clone name {name!r}")
        src = self.engine(source)
        if name in self.engines or (Path(self.dir) / name).exists():
            self.remove_engine(name)
        running = [c for c in src.docker("ps", "-q", "--no-trunc").stdout.split() if c]
        home = Path(self.dir) / name
        clone = Engine(
            name,
            str(home),
            free_port() if tcp else None,
            server_tls=src.server_tls,
            tls=src.tls,
            wrong_tls=src.wrong_tls,
            clone_of=source,
        )
        _log(f"cloning engine {source} -> {name}")
        src.stop()
        try:
            home.mkdir(parents=True)
            res = _sp(
                ["cp", "-a", src.data_root, clone.data_root],
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                raise TestbedError(f"cp -a {src.data_root} failed: {res.stderr.strip()}")
            _rewrite_paths(Path(clone.data_root) / "containers", src.data_root, clone.data_root)
        finally:
            src.start()
        for cid in running:
            src.docker("start", cid, check=False)
        with _locked():
            state = _read_state() or self.state
            state.setdefault("engines", {})[name] = clone.to_dict()
            _write_state(state)
            self.state = state
        self.engines[name] = clone
        try:
            clone.start()
        except TestbedError:
            self.remove_engine(name)
            raise
        return clone

    def add_engines(self, names: list[str]) -> list[Engine]:
        """Fresh, empty engines (unix socket only), started in parallel, each with the local
        busybox image imported. Existing engines of these names are removed first."""
        for name in names:
            if name in BASE_ENGINES or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
                raise TestbedError(f"bad engine name {name!r}")
            if name in self.engines or (Path(self.dir) / name).exists():
                self.remove_engine(name)
        fresh = [Engine(name, str(Path(self.dir) / name)) for name in names]
        with _locked():
            state = _read_state() or self.state
            for e in fresh:
                state.setdefault("engines", {})[e.name] = e.to_dict()
            _write_state(state)
            self.state = state
        for e in fresh:
            self.engines[e.name] = e
        try:
            _start_engines(fresh)
            for e in fresh:
                e._save()
                build_image(e, LOCAL_BUSYBOX_REF, LOCAL_BUSYBOX_MARKER)
        except Exception:
            self.remove_engines(names)
            raise
        return fresh

    def remove_engines(self, names: list[str]) -> None:
        """remove_engine for many at once: all are sent SIGTERM together."""
        engines = [self.engines.get(n) or Engine(n, str(Path(self.dir) / n)) for n in names if n not in BASE_ENGINES]
        pids = [p for p in (e._find_pid() for e in engines) if p]
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        _wait_gone(pids, STOP_TIMEOUT)
        for e in engines:
            self.remove_engine(e.name)

    def remove_engine(self, name: str) -> None:
        """Stop a clone (and its containers) and delete its directory."""
        if name in BASE_ENGINES:
            raise TestbedError(f"{name} is a base engine; use down()")
        e = self.engines.pop(name, None)
        home = Path(self.dir) / name
        if e is None and home.exists():
            e = Engine(name, str(home))
        if e is not None:
            e.stop()
            e.kill_strays()
        _umount_under(home)
        shutil.rmtree(home, ignore_errors=True)
        with _locked():
            state = _read_state()
            if state and name in state.get("engines", {}):
                del state["engines"][name]
                _write_state(state)
                self.state = state

    def summary(self) -> str:
        lines = [f"testbed {self.dir} (up)"]
        for e in self.engines.values():
            tls = " TLS" if e.server_tls else ""
            extra = f" clone of {e.clone_of}" if e.clone_of else ""
            lines.append(f"  engine {e.name:<8} pid {e.pid}  {e.unix_url}  {e.tcp_url or '-'}{tls}{extra}")
        lines.append(f"  registry        {self.registry}  seed {self.seed_image}")
        lines.append(f"  redis           {self.redis_url}")
        lines.append(f"  postgres        {self.database_url}")
        if self.tls:
            lines.append(f"  tls             {self.tls.get('dir')}")
        return "\n".join(lines)


def _rewrite_paths(containers_dir: Path, old: str, new: str) -> None:
    """Point the copied containers' absolute paths (logs, resolv.conf...) at the clone."""
    if not containers_dir.is_dir():
        return
    for f in containers_dir.glob("*/*.json"):
        text = f.read_text()
        fixed = text.replace(old + "/", new + "/").replace(old + '"', new + '"')
        if fixed != text:
            f.write_text(fixed)


# ------------------------------------------------------------------ up / down / status


def up() -> Testbed:
    """Start (or reuse) everything and write state.json; returns the Testbed."""
    t0 = time.monotonic()
    d = state_dir()
    with _locked():
        d.mkdir(parents=True, exist_ok=True)
        old = _read_state() or {}
        _ensure_core_packages()
        tls = ensure_tls(d)
        state = {
            "version": 1,
            "dir": str(d),
            "up": False,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "tls": tls,
            "engines": {},
            "registry": old.get("registry") or {"addr": f"{LOOPBACK}:{registry_port()}", "port": registry_port()},
            "redis": old.get("redis") or {"url": None},
            "postgres": old.get("postgres") or {"url": None},
            "images": old.get("images", {}),
        }
        engines = [_base_engine(n, tls) for n in BASE_ENGINES]
        for e in engines:
            e.pid = (old.get("engines", {}).get(e.name) or {}).get("pid")
        clones = []
        for name, rec in (old.get("engines") or {}).items():
            if name not in BASE_ENGINES:
                c = Engine.from_dict(rec)
                if c.is_running() and c.answers():
                    clones.append(c)
                else:
                    _log(f"forgetting clone {name} (not running)")
                    with contextlib.suppress(TestbedError):
                        c.stop()
                        c.kill_strays()
        try:
            _start_engines(engines)
        finally:
            state["engines"] = {e.name: e.to_dict() for e in engines + clones}
            _write_state(state)
        state["registry"] = _ensure_registry(old.get("registry"))
        _write_state(state)
        state["redis"] = _ensure_redis(old.get("redis"))
        _write_state(state)
        state["postgres"] = _ensure_postgres(old.get("postgres"))
        _write_state(state)
        by = {e.name: e for e in engines}
        # the TCP listeners through the real docker CLI
        for e in engines:
            e.docker_tcp("version", "--format", "{{.Server.APIVersion}}", timeout=30)
        state["images"] = _seed_images(state["registry"]["addr"], by["alpha"], by["beta"])
        state["engines"] = {e.name: e.to_dict() for e in engines + clones}
        state["up"] = True
        state["up_seconds"] = round(time.monotonic() - t0, 2)
        _write_state(state)
    return Testbed(state)


def down() -> None:
    """Stop everything the testbed started (engines, clones, registry, our redis/postgres)."""
    d = state_dir()
    with _locked():
        state = _read_state() or {}
        state["up"] = False
        if state:
            _write_state(state)
        engines = [Engine.from_dict(rec) for rec in (state.get("engines") or {}).values()]
        known = {e.name for e in engines}
        # engines we may have lost track of (no state): directories with a daemon.json
        if d.is_dir():
            for sub in d.iterdir():
                if sub.name not in known and (sub / "daemon.json").exists():
                    engines.append(Engine(sub.name, str(sub)))
        # SIGTERM all dockerds at once, then wait (they stop their containers in parallel)
        pids = {e.name: e._find_pid() for e in engines}
        for pid in pids.values():
            if pid:
                _signal(pid, signal.SIGTERM)
        _wait_gone([p for p in pids.values() if p], STOP_TIMEOUT)
        for e in engines:
            pid = pids[e.name]
            if pid and pid_alive(pid):
                _log(f"engine {e.name}: SIGKILL dockerd {pid}")
                _signal(pid, signal.SIGKILL)
                _wait_gone([pid], 5)
            cd = e.containerd_pid()
            if cd:
                terminate([cd], grace=5)
            _kill_tree(e._stray_pids())
            e._cleanup_stale()
            if e.name not in BASE_ENGINES:  # clones are throw-away
                _umount_under(e.home)
                shutil.rmtree(e.home, ignore_errors=True)
        reg = state.get("registry") or {}
        cfg = reg.get("config") or str(d / "registry" / "config.yml")
        reg_pids = set(_procs_with(f"serve {cfg}"))
        if reg.get("started_by_us", True) and _pid_matches(reg.get("pid"), f"serve {cfg}"):
            reg_pids.add(int(reg["pid"]))
        terminate(reg_pids)
        red = state.get("redis") or {}
        if red.get("started_by_us") and _pid_matches(red.get("pid"), "redis-server"):
            terminate([red["pid"]])
        _stop_postgres(state.get("postgres") or {})
        if d.is_dir():
            _umount_under(d)
        with contextlib.suppress(OSError):
            _state_path().unlink()


def status() -> dict:
    """What is running, as a dict (also printed by the CLI)."""
    state = _read_state()
    if not state:
        return {"up": False, "dir": str(state_dir()), "reason": "no state.json"}
    out = {"up": bool(state.get("up")), "dir": state.get("dir"), "engines": {}}
    for name, rec in state.get("engines", {}).items():
        e = Engine.from_dict(rec)
        out["engines"][name] = {
            "pid": e._find_pid(),
            "answers": e.answers(1.0),
            "unix_url": e.unix_url,
            "tcp_url": e.tcp_url,
            "tls": bool(e.server_tls),
            "clone_of": e.clone_of,
        }
    reg = state.get("registry") or {}
    out["registry"] = {
        "addr": reg.get("addr"),
        "pid": reg.get("pid"),
        "answers": bool(reg.get("port")) and _registry_answers(reg["port"]),
    }
    red = state.get("redis") or {}
    out["redis"] = {
        "url": red.get("url"),
        "started_by_us": red.get("started_by_us"),
        "answers": bool(red.get("port")) and _redis_ping(red["port"]),
    }
    pg = state.get("postgres") or {}
    out["postgres"] = {
        "url": pg.get("url"),
        "started_by_us": pg.get("started_by_us"),
        "answers": bool(pg.get("port")) and _pg_ready(pg["port"]),
    }
    out["images"] = state.get("images")
    out["healthy"] = (
        out["up"]
        and all(v["answers"] for v in out["engines"].values())
        and out["registry"]["answers"]
        and out["redis"]["answers"]
        and out["postgres"]["answers"]
    )
    return out


def require_testbed() -> Testbed:
    """Testbed.load() for tests: raises when CI=true, pytest.skip() otherwise."""
    try:
        return Testbed.load()
    except TestbedUnavailable as exc:
        if _is_ci():
            raise
        import pytest

        pytest.skip(f"DockMon testbed unavailable: {exc}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[0] if argv else "status"
    if cmd == "up":
        t0 = time.monotonic()
        try:
            tb = up()
        except TestbedError as exc:
            print(f"testbed up FAILED: {exc}", file=sys.stderr)
            return 1
        print(tb.summary())
        print(f"up in {time.monotonic() - t0:.1f}s")
        return 0
    if cmd == "down":
        t0 = time.monotonic()
        down()
        print(f"testbed down ({state_dir()}) in {time.monotonic() - t0:.1f}s")
        return 0
    if cmd == "status":
        st = status()
        print(json.dumps(st, indent=2))
        return 0 if st.get("healthy") else 1
    print("usage: python -m testkit.testbed up|down|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
