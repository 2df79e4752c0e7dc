"""Stack runs: one StackRun row per compose action, executed by a Celery task (stacks.tasks).

A deploy goes through these stages, each published live as `stack.progress`
{stack, run, stage, service?, message, percent?} and written to the run's log:

  validate   `compose config` of the stack's text (what is deployed is what was checked)
  pull       `compose pull`: a failing pull ends the run with the running stack untouched
  up         `compose up -d --remove-orphans`: compose recreates only what changed
  sync       the host's containers read again, so the stack's services show at once

start, stop, restart and down run the one compose command of that name (down with
`--volumes` when asked); delete is down, then the files go to the trash and the stack is
forgotten. Who may start a run is decided before the row exists (the `deploy` right on the
stack's host, stacks/api/views.py); the task runs what the row says.
"""

from __future__ import annotations

import logging
import time

from django.db import IntegrityError, transaction
from django.utils import timezone

from containers import bus, engine
from containers import services as container_services
from containers.choices import EventCategory, Severity
from containers.engine import facts as engine_facts
from containers.engine import images as engine_images
from containers.engine import recreate as engine_recreate
from stacks import compose, external, rebuild, services
from stacks.choices import ACTIVE_RUN_STATUSES, RunKind, RunStage, RunStatus, StackSource
from stacks.models import Stack, StackRun

logger = logging.getLogger(__name__)

_PERCENT = {RunStage.VALIDATE: 5, RunStage.PULL: 10, RunStage.CHECK: 40, RunStage.ROLLBACK: 80, RunStage.UP: 50, RunStage.START: 30, RunStage.STOP: 30,
            RunStage.RESTART: 30, RunStage.DOWN: 30, RunStage.SYNC: 90, RunStage.TRASH: 95, RunStage.DONE: 100}
_COMMAND_STAGE = {RunKind.START: RunStage.START, RunKind.STOP: RunStage.STOP, RunKind.RESTART: RunStage.RESTART}
MAX_LOG = 100_000


class RunBusy(Exception):
    """The stack already has a pending or running run."""


class RolledBack(Exception):
    """An update failed its gate and the stack was put back as it ran; the message says why."""


def create_run(stack: Stack, kind: str, actor=None, *, options: dict | None = None, diff: list | None = None) -> StackRun:
    """A pending run; RunBusy when one is already pending or running for the stack."""
    if StackRun.objects.filter(stack=stack, status__in=ACTIVE_RUN_STATUSES).exists():
        raise RunBusy(f"Stack {stack.name} already has a run in progress.")
    try:
        with transaction.atomic():
            return StackRun.objects.create(stack=stack, host_id=stack.host_id, stack_name=stack.name, kind=kind,
                                           actor=actor if getattr(actor, "is_authenticated", False) else None,
                                           options=options or {}, diff=diff or [])
    except IntegrityError:  # a request racing this one got its run in first
        raise RunBusy(f"Stack {stack.name} already has a run in progress.") from None


def schedule_auto_updates() -> list[int]:
    """Update runs (no actor: the system's) for the stacks that want them; their ids."""
    from stacks.choices import StackSource
    from stacks.tasks import execute_run

    started = []
    for stack in Stack.objects.filter(source=StackSource.DOCKMON).select_related("host").order_by("pk"):
        if not stack.host.enabled or not stack.wants_auto_update():
            continue
        try:
            run = create_run(stack, RunKind.UPDATE, None, options={"trigger": "auto"})
        except RunBusy:
            continue
        execute_run.delay(run.pk)
        started.append(run.pk)
    return started


