"""A small world for permission tests: two hosts, containers and events on each, one object of
every host- or container-bound model of the other apps on each side, and the people of the
matrix (administrator, a user granted host A, a user granted one container of host A, a user
granted only host B)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from accounts.models import APIToken
from containers.models import Container, DiskUsage, DockerHost, Event, ProfileSession

FAKE_KEY = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIK0secretsecretsecretsecretsecret\n-----END PRIVATE KEY-----\n"


@dataclass
class World:
    host_a: DockerHost
    host_b: DockerHost
    a1: Container
    a2: Container
    b1: Container
    event_a1: Event
    event_a2: Event
    event_b1: Event
    admin: object
    granted: object
    container_granted: object
    outsider: object
    # Route prefix -> id of the object of that collection bound to a1 (host A) / b1 (host B).
    a_objects: dict[str, str] = field(default_factory=dict)
    b_objects: dict[str, str] = field(default_factory=dict)
    # Texts of the bound objects: those of a1, those of host A but no container of it, of b1.
    texts_a1: list[str] = field(default_factory=list)
    texts_a_host_only: list[str] = field(default_factory=list)
    texts_b: list[str] = field(default_factory=list)
    # A rule with scope "all" (visible to everyone who may read rules) with an open alert on
    # each host: its open-alert count must only count what the reader may see.
    rule_all: object = None
    host_window: object = None

    def client(self, who: str | None) -> APIClient:
        """An API client authenticated with a real token (None: anonymous)."""
        client = APIClient()
        if who is not None:
            _, raw = APIToken.issue(getattr(self, who), name="matrix")
            client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
        return client

    def identifiers_of_a(self) -> list[str]:
        """Text that must never reach someone who may not see host A."""
        return [str(self.host_a.pk), self.host_a.name, self.a1.key, self.a1.name, self.a2.key, self.a2.name, self.event_a1.message,
                *self.texts_a1, *self.texts_a_host_only]

    def identifiers_of_b(self) -> list[str]:
        return [str(self.host_b.pk), self.host_b.name, self.b1.key, self.b1.name, self.event_b1.message, *self.texts_b]

    def identifiers_beyond_a1(self) -> list[str]:
        """What of host A the user granted only a1 must not see."""
        return [self.a2.key, self.a2.name, self.event_a2.message, *self.texts_a_host_only]


def _container(host, name):
    return Container.objects.create(
        host=host, short_id=name.encode().hex()[:12].ljust(12, "0"), container_id=name.encode().hex().ljust(64, "0"),
        name=name, image="dockmon/busybox:latest", state="running",
    )


@pytest.fixture
def world(db, django_user_model, alpha, unique):
    # Rows only: nothing here contacts an engine (the matrix does not run operations).
    host_a = DockerHost.objects.create(name=f"hosta-{unique}", url=alpha.unix_url, tls_key=FAKE_KEY)
    host_b = DockerHost.objects.create(name=f"hostb-{unique}", url=alpha.tcp_url)
    a1, a2 = _container(host_a, f"alphaone{unique}"), _container(host_a, f"alphatwo{unique}")
    b1 = _container(host_b, f"betaone{unique}")
    events = [
        Event.objects.create(category="container", type="container.state", host=host_a, container_key=c.key,
                             container_name=c.name, message=f"event-of-{c.name}")
        for c in (a1, a2, b1)
    ]
    # No passwords: these people use tokens, and hashing four passwords costs seconds per test.
    admin = django_user_model.objects.create_superuser(f"admin{unique}", password=None)
    granted = django_user_model.objects.create_user(f"granted{unique}")
    container_granted = django_user_model.objects.create_user(f"cgranted{unique}")
    outsider = django_user_model.objects.create_user(f"outsider{unique}")
    assign_perm("containers.view_dockerhost", granted, host_a)
    assign_perm("containers.view_container", container_granted, a1)
    assign_perm("containers.view_dockerhost", outsider, host_b)
    events[2].host = host_b
    events[2].save()
    world = World(host_a, host_b, a1, a2, b1, *events, admin, granted, container_granted, outsider)
    # Alert rules are read by the model permission (a role); everyone here may read them, so
    # what narrows the rules they get is the hosts and containers alone.
    from django.contrib.auth.models import Permission

    read_rules = Permission.objects.get(content_type__app_label="alerts", codename="view_alertrule")
    for person in (granted, container_granted, outsider):
        person.user_permissions.add(read_rules)
    _bound_objects(world, unique)
    # Images, volumes and networks are read live from the engine (alpha, which both hosts
    # reach): a real image and network; volumes appear in unsafe routes only, which are refused
    # before the engine is asked, so a name is enough.
    image = alpha.docker("image", "inspect", "-f", "{{.Id}}", "dockmon/busybox:latest").stdout.strip().removeprefix("sha256:")[:12]
    network = alpha.docker("network", "inspect", "-f", "{{.Id}}", "none").stdout.strip()[:12]
    for objects, host in ((world.a_objects, host_a), (world.b_objects, host_b)):
        objects["/api/v1/images/"] = f"{host.pk}:{image}"
        objects["/api/v1/networks/"] = f"{host.pk}:{network}"
        objects["/api/v1/volumes/"] = f"{host.pk}:matrixvolume{unique}"
    return world


def _bound_objects(world: World, unique: str) -> None:
    """One object of every host/container-bound model on a1 and on b1 (and a few of host A
    alone), named so that their texts can be looked for in any response."""
    from django.utils import timezone

    from alerts.models import Alert, AlertHistory, AlertRule, MaintenanceWindow
    from healthchecks.models import AutoRestartConfig, CheckResult, HealthCheck, RestartAttempt
    from stacks.models import Stack, StackRun
    from updates.models import ContainerUpdate, UpdatePolicy, UpdateRun

    now = timezone.now()
    rule_all = AlertRule.objects.create(name=f"ruleall{unique}", kind="container_stopped", scope="all")
    world.rule_all = rule_all
    for side, host, container in (("A", world.host_a, world.a1), ("B", world.host_b, world.b1)):
        t = {name: f"{name}{side}{unique}" for name in ("hc", "hcerr", "rule", "alerttitle", "alertmsg", "note", "window",
                                                          "img", "runlog", "policynote", "attempt", "profile")}
        check = HealthCheck.objects.create(container=container, name=t["hc"], url="http://127.0.0.1:9/", enabled=False)
        CheckResult.objects.create(health_check=check, status="failure", error=t["hcerr"])
        rule = AlertRule.objects.create(name=t["rule"], kind="container_stopped", scope="containers")
        rule.containers.set([container])
        alert = Alert.objects.create(rule=rule_all, kind="container_stopped", dedup_key=f"matrix:{container.key}", scope_type="container",
                                     scope_id=container.key, host=host, container=container, subject_name=container.name,
                                     title=t["alerttitle"], message=t["alertmsg"])
        AlertHistory.objects.create(alert=alert, action="note", text=t["note"])
        window = MaintenanceWindow.objects.create(name=t["window"], container=container, starts_at=now, ends_at=now + timedelta(hours=1))
        ContainerUpdate.objects.create(container=container, image=t["img"], latest_version="9.9")
        run = UpdateRun.objects.create(host=host, container=container, container_name=container.name, old_key=container.key,
                                       status="succeeded", stage="done", log=t["runlog"])
        policy = UpdatePolicy.objects.create(container=container, policy="warn", note=t["policynote"])
        AutoRestartConfig.objects.create(container=container)
        RestartAttempt.objects.create(container=container, trigger="die", attempt=1, due_at=now, reason=t["attempt"])
        profile = ProfileSession.objects.create(container_key=container.key, container_name=container.name, host=host,
                                                end_reason=t["profile"])
        DiskUsage.objects.create(host=host, images_count=7)
        # Stacks belong to a host as a whole: one container of the host does not show them.
        stack = Stack.objects.create(host=host, name=f"stack{side.lower()}{unique}", compose=f"# stackfile{side}{unique}\n")
        stack_run = StackRun.objects.create(stack=stack, host=host, stack_name=stack.name, kind="deploy", status="failed",
                                            log=f"stackrunlog{side}{unique}")
        stack_texts = [stack.name, f"stackfile{side}{unique}", stack_run.log]
        objects = {
            "/api/v1/hosts/": str(host.pk),
            "/api/v1/containers/": container.key,
            "/api/v1/events/": str((world.event_a1 if side == "A" else world.event_b1).pk),
            "/api/v1/health-checks/": str(check.pk),
            "/api/v1/alert-rules/": str(rule.pk),
            "/api/v1/alerts/": str(alert.pk),
            "/api/v1/auto-restart/": container.key,
            "/api/v1/maintenance-windows/": str(window.pk),
            "/api/v1/profiles/": str(profile.pk),
            "/api/v1/update-policies/": str(policy.pk),
            "/api/v1/update-runs/": str(run.pk),
            "/api/v1/updates/": container.key,
            "/api/v1/stacks/": str(stack.pk),
            "/api/v1/stack-runs/": str(stack_run.pk),
        }
        if side == "A":
            world.a_objects, world.texts_a1, stack_texts_a = objects, list(t.values()), stack_texts
        else:
            world.b_objects, world.texts_b = objects, [*t.values(), *stack_texts]
    # Of host A but of no container the a1-only user sees: a host-wide window, a rule naming
    # both containers of A, and a2's records.
    host_window = MaintenanceWindow.objects.create(name=f"hostwindowA{unique}", host=world.host_a, starts_at=now, ends_at=now)
    both = AlertRule.objects.create(name=f"ruleboth{unique}", kind="container_stopped", scope="containers")
    both.containers.set([world.a1, world.a2])
    HealthCheck.objects.create(container=world.a2, name=f"hcatwo{unique}", url="http://127.0.0.1:9/", enabled=False)
    world.texts_a_host_only = [host_window.name, both.name, f"hcatwo{unique}", *stack_texts_a]
    world.host_window = host_window


@pytest.fixture
def fresh_lockout():
    """Forget failed-login counts for the usernames and addresses a test uses (and after it)."""
    from accounts import lockout

    used: list[tuple[str | None, str | None]] = []

    def forget(username=None, address=None):
        used.append((username, address))
        lockout.reset(username=username, address=address)

    yield forget
    for username, address in used:
        lockout.reset(username=username, address=address)
