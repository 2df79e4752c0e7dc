"""Fixtures of the stacks tests: compose projects removed from their engine after each test."""

from __future__ import annotations

import os
import subprocess

import pytest


def compose_binary() -> str:
    from stacks import compose

    return compose.binary()


def run_compose(engine, project: str, *args: str, folder: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`docker compose -p PROJECT ARGS` straight on a testbed engine (its unix socket), as a
    user would run it outside DockMon."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": folder or "/tmp", "DOCKER_HOST": engine.unix_url}
    argv = [compose_binary(), "--project-name", project, *args]
    return subprocess.run(argv, env=env, cwd=folder or "/tmp", capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def compose_projects():
    """Collects (engine, project) pairs; each project is taken down with its volumes after the test."""
    items: list = []
    yield items
    for engine, project in items:
        run_compose(engine, project, "down", "--volumes", "--remove-orphans", "--timeout", "1")
        # Containers compose does not count as its own (made by hand with its labels) go too.
        ids = engine.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}", check=False).stdout.split()
        if ids:
            engine.docker("rm", "-f", *ids, check=False)
        volumes = engine.docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}", check=False)
        for volume in volumes.stdout.split():
            engine.docker("volume", "rm", "-f", volume, check=False)


@pytest.fixture
def images_to_remove():
    """Collects (engine, image) pairs; every image of each one's repository (earlier releases
    left untagged by an update or a rollback too) is removed from its engine after the test.
    Ask for it before `compose_projects`, so the containers using the images are gone first."""
    items: list = []
    yield items
    for engine, ref in items:
        repository = ref.rsplit(":", 1)[0]
        ids = sorted(set(engine.docker("images", "-q", repository, check=False).stdout.split()))
        if ids:
            engine.docker("rmi", "-f", *ids, check=False)
