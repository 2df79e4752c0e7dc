"""The world the API fuzzer (test_api_fuzz.py) works on: real objects behind every route.

Two hosts (alpha over its unix socket: host A; beta over TLS: host B), one running container
on each (real, on the testbed's engines, labelled so that they are found again after a rename
or an update), and one object of every other kind bound to each container. A superuser and a
user granted every right on host A only (so host B's objects must stay invisible to them).

The fuzzer deletes, renames, kills and updates what it is given: `ensure()` puts the world
back before each operation (idempotent, by name and label) and returns the ids the operation's
path parameter can take, host A's object first and host B's second.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from guardian.models import UserObjectPermission
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from accounts.models import APIToken


def _image() -> str:
    """The seeded image on this run's testbed (each database pass has its own registry port)."""
    from testkit.testbed import Testbed

    return f"{Testbed.load().registry}/demo/app:1.0"

# A container that stops at once on SIGTERM (sleep as PID 1 would make every stop wait out its timeout).
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]
HOST_RIGHTS = ("view", "operate", "update", "change")


def collection_of(path: str) -> str:
    return path.removeprefix("/api/v1/").split("/", 1)[0]


class FuzzWorld:
    def __init__(self, alpha, beta, unique: str):
        self.alpha, self.beta, self.unique = alpha, beta, unique
        self.label = f"dockmon-fuzz-{unique}"
        self.raw_tokens: dict[str, str] = {}
        self.users: dict[str, object] = {}
        self._clients: dict = {}
        self._seeded: dict = {}
        self._containers: list[str] = []
        self._shared: dict = {}

    # -- people ------------------------------------------------------------------------------
    def headers(self, actor: str) -> dict:
        return {"Authorization": f"Token {self.raw_tokens[actor]}"}

    def _person(self, actor: str, *, superuser: bool):
        User = get_user_model()
        user = User.objects.filter(username=f"fuzz-{actor}-{self.unique}").first()
        if user is None:
            user = User.objects.create_user(f"fuzz-{actor}-{self.unique}", password=None)
        User.objects.filter(pk=user.pk).update(is_active=True, is_superuser=superuser, is_staff=superuser)
        user.refresh_from_db()
        if not superuser:
            # Whatever the administrator's pass granted or joined: back to host A only.
            user.groups.clear()
            user.user_permissions.clear()
            UserObjectPermission.objects.filter(user=user).delete()
        raw = self.raw_tokens.get(actor)
        token = APIToken.authenticate(raw) if raw else None
        if token is None or token.read_only or token.user_id != user.pk:
            _, self.raw_tokens[actor] = APIToken.issue(user, name=f"fuzz-{actor}")
        self.users[actor] = user
        return user

    # -- engines -----------------------------------------------------------------------------
    def _host(self, side: str):
        from containers.models import DockerHost

        engine = self.alpha if side == "a" else self.beta
        fields = {"url": engine.unix_url, "tls_ca": "", "tls_cert": "", "tls_key": "", "enabled": True}
        if side == "b":
            fields["url"] = engine.tcp_url
            for name, part in (("tls_ca", "ca"), ("tls_cert", "cert"), ("tls_key", "key")):
                with open(engine.tls[part]) as f:
                    fields[name] = f.read()
        name = f"fuzz-{side}-{self.unique}"
        host = DockerHost.objects.filter(name=name).first()
        if host is None:
            # A host re-pointed by the fuzzer may hold this URL now: the URL belongs to this one.
            DockerHost.objects.filter(url=fields["url"]).exclude(name=name).filter(name__startswith="fuzz-").delete()
            return DockerHost.objects.create(name=name, **fields)
        changed = [k for k, v in fields.items() if getattr(host, k) != v]
        if changed:
            for k in changed:
                setattr(host, k, fields[k])
            host.save()
        return host

    def _container(self, host, side: str):
        """The side's running container on its engine, recorded in the database."""
        from containers import engine, services
        from containers.engine import facts as engine_facts

        label = f"{self.label}-{side}"
        client = engine.client_for_host(host, timeout=60)  # the engine may be busy with another test
        try:
            found = client.api.containers(all=True, filters={"label": f"dockmon.fuzz={label}"})
            running = [c["Id"] for c in found if c["State"] == "running"]
            paused = [c["Id"] for c in found if c["State"] == "paused"]
            if running:
                container_id = running[0]
            elif paused:
                container_id = paused[0]
                client.api.unpause(container_id)
            else:
                for old in found:
                    client.api.remove_container(old["Id"], force=True)
                created = client.api.create_container(
                    _image(), COMMAND, name=f"fuzz-{side}-{self.unique}-{uuid.uuid4().hex[:6]}", labels={"dockmon.fuzz": label},
                    host_config=client.api.create_host_config(network_mode="none"),
                )
                container_id = created["Id"]
                client.api.start(container_id)
            return services.apply_facts(host.pk, engine_facts.inspect_container(client, container_id), log=False)
        finally:
            client.close()

    def remove_containers(self) -> None:
        for side, engine in (("a", self.alpha), ("b", self.beta)):
            ids = engine.docker("ps", "-aq", "--filter", f"label=dockmon.fuzz={self.label}-{side}", check=False).stdout.split()
            if ids:
                engine.docker("rm", "-f", *ids, check=False)

    # -- the world ---------------------------------------------------------------------------
    def ensure(self, path: str, actor: str, *, full: bool = True, engines: bool = True) -> list[str]:
        """Put the world back and return the ids `path`'s parameter may take: host A's object,
        host B's, then shared and listed ones. full=False: only the people and their tokens
        (after reads); engines=False: the database only (after writes that cannot have touched
        a container on an engine)."""
        from containers.models import Container

        self._person("admin", superuser=True)
        granted = self._person("granted", superuser=False)
        if full or not self._seeded:
            host_a, host_b = self._host("a"), self._host("b")
            rows = {c.pk: c for c in Container.objects.filter(pk__in=self._containers, removed_at__isnull=True)}
            if engines or len(rows) < 2:
                a1, b1 = self._container(host_a, "a"), self._container(host_b, "b")
                self._containers = [a1.pk, b1.pk]
            else:
                a1, b1 = (rows[pk] for pk in self._containers)
            self._seeded = {side: self._bound(side, host, container) for side, host, container in (("a", host_a, a1), ("b", host_b, b1))}
            self._shared = self._unbound(a1)
        for right in HOST_RIGHTS:
            assign_perm(f"containers.{right}_dockerhost", granted, self._seeded["a"]["host"])
        name = collection_of(path)
        ids = [self._seeded["a"].get(name), self._seeded["b"].get(name), *self._shared.get(name, [])]
        ids += self._listed(path)
        # The acting person's own account and token are left alone (they would lock the run out).
        own = {str(self.users[actor].pk)} if name == "users" else set()
        if name == "tokens":
            own = {str(t.pk) for t in APIToken.objects.filter(user=self.users[actor], name=f"fuzz-{actor}")}
        return list(dict.fromkeys(str(i) for i in ids if i is not None and str(i) not in own))[:6]

    def _listed(self, path: str) -> list[str]:
        """Ids the administrator's list of this collection shows (grants, audit rows, jobs...)."""
        name = collection_of(path)
        if "{" not in path:
            return []
        client = self._clients.get("admin")
        if client is None:
            client = self._clients["admin"] = APIClient()
        client.credentials(HTTP_AUTHORIZATION=self.headers("admin")["Authorization"])
        response = client.get(f"/api/v1/{name}/", {"page_size": 5})
        if response.status_code != 200 or not response["Content-Type"].startswith("application/json"):
            return []
        data = response.json()
        rows = data.get("results", []) if isinstance(data, dict) else data
        param = re.findall(r"\{([^}]+)\}", path)[0]
        return [row.get(param, row.get("id")) for row in rows if isinstance(row, dict)]

    def _bound(self, side: str, host, container) -> dict[str, str]:
        from alerts.models import Alert, AlertHistory, AlertRule, MaintenanceWindow
        from containers.models import DiskUsage, Event, ProfileSession
        from healthchecks.models import AutoRestartConfig, CheckResult, HealthCheck, RestartAttempt
        from updates.models import ContainerUpdate, UpdatePolicy, UpdateRun

        now = timezone.now()
        tag = f"{side}-{self.unique}"
        event = Event.objects.filter(message=f"fuzz-event-{tag}").first() or Event.objects.create(
            category="container", type="container.state", host=host, container_key=container.key,
            container_name=container.name, message=f"fuzz-event-{tag}")
        check = HealthCheck.objects.filter(container=container, name=f"fuzz-hc-{tag}").first()
        if check is None:
            check = HealthCheck.objects.create(container=container, name=f"fuzz-hc-{tag}", url="http://127.0.0.1:9/", enabled=False)
            CheckResult.objects.create(health_check=check, status="failure", error="refused")
        rule, _ = AlertRule.objects.get_or_create(name=f"fuzz-rule-{tag}", defaults={"kind": "container_stopped", "scope": "containers"})
        rule.containers.add(container)
        alert = Alert.objects.filter(dedup_key=f"fuzz:{tag}").first()
        if alert is None:
            alert = Alert.objects.create(rule=rule, kind="container_stopped", dedup_key=f"fuzz:{tag}", scope_type="container",
                                         scope_id=container.key, host=host, container=container, subject_name=container.name,
                                         title=f"fuzz-alert-{tag}", message="stopped")
            AlertHistory.objects.create(alert=alert, action="note", text="seeded")
        window = MaintenanceWindow.objects.filter(name=f"fuzz-window-{tag}").first() or MaintenanceWindow.objects.create(
            name=f"fuzz-window-{tag}", container=container, starts_at=now - timedelta(days=2), ends_at=now - timedelta(days=1))
        ContainerUpdate.objects.get_or_create(container=container, defaults={"image": _image()})
        run = UpdateRun.objects.filter(container_name=f"fuzz-run-{tag}").first() or UpdateRun.objects.create(
            host=host, container=container, container_name=f"fuzz-run-{tag}", old_key=container.key, status="succeeded",
            stage="done", log="seeded")
        policy, _ = UpdatePolicy.objects.get_or_create(container=container, defaults={"policy": "warn", "note": "fuzz"})
        AutoRestartConfig.objects.get_or_create(container=container)
        if not RestartAttempt.objects.filter(container=container).exists():
            RestartAttempt.objects.create(container=container, trigger="die", attempt=1, due_at=now + timedelta(days=1), reason="seeded")
        profile = ProfileSession.objects.filter(end_reason=f"fuzz-{side}", host=host).first() or ProfileSession.objects.create(
            container_key=container.key, container_name=container.name, host=host, end_reason=f"fuzz-{side}", ended_at=now)
        if not DiskUsage.objects.filter(host=host).exists():
            DiskUsage.objects.create(host=host, images_count=1)
        # A stack without services: a generated deploy, stop or delete runs compose on the engine
        # and finds nothing to create or remove.
        from stacks.models import Stack, StackRun

        stack, _ = Stack.objects.get_or_create(host=host, name=f"fuzz-stack-{tag}", defaults={"compose": "services: {}\n"})
        stack_run = StackRun.objects.filter(stack_name=stack.name).first() or StackRun.objects.create(
            stack=stack, host=host, stack_name=stack.name, kind="deploy", status="succeeded", log="seeded")
        return {
            "host": host, "hosts": str(host.pk), "containers": container.key, "events": str(event.pk), "health-checks": str(check.pk),
            "alert-rules": str(rule.pk), "alerts": str(alert.pk), "auto-restart": container.key,
            "maintenance-windows": str(window.pk), "profiles": str(profile.pk), "update-policies": str(policy.pk),
            "update-runs": str(run.pk), "updates": container.key, "stacks": str(stack.pk), "stack-runs": str(stack_run.pk),
        }

    def _unbound(self, a1) -> dict[str, list[str]]:
        from alerts.models import NotificationChannel
        from healthchecks.models import HealthCheck
        from updates.models import PolicyCategory, RegistryCredential

        User = get_user_model()
        victim = User.objects.filter(username=f"fuzz-victim-{self.unique}").first() or User.objects.create_user(
            f"fuzz-victim-{self.unique}", password=None)
        group, _ = Group.objects.get_or_create(name=f"fuzz-group-{self.unique}")
        # Destinations beyond loopback stored directly (as from before the outbound policy, or an
        # import): running, testing or sending to them must be refused, not attempted.
        hostile = {}
        for kind, config in (("webhook", {"url": "http://10.11.12.13/hook"}), ("slack", {"webhook_url": "https://hooks.example.com/x"}),
                             ("email", {"host": "smtp.example.com", "port": 25, "to": "a@example.com"})):
            NotificationChannel.objects.update_or_create(name=f"fuzz-{kind}-far-{self.unique}", defaults={"kind": kind, "config": config})
            hostile[kind] = NotificationChannel.objects.get(name=f"fuzz-{kind}-far-{self.unique}").pk
        far_check, _ = HealthCheck.objects.update_or_create(
            container=a1, name=f"fuzz-hc-far-{self.unique}", defaults={"url": "http://10.11.12.13/health", "enabled": False})
        channel, _ = NotificationChannel.objects.update_or_create(
            name=f"fuzz-channel-{self.unique}", defaults={"kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}})
        credential, _ = RegistryCredential.objects.get_or_create(registry="127.0.0.1:9", defaults={"username": "fuzz"})
        category = PolicyCategory.objects.order_by("pk").first()
        from containers.models import BulkJob

        jobs = []
        for actor in ("admin", "granted"):
            job = BulkJob.objects.filter(user=self.users[actor]).first() or BulkJob.objects.create(
                action="start", user=self.users[actor], status="finished", total=0)
            jobs.append(str(job.pk))
        spare = {}
        for actor in ("admin", "granted"):
            token = APIToken.objects.filter(user=self.users[actor], name="fuzz-spare", revoked_at__isnull=True).first()
            spare[actor] = token or APIToken.issue(self.users[actor], name="fuzz-spare")[0]
        grant = UserObjectPermission.objects.filter(user=victim).first()
        if grant is None:
            from containers.models import DockerHost

            grant = assign_perm("containers.view_dockerhost", victim, DockerHost.objects.get(name=f"fuzz-a-{self.unique}"))
        return {
            "users": [str(victim.pk)], "groups": [str(group.pk)], "health-checks": [str(far_check.pk)],
            "notification-channels": [str(channel.pk), *(str(pk) for pk in hostile.values())],
            "registry-credentials": [str(credential.pk)], "update-policy-categories": [str(category.pk)] if category else [],
            "tokens": [str(spare["granted"].pk), str(spare["admin"].pk)], "permissions": [f"u{grant.pk}"], "bulk-jobs": jobs,
        }
