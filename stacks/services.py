"""What a stack is made of and how it stands: validation of its text, the services it runs
(from the containers DockMon already tracks), its status, drift and the diff a deploy would make.

Nothing here contacts an engine: validation is `compose config` (local), and what runs is read
from containers.Container rows, which the monitor keeps current and every run refreshes.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from containers.models import Container
from stacks import compose, external
from stacks.choices import ACTIVE_RUN_STATUSES, RunStatus, ServiceChange, StackSource, StackStatus
from stacks.models import NAME_PATTERN, Stack, StackRun

CONFIG_HASH = "com.docker.compose.config-hash"
_NAME = re.compile(NAME_PATTERN)


class StackInvalid(Exception):
    """The text or the name cannot be used; the message says why (compose's own words)."""


class NameInvalid(StackInvalid):
    """The name cannot be used on that host."""


def check_name(host, name: str, *, stack: Stack | None = None) -> None:
    if not _NAME.match(name or "") or len(name) > 63:
        raise NameInvalid("A stack name is lower-case letters, digits, '-' and '_', starting with a letter or digit "
                           "(63 characters at most): it is the compose project name.")
    others = Stack.objects.filter(host=host, name=name).exclude(source=StackSource.EXTERNAL)
    if stack is not None:
        others = others.exclude(pk=stack.pk)
    if others.exists():
        raise NameInvalid(f"Host {host.name} already has a stack named {name}.")
    # A project started outside DockMon owns its containers: a DockMon stack of the same name
    # would take them over (and `up --remove-orphans` would remove some) without anyone asking.
    external = Stack.objects.filter(host=host, name=name, source=StackSource.EXTERNAL).exists()
    if stack is None and (external or Container.objects.filter(host=host, compose_project=name, removed_at__isnull=True).exists()):
        raise NameInvalid(f"A compose project named {name} already runs on {host.name} outside DockMon; "
                           "choose another name (or adopt that project).")


# Keys that make compose read files on the DockMon server itself (not on the stack's host): a
# user who may deploy on some host must not get DockMon's own files into a container, a build
# context or an error message. Checked on the text before compose sees it (compose reads
# included and extended files while it validates); the stack's env field replaces env_file.
_SERVER_FILE_KEYS = re.compile(r"""(?m)(?:^|[\s{,\[])["']?(include|extends|env_file|label_file|build)["']?\s*:""")


def check_policy(compose_text: str) -> None:
    match = _SERVER_FILE_KEYS.search(compose_text)
    if match:
        key = match.group(1)
        hint = " (use the stack's env instead)" if key == "env_file" else ""
        raise StackInvalid(f"`{key}` is not supported in DockMon stacks: it reads files on the DockMon server{hint}.")


def check_config_files(config: dict, folder) -> None:
    """secrets and configs from a `file` are read on the DockMon server too: only the stack's own folder."""
    for section in ("secrets", "configs"):
        for item_name, item in (config.get(section) or {}).items():
            path = (item or {}).get("file")
            if path and not str(path).startswith(str(folder) + "/"):
                raise StackInvalid(f"{section}.{item_name}: a file outside the stack's folder cannot be used ({path}).")


def validate(host, name: str, compose_text: str, env_text: str) -> compose.Config:
    """`compose config` of the text as it would be deployed (same project name and working
    directory, so the service hashes are the ones compose will put on the containers).

    Written beside the live files under other names: a run that is going on reads its own."""
    check_policy(compose_text)
    folder = compose.working_dir(host.pk, name)
    existed = folder.exists()
    compose.write_files(folder, compose_text, env_text, candidate=True)
    try:
        result = compose.config(folder, name, candidate=True)
        check_config_files(result.config, folder)
        return result
    except compose.ComposeMissing:
        raise
    except compose.ComposeError as exc:
        raise StackInvalid(str(exc)) from exc
    finally:
        for file_name in (compose.CANDIDATE_FILE, compose.CANDIDATE_ENV):
            (folder / file_name).unlink(missing_ok=True)
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)


