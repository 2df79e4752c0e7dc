"""Compose projects started outside DockMon: shown as stacks with `source: external`, and adopted.

A project appears as soon as one of its containers is recorded (the bus's container.created,
from the monitor following the engine's events) and disappears with its last container. Its
services, states, working directory and config files come from the compose labels. Adopting
reads the compose file (and the .env beside it) where the labels say it is, when DockMon can
read that path; the user reviews it and deploys it from then on.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery

from containers.models import Container
from stacks.choices import StackSource
from stacks.models import NAME_PATTERN, Stack

logger = logging.getLogger(__name__)

WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
ENV_FILE = "com.docker.compose.project.environment_file"
MAX_FILE = 1_000_000
_COMPOSE_NAME = re.compile(r"^(docker-)?compose([.-][\w.-]+)?\.ya?ml$")
_ENV_NAME = re.compile(r"^([\w.-]*\.)?env$")


class AdoptError(Exception):
    """The project's file cannot be read from here; the message says where it was looked for."""


def sync_host(host_id) -> None:
    sync_hosts([host_id])


def sync_hosts(host_ids) -> None:
    """External stack rows for exactly the projects that have present containers on the hosts
    (two queries when nothing changed: lists call it, so projects recorded before this app
    existed show too)."""
    host_ids = list(host_ids)
    projects = set(Container.objects.filter(host_id__in=host_ids, removed_at__isnull=True).exclude(compose_project="")
                   .values_list("host_id", "compose_project").distinct())
    known = {(host_id, name): source for host_id, name, source in
             Stack.objects.filter(host_id__in=host_ids).values_list("host_id", "name", "source")}
    for host_id, name in sorted(projects - set(known), key=str):
        _create(host_id, name)
    for (host_id, name), source in known.items():
        if source == StackSource.EXTERNAL and (host_id, name) not in projects:
            Stack.objects.filter(host_id=host_id, source=StackSource.EXTERNAL, name=name).delete()


def _create(host_id, name: str) -> None:
    if not re.match(NAME_PATTERN, name):
        return  # compose would not have made it; not ours to guess
    try:
        with transaction.atomic():
            Stack.objects.get_or_create(host_id=host_id, name=name, defaults={"source": StackSource.EXTERNAL, "compose": ""})
    except IntegrityError:  # created meanwhile by another process
        pass


def on_event(event) -> None:
    """Bus subscriber: a container of a compose project was created or removed."""
    if event.type not in ("container.created", "container.removed") or not event.host_id:
        return
    if event.type == "container.created" and not (event.data or {}).get("compose_project"):
        return
    sync_host(event.host_id)


def with_stack_id(queryset):
    """Containers with `stack`: the id of the stack of their host and compose project, or None."""
    stacks = Stack.objects.filter(host_id=OuterRef("host_id"), name=OuterRef("compose_project")).values("pk")[:1]
    return queryset.annotate(stack=Subquery(stacks))


def origin(stack: Stack, containers) -> dict:
    """Where compose says the project came from (its first container's labels)."""
    for container in containers:
        labels = container.labels or {}
        if labels.get(WORKING_DIR) or labels.get(CONFIG_FILES):
            return {"working_dir": labels.get(WORKING_DIR, ""),
                    "config_files": [p for p in labels.get(CONFIG_FILES, "").split(",") if p],
                    "environment_files": [p for p in labels.get(ENV_FILE, "").split(",") if p]}
    return {"working_dir": "", "config_files": [], "environment_files": []}


def read_project_files(info: dict) -> tuple[str, str]:
    """(compose text, env text) from the paths of the labels; AdoptError when unreadable.

    One config file only: several (overrides) would have to be merged, which is compose's job
    and not something to do silently here."""
    files = info["config_files"]
    if len(files) != 1:
        raise AdoptError(f"The project was started from {len(files)} compose files ({', '.join(files) or 'none recorded'}); "
                         "adopting needs exactly one.")
    path = Path(files[0])
    # Labels are written by whoever started the project: only a compose file and a .env file
    # are read, and nothing of DockMon's own (its data dir holds its secret key and database).
    _check_path(path, _COMPOSE_NAME, "a compose file (compose.yaml, docker-compose.yml...)")
    compose_text = _read(path)
    env_text = ""
    env_paths = info["environment_files"] or ([str(Path(info["working_dir"]) / ".env")] if info["working_dir"] else [])
    for env_path in env_paths[:1]:
        env_path = Path(env_path)
        _check_path(env_path, _ENV_NAME, "an env file (.env, name.env)")
        if env_path.is_file():
            env_text = _read(env_path)
    return compose_text, env_text


def _check_path(path: Path, pattern, what: str) -> None:
    if not pattern.match(path.name):
        raise AdoptError(f"{path} is not named like {what}.")
    resolved = path.resolve()
    for own in (Path(settings.DATA_DIR).resolve(), Path(settings.BASE_DIR).resolve()):
        if resolved == own or own in resolved.parents:
            raise AdoptError(f"{path} lies in DockMon's own folders.")


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE:
            raise AdoptError(f"{path} is larger than {MAX_FILE} bytes.")
        return path.read_text()
    except OSError as exc:
        raise AdoptError(f"Cannot read {path} from DockMon: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise AdoptError(f"{path} is not text.") from None
