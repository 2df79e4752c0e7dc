"""Schemathesis over every operation of the OpenAPI schema, reads and writes, in-process.

GIVEN a world with real objects behind the API (two hosts on the testbed's engines, running
containers, one object of every other kind, and stored destinations beyond loopback), WHEN
schemathesis sends generated requests (boundary cases of its coverage phase, then random
positive and negative examples; path ids half real, half generated; destinations in bodies
as generated, on a closed loopback port, or beyond loopback) to every operation of
/api/v1/schema/ plus OPTIONS on every path, first as a superuser and then as a user granted
host A only, and finally valid requests that point hosts, checks, channels, registries and an
import beyond loopback, THEN no answer is a server error, every answer the schema describes
matches it, and nothing was contacted beyond this machine's loopback.

Network safety: DockMon's own policies allow loopback only (DOCKMON_OUTBOUND_ALLOW for requests
made on anyone's behalf, DOCKMON_ENGINE_ALLOW for engines), and the process runs under
dockmon_site/tests/netguard.py, which refuses and records any connection or ssh beyond loopback
(the test fails if the product even tried) and any DNS lookup of a name (counted: resolving is
how a name is checked; the lookup never leaves). Celery tasks run inline (eager), under the same
guard, so that no generated work is left in Redis for another process.

Bounded for CI (runs once per database, side by side): DOCKMON_FUZZ_EXAMPLES (random examples
per operation for the superuser, default 5; about half for the granted user) and
DOCKMON_FUZZ_COVERAGE (boundary cases per operation, default 5; half for the granted user).
Derandomized: CI sends the same requests on every run; DOCKMON_FUZZ_RANDOM=1 (with larger
numbers, and DOCKMON_FUZZ_ONLY=<regex on "METHOD /path">) hunts for new failures. Requests per
operation and person are written to test-logs/api-fuzz.txt.
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from collections import Counter

import pytest

from dockmon_site.tests.fuzz_world import collection_of
from dockmon_site.tests.netguard import NetGuard

pytestmark = [pytest.mark.trust, pytest.mark.slow]

EXAMPLES = int(os.environ.get("DOCKMON_FUZZ_EXAMPLES", "5"))
COVERAGE = int(os.environ.get("DOCKMON_FUZZ_COVERAGE", "5"))
RANDOM = os.environ.get("DOCKMON_FUZZ_RANDOM") == "1"
ONLY = os.environ.get("DOCKMON_FUZZ_ONLY", "")  # a regular expression on "METHOD /path" (hunting; the checks below then fail)
# A request that takes longer than this is reported (an unbounded wait is a bug of its own).
SLOW_REQUEST_SECONDS = 30.0
CLOSED_PORT = 9  # "discard": nothing listens on it here; loopback values point at it
LOOPBACK_ALLOW = "127.0.0.0/8,::1/128"


# ---------------------------------------------------------------------------------------------
# Destinations in generated bodies
# ---------------------------------------------------------------------------------------------
# Random strings are rarely URLs, so a third of the examples point every destination DockMon
# would contact at a closed loopback port (the code beyond the policy runs and must fail
# cleanly), and a third at an address beyond loopback (the policy must refuse it, and the guard
# proves that nothing was sent).
LOOPBACK = {
    "engine": [f"tcp://127.0.0.1:{CLOSED_PORT}", "ssh://fuzz@127.0.0.1:9"],
    "http": [f"http://127.0.0.1:{CLOSED_PORT}/", f"https://localhost:{CLOSED_PORT}/x"],
    "host": ["127.0.0.1", "localhost"],
    "registry": [f"127.0.0.1:{CLOSED_PORT}"],
}
HOSTILE = {
    "engine": ["ssh://root@10.11.12.13", "tcp://10.11.12.13:2375", "tcp://169.254.169.254:2376",
               "ssh://deploy@engine.example.com:2222", "tcp://[fd00::1]:2375", "tcp://0x0a0b0c0d:2375"],
    "http": ["http://10.11.12.13/", "http://169.254.169.254/latest/meta-data/", "https://example.com/hook",
             "http://[fd00::1]:8080/x", "http://0x0a0b0c0d/", "http://127.0.0.1:2375/containers/json"],
    "host": ["10.11.12.13", "smtp.example.com", "169.254.169.254"],
    "registry": ["registry.example.com", "10.11.12.13:5000", "[fd00::1]:5000"],
}
CHANNEL_DESTINATIONS = {"url": "http", "webhook_url": "http", "base_url": "http", "host": "host", "server": "host"}


def _destinations(value, values: dict, pick: int, *, path: str, key: str = "", parent: str = ""):
    """`value` with every destination replaced by one of `values` (LOOPBACK or HOSTILE)."""
    def one(kind):
        return values[kind][pick % len(values[kind])]

    if isinstance(value, list):
        return [_destinations(v, values, pick + i, path=path, key=key, parent=parent) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {k: _destinations(v, values, pick, path=path, key=str(k), parent=key) for k, v in value.items()}
        if key == "config":  # a notification channel's settings: every kind's destination keys
            out.update({k: one(kind) for k, kind in CHANNEL_DESTINATIONS.items()})
        return out
    if not isinstance(value, str):
        return value
    if key == "url":
        return one("engine") if path.startswith("/api/v1/hosts") or parent == "hosts" else one("http")
    if key in ("webhook_url", "base_url"):
        return one("http")
    if key == "registry":
        return one("registry")
    if key in ("smtp_host", "server") or (key == "host" and parent == "config"):
        return one("host")
    return value


def _clamp_timeouts(value):
    """Engine waits (stop/restart timeout) on a real container: at most 1 s, or a stop after a
    generated SIGSTOP would wait the full generated timeout (up to 10 minutes)."""
    if isinstance(value, dict):
        return {k: (min(v, 1) if k == "timeout" and isinstance(v, int) and not isinstance(v, bool) else _clamp_timeouts(v))
                for k, v in value.items()}
    return value


def _prepare(case, *, destinations: int, pick: int, real: bool) -> str | None:
    """destinations: 0 as generated, 1 loopback, 2 hostile. Returns "loopback" or "hostile"
    when a destination in the body was replaced."""
    values = {1: LOOPBACK, 2: HOSTILE}.get(destinations)
    replaced = None
    if values is not None and isinstance(case.body, (dict, list)):
        before = case.body
        case.body = _destinations(case.body, values, pick, path=case.operation.path)
        replaced = ("loopback", "hostile")[destinations - 1] if case.body != before else None
    if real and isinstance(case.body, dict):
        case.body = _clamp_timeouts(case.body)
    if real and isinstance(case.query, dict):
        case.query = _clamp_timeouts(case.query)
    return replaced


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
class Run:
    def __init__(self, schema, world):
        self.schema = schema
        self.world = world
        self.failures: list[str] = []
        self.calls: Counter = Counter()
        self.statuses: Counter = Counter()
        self.slow: list[str] = []
        self.signatures: Counter = Counter()
        self.examples: dict = {}
        self.conformance: dict = {}
        self.destinations: Counter = Counter()  # requests whose destinations were replaced, by kind
        self.task_failures: list[str] = []
        self._server_exception: str | None = None
        self._raw = ""

    # Django tells who raised; the traceback goes with the failure.
    def on_exception(self, sender, request=None, **kwargs):
        exc = sys.exc_info()[1]
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/.venv/" not in f.filename] if exc else []
        where = f" at {frames[-1].filename}:{frames[-1].lineno} ({frames[-1].name})" if frames else ""
        self._server_exception = f"{type(exc).__name__}: {str(exc)[:300]}{where}"

    def wsgi(self, app):
        """The Django WSGI app, keeping the raw request of the call in flight (for reports)."""
        import io

        def recording(environ, start_response):
            raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0) or -1)
            environ["wsgi.input"] = io.BytesIO(raw)
            self._raw = f"{environ.get('CONTENT_TYPE', '')} {raw[:400]!r}"
            return app(environ, start_response)

        return recording

    def send(self, actor: str, case, *, label: str | None = None):
        from schemathesis.checks import not_a_server_error
        from schemathesis.specs.openapi.checks import response_schema_conformance

        headers = self.world.headers(actor)
        self._server_exception = None
        started = time.monotonic()
        response = case.call(headers=headers)
        elapsed = time.monotonic() - started
        label = label or case.operation.label
        self.calls[(actor, label)] += 1
        self.statuses[response.status_code // 100] += 1
        body = "" if case.body.__class__.__name__ == "NotSet" else f" body={str(case.body)[:200]!r}"
        where = f"[{actor}] {case.method} {case.formatted_path}" + (f" query={case.query!r}" if case.query else "") + body
        if elapsed > SLOW_REQUEST_SECONDS:
            self.slow.append(f"{where} took {elapsed:.1f}s")
        try:
            case.validate_response(response, checks=[not_a_server_error], headers=headers)
        except (Exception, BaseExceptionGroup):  # every failing operation is reported, not only the first
            detail = self._server_exception or response.text[:300]
            self.failures.append(f"{where} -> {response.status_code}: {detail}")
            signature = (case.method, case.operation.path, detail)
            self.signatures[signature] += 1
            self.examples.setdefault(signature, f"{where}\n    raw request: {self._raw}")
            return response
        if case.method.upper() == case.operation.method.upper():  # an answer the schema describes
            try:
                case.validate_response(response, checks=[response_schema_conformance], headers=headers)
            except (Exception, BaseExceptionGroup) as exc:
                text = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
                self.conformance.setdefault((case.method, case.operation.path, response.status_code), f"{where}: {text[:700]}")
        return response


def _operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


def _coverage_cases(schema, operation, limit: int, *, unexpected_methods: bool):
    """A spread of the coverage phase's deterministic boundary cases (huge and negative
    numbers, empty and odd strings, wrong types, unexpected methods such as OPTIONS)."""
    from schemathesis.generation.modes import GenerationMode

    cases = list(schema.iter_coverage_cases(
        operation, generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=schema.config.generation_for(operation=operation),
    ))
    same = [c for c in cases if c.method.upper() == operation.method.upper()]
    other = [c for c in cases if unexpected_methods and c.method.upper() != operation.method.upper()
             and c.method.upper() in ("OPTIONS", "HEAD", "PUT", "PATCH", "DELETE", "POST", "GET")]
    step = max(1, len(same) // max(1, limit))
    return same[::step][:limit] + other


def _fuzz_operation(run: Run, actor: str, operation, ids: list[str], examples: int):
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis.generation.modes import GenerationMode

    param = next(iter(re.findall(r"\{([^}]+)\}", operation.path)), None)
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        if param and ids:
            strategies.extend(operation.as_strategy(generation_mode=mode, path_parameters={param: value}) for value in ids[:2])

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=not RANDOM, print_blob=False)
    @given(case=st.one_of(strategies), destinations=st.integers(0, 2), pick=st.integers(0, 5))
    def fuzz(case, destinations, pick):
        real = param is not None and case.path_parameters.get(param) in ids
        run.destinations[_prepare(case, destinations=destinations, pick=pick, real=real)] += 1
        run.send(actor, case)

    fuzz()


UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
# Writes on a host's images, volumes and networks act on everything of the shared testbed engines
# (a prune removes other tests' images and volumes), and a pull of a generated reference would
# make the engine itself, out of the guard's sight, reach a registry beyond loopback. They are
# tested on purpose-made objects instead (containers/tests/test_images_api.py,
# test_volumes_networks_api.py); their reads are fuzzed. Creating a container pulls its image the
# same way (containers/tests/test_container_create_api.py).
NOT_FUZZED = re.compile(r"^(POST|DELETE) /api/v1/(images|volumes|networks)/|^POST /api/v1/hosts/\{[^}]+\}/(images|volumes)/"
                        r"|^POST /api/v1/containers/$")
ENGINE_COLLECTIONS = {"containers", "hosts", "config", "updates", "update-runs", "auto-restart", "health-checks"}


def _exercise(run: Run, actor: str, *, coverage: int, examples: int, unexpected_methods: bool):
    import hypothesis.errors

    changed, engines = True, True
    for operation in _operations(run.schema):
        if ONLY and not re.search(ONLY, operation.label):
            continue
        if NOT_FUZZED.search(operation.label):
            continue
        began = time.monotonic()
        # The world is put back after any operation that may have changed it (reads do not),
        # containers on the engines only after operations that may have touched one.
        ids = run.world.ensure(operation.path, actor, full=changed, engines=engines)
        ensured = time.monotonic() - began
        changed = operation.method.upper() in UNSAFE
        engines = changed and collection_of(operation.path) in ENGINE_COLLECTIONS
        param = next(iter(re.findall(r"\{([^}]+)\}", operation.path)), None)
        if operation.method.upper() == "GET" and (ids or not param):  # a plain read of a real object, checked against the schema
            run.send(actor, operation.Case(path_parameters={param: ids[0]} if param and ids else {}), label=operation.label)
        for i, case in enumerate(_coverage_cases(run.schema, operation, coverage, unexpected_methods=unexpected_methods)):
            real = bool(param and ids and i % 2 == 0)
            if real:
                case.path_parameters = {**(case.path_parameters or {}), param: ids[(i // 2) % len(ids)]}
            run.destinations[_prepare(case, destinations=i % 3, pick=i // 3, real=real)] += 1
            run.send(actor, case, label=operation.label)
        try:
            _fuzz_operation(run, actor, operation, ids, examples)
        except hypothesis.errors.Unsatisfiable:
            pass
        print(f"  {actor:7} {operation.label:60} {run.calls[(actor, operation.label)]:4} requests "
              f"{time.monotonic() - began:6.1f}s (world {ensured:.1f}s)", file=sys.stderr)


@pytest.mark.timeout(900)
def test_every_operation_answers_without_server_errors_and_nothing_leaves_loopback(fuzz_world, settings):
    import schemathesis
    from celery.signals import task_failure
    from django.core.signals import got_request_exception
    from django.core.wsgi import get_wsgi_application

    from dockmon_site.celery import app as celery_app

    # Product-level guards first: requests on anyone's behalf, and engine connections.
    settings.DOCKMON_OUTBOUND_ALLOW = LOOPBACK_ALLOW
    settings.DOCKMON_ENGINE_ALLOW = LOOPBACK_ALLOW
    app = get_wsgi_application()
    started = time.monotonic()
    before = (celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates)
    celery_app.conf.update(task_always_eager=True, task_eager_propagates=False)
    guard = NetGuard()
    run = None
    try:
        with guard:
            run = Run(None, fuzz_world)
            schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", run.wsgi(app), headers=fuzz_world.headers("admin"))
            run.schema = schema
            got_request_exception.connect(run.on_exception)

            def on_task_failure(sender=None, exception=None, **kwargs):
                run.task_failures.append(f"{getattr(sender, 'name', sender)}: {exception!r}")

            task_failure.connect(on_task_failure, weak=False)
            try:
                # The superuser reaches every code path; the user granted host A takes the
                # permission paths (and must get 404 for host B's objects, never a 500).
                _exercise(run, "admin", coverage=COVERAGE, examples=EXAMPLES, unexpected_methods=True)
                _exercise(run, "granted", coverage=max(1, COVERAGE // 2), examples=max(3, EXAMPLES // 2 + 1), unexpected_methods=False)
                for actor in ("admin", "granted"):
                    _options_everywhere(run, actor)
                    _huge_numbers(run, actor)
                _far_destinations(run)
            finally:
                got_request_exception.disconnect(run.on_exception)
                task_failure.disconnect(on_task_failure)
    finally:
        celery_app.conf.update(task_always_eager=before[0], task_eager_propagates=before[1])
    elapsed = time.monotonic() - started
    operations = {label for _, label in run.calls}
    total = sum(run.calls.values())
    print(f"\nfuzz: {total} requests over {len(operations)} operations in {elapsed:.0f}s; statuses {dict(run.statuses)}; "
          f"blocked lookups {len(guard.lookups)}, ssh {len(guard.ssh_spawns)}; task failures {len(run.task_failures)}; "
          f"destinations replaced {dict(run.destinations)}", file=sys.stderr)
    for line in run.task_failures[:20]:
        print(f"  task failure: {line}", file=sys.stderr)
    _write_summary(run, guard, elapsed)
    assert not guard.violations, "contacted beyond loopback:\n" + "\n".join(guard.violations[:10])
    distinct = [f"{n}x {method} {path}: {detail}\n  e.g. {run.examples[(method, path, detail)]}"
                for (method, path, detail), n in run.signatures.most_common()]
    assert not run.failures, f"{len(run.failures)} server errors, {len(distinct)} distinct:\n" + "\n".join(distinct)
    assert not run.conformance, f"{len(run.conformance)} answers unlike the schema:\n" + "\n".join(
        f"{method} {path} {status}: {text}" for (method, path, status), text in sorted(run.conformance.items()))
    assert not run.slow, "\n".join(run.slow[:10])
    # Every operation but the engine-object writes left out above (each has its own tests).
    schema_ops = {operation.label for operation in _operations(schema) if not NOT_FUZZED.search(operation.label)}
    assert len(schema_ops) >= 100 and schema_ops <= operations, schema_ops - operations
    for actor in ("admin", "granted"):
        assert all(run.calls[(actor, label)] >= 3 for label in schema_ops), [
            label for label in schema_ops if run.calls[(actor, label)] < 3]
    # Destinations beyond loopback were really sent (and refused without a packet leaving).
    assert run.destinations["hostile"] >= 100 and run.destinations["loopback"] >= 30, run.destinations
    # Every class of answer showed up: the fuzzer reached success paths, not only refusals.
    assert run.statuses[2] > 100 and run.statuses[4] > 100, run.statuses


def _huge_numbers(run: Run, actor: str) -> None:
    """Every integer query parameter of every GET with numbers no database column holds (one
    such value once reached SQLite as an OverflowError)."""
    for operation in _operations(run.schema):
        if operation.method.upper() != "GET":
            continue
        ints = [p.name for p in operation.query if (p.definition.get("schema") or {}).get("type") in ("integer", "number")]
        param = next(iter(re.findall(r"\{([^}]+)\}", operation.path)), None)
        ids = run.world.ensure(operation.path, actor, full=False) if param else []
        if param and not ids:
            continue
        for name in ints:
            for value in (2**80, -(2**80)):
                case = operation.Case(path_parameters={param: ids[0]} if param and ids else {}, query={name: value})
                run.send(actor, case, label=operation.label)


def _far_destinations(run: Run) -> None:
    """Valid requests (as the superuser, who may do anything) that point everything DockMon can
    contact beyond loopback: each must be refused or fail, and no packet may leave (the guard)."""
    ops = {operation.label: operation for operation in _operations(run.schema)}
    a1 = run.world.ensure("/api/v1/containers/{key}/", "admin")[0]
    host_a = run.world.ensure("/api/v1/hosts/{id}/", "admin")[0]

    def call(label: str, body=None, **params):
        operation = ops[label]
        case = operation.Case(path_parameters=params or {}, **({} if body is None else {"body": body, "media_type": "application/json"}))
        run.destinations["hostile"] += 1
        response = run.send("admin", case, label=label)
        try:
            return response.json() if response.status_code in (200, 201, 202) else None
        except ValueError:
            return None

    for i, url in enumerate(HOSTILE["engine"]):
        host = call("POST /api/v1/hosts/", {"name": f"far-host-{i}", "url": url})
        if host:
            call("POST /api/v1/hosts/{id}/test/", id=host["id"])
            call("GET /api/v1/hosts/{id}/disk-usage/", id=host["id"])
            call("POST /api/v1/updates/check/", {"hosts": [host["id"]]})
            call("DELETE /api/v1/hosts/{id}/", id=host["id"])
        call("PATCH /api/v1/hosts/{id}/", {"url": url}, id=host_a)
        call("POST /api/v1/hosts/{id}/test/", id=host_a)
    run.world.ensure("/api/v1/hosts/", "admin")  # host A back on its engine
    channels = [("webhook", "url"), ("slack", "webhook_url"), ("discord", "webhook_url"), ("gotify", "base_url"),
                ("ntfy", "base_url"), ("apprise", "url")]
    extra = {"gotify": {"app_token": "t"}, "ntfy": {"topic": "t"}}
    for i, url in enumerate(HOSTILE["http"]):
        for method in ("GET", "POST"):
            check = call("POST /api/v1/health-checks/", {"container": a1, "name": f"far-{i}-{method}", "url": url, "method": method})
            if check:
                call("POST /api/v1/health-checks/{id}/test/", id=check["id"])
        for kind, field in channels:
            target = url.replace("http", "json", 1) if kind == "apprise" else url
            channel = call("POST /api/v1/notification-channels/",
                           {"name": f"far-{kind}-{i}", "kind": kind, "config": {field: target, **extra.get(kind, {})}})
            if channel:
                call("POST /api/v1/notification-channels/{id}/test/", id=channel["id"])
    for i, host in enumerate(HOSTILE["host"]):
        channel = call("POST /api/v1/notification-channels/",
                       {"name": f"far-email-{i}", "kind": "email", "config": {"to": "ops@example.com", "host": host, "port": 25}})
        if channel:
            call("POST /api/v1/notification-channels/{id}/test/", id=channel["id"])
    for registry in HOSTILE["registry"]:
        call("POST /api/v1/registry-credentials/", {"registry": registry, "username": "u", "password": "p"})
    document = {"dockmon_config": 1, "hosts": [{"name": f"far-import-{i}", "url": url} for i, url in enumerate(HOSTILE["engine"])],
                "notification_channels": [{"name": "far-import-hook", "kind": "webhook", "config": {"url": HOSTILE["http"][0]}}]}
    call("POST /api/v1/config/import/", document)


def _write_summary(run: Run, guard: NetGuard, elapsed: float) -> None:
    from testkit import testing

    labels = sorted({label for _, label in run.calls})
    lines = [f"{sum(run.calls.values())} requests in {elapsed:.0f}s; statuses {dict(sorted(run.statuses.items()))}; "
             f"blocked lookups {len(guard.lookups)}, refused ssh {len(guard.ssh_spawns)}, violations {len(guard.violations)}",
             f"{'operation':62} {'admin':>6} {'granted':>8}"]
    lines += [f"{label:62} {run.calls[('admin', label)]:6} {run.calls[('granted', label)]:8}" for label in labels]
    lines += ["", "refused lookups and ssh (not violations):"] + [item.split("\n")[0] for item in guard.lookups + guard.ssh_spawns]
    testing.log_dir().mkdir(parents=True, exist_ok=True)
    (testing.log_dir() / "api-fuzz.txt").write_text("\n".join(lines) + "\n")


def _options_everywhere(run: Run, actor: str):
    """OPTIONS on every path (the schema lists none): with real ids and with odd ones."""
    odd = ["0", "x", "99999999999999999999999", "%00"]
    paths = sorted({operation.path for operation in _operations(run.schema)})
    for path in paths:
        operation = next(op for op in _operations(run.schema) if op.path == path)
        param = next(iter(re.findall(r"\{([^}]+)\}", path)), None)
        values = [None] if param is None else run.world.ensure(path, actor, full=False)[:2] + odd
        for value in values:
            case = operation.Case(method="OPTIONS", path_parameters={param: value} if param else {})
            run.send(actor, case, label=f"OPTIONS {path}")


@pytest.fixture
def fuzz_world(transactional_db, alpha, beta, unique):
    from dockmon_site.tests.fuzz_world import FuzzWorld

    world = FuzzWorld(alpha, beta, unique)
    world.ensure("/api/v1/hosts/", "admin")
    yield world
    world.remove_containers()