_ENV_LINE = re.compile(r"^(\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_.-]*\s*=)(.*)$")
MASK = "********"


def masked_env(text: str) -> str:
    """The env file with every value hidden and the names, comments and blank lines kept: what
    someone who may see a stack but not deploy on its host is shown."""
    return "\n".join(_ENV_LINE.sub(lambda m: m.group(1) + (MASK if m.group(2).strip() else ""), line)
                     for line in text.split("\n"))


def stored_config(config: dict) -> dict:
    """What the database keeps of compose's rendered config: per service its image, depends_on
    and DockMon's own labels. The rest (environment, commands...) has the env file's values
    interpolated into it, and those are only kept encrypted, in `env`."""
    kept = {}
    for name, definition in (config.get("services") or {}).items():
        definition = definition or {}
        row = {key: definition[key] for key in ("image", "depends_on") if key in definition}
        labels = definition.get("labels") or {}
        if isinstance(labels, dict):
            ours = {k: v for k, v in labels.items() if k.startswith("dockmon.")}
            if ours:
                row["labels"] = ours
        kept[name] = row
    return {"services": kept}


def apply_config(stack: Stack, result: compose.Config) -> None:
    stack.config = stored_config(result.config)
    stack.config_hashes = result.hashes


def containers_of(stack: Stack) -> QuerySet:
    """The stack's present containers on its host (compose labels them with the project)."""
    return Container.objects.filter(host_id=stack.host_id, compose_project=stack.name, removed_at__isnull=True).order_by("name")


def _by_service(containers) -> dict[str, list[Container]]:
    grouped: dict[str, list[Container]] = {}
    for container in containers:
        grouped.setdefault(container.compose_service, []).append(container)
    return grouped


def _state_of(containers: list[Container]) -> str:
    if not containers:
        return "missing"
    states = {c.state for c in containers}
    if states == {"running"}:
        return "running"
    if "running" in states:
        return "partial"
    return states.pop() if len(states) == 1 else "stopped"


def services(stack: Stack, containers: list[Container] | None = None) -> list[dict]:
    """[{name, image, containers: [keys], state}] for every service of the file and every
    service that runs (an orphan shows with the image it runs)."""
    grouped = _by_service(containers_of(stack) if containers is None else containers)
    names = sorted(set(stack.service_names()) | set(grouped))
    rows = []
    for name in names:
        running = grouped.get(name, [])
        image = stack.service_image(name) or (running[0].image if running else "")
        rows.append({"name": name, "image": image, "containers": [c.key for c in running], "state": _state_of(running)})
    return rows


def drift(stack: Stack, containers: list[Container] | None = None) -> list[dict]:
    """How what runs differs from the last deploy (managed stacks only): a service without
    containers, a container whose configuration hash is not the deployed one, an extra service."""
    if stack.source != StackSource.DOCKMON or not stack.deployed_hashes:
        return []
    grouped = _by_service(containers_of(stack) if containers is None else containers)
    differences = []
    for service, deployed in sorted(stack.deployed_hashes.items()):
        running = grouped.get(service, [])
        if not running:
            differences.append({"service": service, "reason": "missing", "message": f"{service} has no container"})
            continue
        for container in running:
            if container.labels.get(CONFIG_HASH, "") != deployed:
                differences.append({"service": service, "reason": "changed", "container": container.key,
                                    "message": f"{container.name} was changed outside DockMon"})
    for service in sorted(set(grouped) - set(stack.deployed_hashes)):
        differences.append({"service": service, "reason": "extra", "message": f"{service} is not in the deployed file"})
    return differences


@dataclass
class Standing:
    status: str
    services: list[dict]
    drift: list[dict]
    origin: dict