def fail_stale() -> int:
    """Mark failed the runs no worker can still be carrying out (see tasks.repair_stale_runs)."""
    from datetime import timedelta

    from django.conf import settings

    now = timezone.now()
    # A deploy is several compose commands (config, pull, up), each bounded by the timeout.
    running_limit = now - timedelta(seconds=4 * settings.DOCKMON_COMPOSE_RUN_TIMEOUT)
    pending_limit = now - timedelta(hours=1)
    stale = StackRun.objects.filter(status=RunStatus.RUNNING, started_at__lt=running_limit) | StackRun.objects.filter(
        status=RunStatus.PENDING, created_at__lt=pending_limit)
    return stale.update(status=RunStatus.FAILED, finished_at=now,
                        error="The run was interrupted (its worker stopped before it ended); check the stack and run it again.")


def execute(run_id: int) -> None:
    """Claim a pending run and carry it out; a run that is not pending any more is left alone."""
    if not StackRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(status=RunStatus.RUNNING, started_at=timezone.now()):
        return
    run = StackRun.objects.select_related("stack", "host", "actor").get(pk=run_id)
    Execution(run).go()


class Execution:
    def __init__(self, run: StackRun):
        self.run = run
        self.stack = run.stack
        self.host = run.host
        self.lines: list[str] = [run.log] if run.log else []
        self.last_saved = 0.0
        self.last_by_id: dict[str, str] = {}

    # --- bookkeeping -------------------------------------------------------------------
    def log(self, text: str, *, flush: bool = True) -> None:
        self.lines.append(f"{timezone.now():%Y-%m-%d %H:%M:%S} [{self.run.stage}] {text}")
        logger.info("stack run #%s: %s", self.run.pk, text)
        if flush or time.monotonic() - self.last_saved > 0.5:
            self.save()

    def save(self, *fields: str) -> None:
        run = self.run
        run.log = "\n".join(self.lines)[-MAX_LOG:]
        self.last_saved = time.monotonic()
        try:
            StackRun.objects.filter(pk=run.pk).update(**{name: getattr(run, name) for name in {*fields, "log"}})
        except Exception:  # bookkeeping must never break the compose work
            logger.exception("could not save stack run %s", run.pk)

    def progress(self, message: str, *, service: str = "", percent: int | None = None) -> None:
        run = self.run
        data = {"stack": run.stack_id, "run": run.pk, "name": run.stack_name, "kind": run.kind,
                "stage": run.stage, "message": message}
        if service:
            data["service"] = service
        if percent is not None:
            data["percent"] = percent
        bus.emit("stack.progress", category=EventCategory.STACK, persist=False, host=self.host.pk, data=data)

    def stage(self, stage: str, message: str) -> None:
        self.run.stage = stage
        self.run.percent = _PERCENT.get(stage, self.run.percent)
        self.save("stage", "percent")
        self.log(message)
        self.progress(message, percent=self.run.percent)

    def finish(self, status: str, error: str = "") -> None:
        run = self.run
        run.status, run.error, run.finished_at = status, error[:10_000], timezone.now()
        if status == RunStatus.SUCCEEDED:
            run.stage, run.percent = RunStage.DONE, 100
        if error:
            self.lines.append(f"{timezone.now():%Y-%m-%d %H:%M:%S} [{run.stage}] failed: {error}")
        self.save("status", "error", "finished_at", "stage", "percent")
        self.progress(error or "done", percent=run.percent)
        verb = {RunStatus.SUCCEEDED: "succeeded", RunStatus.ROLLED_BACK: "rolled_back"}.get(status, "failed")
        bus.emit(f"stack.{verb}", category=EventCategory.STACK, host=self.host.pk, actor=run.actor,
                 severity=Severity.INFO if status == RunStatus.SUCCEEDED else Severity.ERROR,
                 message=f"{run.get_kind_display()} of stack {run.stack_name} {verb}" + (f": {error}" if error else ""),
                 data={"stack": run.stack_id, "run": run.pk, "name": run.stack_name, "kind": run.kind, "status": status})

    # --- compose -----------------------------------------------------------------------
    def on_line(self, line: str) -> None:
        """One line of compose's JSON progress: logged when something new happens to its object
        (byte counts are not logged), published as it comes."""
        event = compose.parse_event(line)
        if event is None:
            if line.strip():
                self.log(line.strip(), flush=False)
            return
        if event.get("error"):
            self.log(str(event.get("message", "")), flush=False)
            self.progress(str(event.get("message", "")))
            return
        ident = str(event.get("id", ""))
        status = " ".join(str(event.get(k, "")) for k in ("text", "status") if event.get(k)).strip()
        service = self._service_of(ident)
        message = f"{ident}: {status}" if ident else status
        percent = event.get("percent")
        if self.last_by_id.get(ident) != status:
            self.last_by_id[ident] = status
            self.log(message, flush=False)
        self.progress(message, service=service, percent=percent if isinstance(percent, int) else None)

    def _service_of(self, ident: str) -> str:
        kind, _, name = ident.partition(" ")
        if not name:
            return ident if ident in self.service_names else ""
        if kind == "Container":
            # Compose names containers <project>-<service>-<n>.
            prefix = f"{self.run.stack_name}-"
            if name.startswith(prefix):
                return name[len(prefix):].rsplit("-", 1)[0]
        return ""

    @property
    def service_names(self) -> list[str]:
        return self.stack.service_names() if self.stack is not None else []

    def compose(self, *args: str) -> None:
        result = compose.run(self.host, self.folder, self.run.stack_name, list(args), on_line=self.on_line)
        self.save()
        if not result.ok:
            raise compose.ComposeError(result.message())

    def sync(self, *, quiet: bool = False) -> None:
        """Read the host's containers again, so the stack's services show what now runs (the
        monitor does the same from engine events; this does not wait for it)."""
        if not quiet:
            self.stage(RunStage.SYNC, "Reading the host's containers")
        try:
            client = engine.client_for_host(self.host)
            try:
                container_services.reconcile(self.host, engine_facts.list_containers(client))
            finally:
                client.close()
        except engine.EngineError as exc:
            self.log(f"Could not read the containers (the monitor will): {exc}")

    # --- the run -----------------------------------------------------------------------
    def go(self) -> None:
        run = self.run
        if self.stack is None:
            self.finish(RunStatus.FAILED, "The stack no longer exists.")
            return
        self.folder = compose.working_dir(self.host.pk, run.stack_name)
        who = f" by {run.actor}" if run.actor else ""
        self.log(f"{run.get_kind_display()} of {run.stack_name} on {self.host.name}{who}")
        try:
            if (self.stack.source == StackSource.EXTERNAL) != (run.kind == RunKind.ADOPT):
                raise services.StackInvalid("A stack started outside DockMon is adopted first; only it can be adopted.")
            compose.write_files(self.folder, self.stack.compose, self.stack.env)
            getattr(self, f"_{run.kind}")()
        except RolledBack as exc:
            self.sync(quiet=True)
            self.finish(RunStatus.ROLLED_BACK, str(exc))
            return
        except (external.AdoptError, services.StackInvalid, engine.EngineError) as exc:
            self.finish(RunStatus.FAILED, str(exc))
            return
        except compose.ComposeError as exc:
            # What compose did before it failed shows at once (the stage stays where it failed).
            self.sync(quiet=True)
            self.finish(RunStatus.FAILED, str(exc))
            return
        except Exception as exc:  # the run must end recorded, whatever broke
            logger.exception("stack run %s failed", run.pk)
            self.finish(RunStatus.FAILED, f"Unexpected error: {exc}")
            return
        self.finish(RunStatus.SUCCEEDED)

    def _deploy(self) -> None:
        stack = self.stack
        self.stage(RunStage.VALIDATE, "Checking the compose file")
        services.check_policy(stack.compose)
        result = compose.config(self.folder, stack.name)
        services.check_config_files(result.config, self.folder)
        services.apply_config(stack, result)
        Stack.objects.filter(pk=stack.pk).update(config=stack.config, config_hashes=stack.config_hashes)
        self.stage(RunStage.PULL, "Pulling images")
        self.compose("pull")
        self.stage(RunStage.UP, "Creating and starting services")
        self.compose("up", "--detach", "--remove-orphans")
        stack.deployed_hashes, stack.deployed_at = dict(result.hashes), timezone.now()
        Stack.objects.filter(pk=stack.pk).update(deployed_hashes=stack.deployed_hashes, deployed_at=stack.deployed_at)
        self.sync()

    def _command(self) -> None:
        kind = self.run.kind
        self.stage(_COMMAND_STAGE[kind], f"{self.run.get_kind_display()} services")
        self.compose(kind)
        self.sync()

    _start = _stop = _restart = _command

    def _down(self) -> None:
        args = ["down", "--remove-orphans"]
        if self.run.options.get("volumes"):
            args.append("--volumes")
        self.stage(RunStage.DOWN, "Removing the services" + (" and their volumes" if "--volumes" in args else ""))
        self.compose(*args)
        # Nothing is deployed any more: a stack that is down has not drifted.
        Stack.objects.filter(pk=self.stack.pk).update(deployed_hashes={})
        self.sync()

    def _delete(self) -> None:
        self._down()
        self.stage(RunStage.TRASH, "Moving the files to the trash and forgetting the stack")
        where = services.move_to_trash(self.host.pk, self.run.stack_name)
        if where:
            self.log(f"Files kept in {where}")
        Stack.objects.filter(pk=self.stack.pk).delete()
        self.run.stack_id = None

    def _update(self) -> None:
        from stacks.stack_update import StackUpdate

        status = StackUpdate(self).go()
        if status == RunStatus.ROLLED_BACK:
            raise RolledBack(self.run.error)
        self.sync()

    def _adopt(self) -> None:
        """Take the project's own file as the stack's text; what runs counts as deployed, so a
        deploy of the unchanged file leaves its containers alone."""
        stack = self.stack
        self.stage(RunStage.ADOPT, "Reading the project's compose file")
        running = list(services.containers_of(stack))
        info = external.origin(stack, running)
        try:
            compose_text, env_text = external.read_project_files(info)
            self.log(f"Read {info['config_files'][0]}")
        except external.AdoptError as exc:
            self.log(f"{exc} The file is rebuilt from the running containers instead.")
            compose_text, env_text = self._rebuild(running), ""
        self.stage(RunStage.VALIDATE, "Checking the compose file")
        services.check_policy(compose_text)
        compose.write_files(self.folder, compose_text, env_text)
        result = compose.config(self.folder, stack.name)
        services.check_config_files(result.config, self.folder)
        deployed = {}
        for container in running:
            deployed.setdefault(container.compose_service, container.labels.get(services.CONFIG_HASH, ""))
        Stack.objects.filter(pk=stack.pk).update(compose=compose_text, env=env_text, config=services.stored_config(result.config),
                                                 config_hashes=result.hashes, deployed_hashes=deployed,
                                                 source=StackSource.DOCKMON, created_by=self.run.actor)
        self.log("The stack is managed by DockMon now: review its file, then deploy it")

    def _rebuild(self, running) -> str:
        """A compose file from the running containers (stacks.rebuild), headed by what to review."""
        first: dict[str, str] = {}
        for container in running:
            first.setdefault(container.compose_service, container.container_id)
        if not first:
            raise external.AdoptError("The project has no containers to rebuild its file from.")
        client = engine.client_for_host(self.host)
        try:
            found = {}
            for service, container_id in first.items():
                data = engine_recreate.inspect_raw(client, container_id)
                found[service] = (data, engine_images.inspect_image_raw(client, data.get("Image") or ""))
        finally:
            client.close()
        document, notes = rebuild.compose_from(self.run.stack_name, found)
        text = compose.render_yaml(self.folder, self.run.stack_name, document)
        head = ["# Rebuilt by DockMon from the running containers: review it before the first deploy."]
        head += [f"# {note}" for note in notes]
        for note in notes:
            self.log(note)
        return "\n".join(head) + "\n" + text