def standing(stack: Stack, *, containers: list[Container] | None = None, runs: list[StackRun] | None = None) -> Standing:
    """The read fields `status`, `services` and `drift`, from one container query and the last run."""
    containers = list(containers_of(stack)) if containers is None else containers
    service_rows = services(stack, containers)
    differences = drift(stack, containers)
    last = (runs if runs is not None else list(stack.runs.order_by("-created_at", "-id")[:1]))
    last_run = last[0] if last else None
    if last_run is not None and last_run.status in ACTIVE_RUN_STATUSES:
        status = StackStatus.DEPLOYING
    elif last_run is not None and last_run.status == RunStatus.FAILED:
        status = StackStatus.ERROR
    elif differences:
        status = StackStatus.DRIFTED
    else:
        states = [row["state"] for row in service_rows if row["containers"]]
        if states and all(state == "running" for state in states) and len(states) == len(service_rows):
            status = StackStatus.RUNNING
        elif any(state in ("running", "partial") for state in states):
            status = StackStatus.PARTIAL
        else:
            status = StackStatus.STOPPED
    return Standing(str(status), service_rows, differences, external.origin(stack, containers))


def diff(stack: Stack, containers: list[Container] | None = None) -> list[dict]:
    """What deploying the stack's current text would change, per service, before anything runs:
    the hash compose computes for the edited file against the one on each running container."""
    grouped = _by_service(containers_of(stack) if containers is None else containers)
    rows = []
    for service in stack.service_names():
        image = stack.service_image(service)
        running = grouped.get(service, [])
        wanted = stack.config_hashes.get(service, "")
        if not running:
            change = ServiceChange.NEW
        elif all(c.labels.get(CONFIG_HASH, "") == wanted for c in running):
            change = ServiceChange.UNCHANGED
        elif any(c.image != image for c in running):
            change = ServiceChange.IMAGE
        else:
            change = ServiceChange.CONFIG
        rows.append({"service": service, "change": str(change), "image": image,
                     "running_image": running[0].image if running else "", "containers": [c.key for c in running]})
    for service in sorted(set(grouped) - set(stack.service_names())):
        running = grouped[service]
        rows.append({"service": service, "change": str(ServiceChange.REMOVED), "image": "",
                     "running_image": running[0].image, "containers": [c.key for c in running]})
    return rows


def changes_only(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["change"] != ServiceChange.UNCHANGED]


def move_to_trash(host_id, name: str) -> str:
    """The stack's folder moved under the trash (kept a week, tasks.prune_trash); its new path."""
    folder = compose.working_dir(host_id, name)
    if not folder.exists():
        return ""
    trash = compose.trash_dir()
    trash.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = trash / f"{timezone.now():%Y%m%dT%H%M%S}-{host_id}-{name}"
    shutil.move(str(folder), str(target))
    return str(target)


def attach_standings(stacks: list[Stack]) -> None:
    """Each stack's standing and last run id, for a whole page in three queries (lists)."""
    if not stacks:
        return
    grouped: dict[tuple, list[Container]] = {}
    present = Container.objects.filter(host_id__in={s.host_id for s in stacks}, compose_project__in={s.name for s in stacks},
                                       removed_at__isnull=True).order_by("name")
    for container in present:
        grouped.setdefault((container.host_id, container.compose_project), []).append(container)
    latest = StackRun.objects.filter(stack=OuterRef("pk")).order_by("-created_at", "-id").values("pk")[:1]
    last_ids = dict(Stack.objects.filter(pk__in=[s.pk for s in stacks]).annotate(last=Subquery(latest)).values_list("pk", "last"))
    runs = StackRun.objects.in_bulk([pk for pk in last_ids.values() if pk])
    for stack in stacks:
        run = runs.get(last_ids.get(stack.pk))
        stack._last_run_id = run.pk if run else None
        stack._standing = standing(stack, containers=grouped.get((stack.host_id, stack.name), []), runs=[run] if run else [])
