"""Update runs through the API (and auto-update selection): an administrator, users granted the
container (update / only view), and an outsider. No run reaches an engine here: the runs are
queued on a queue of this test's own that no worker reads (removed afterwards)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.test import override_settings
from django.utils import timezone
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from containers.models import Container, DockerHost
from updates import autoupdate, executor, runqueue
from updates.choices import RunStatus, UpdateStatus
from updates.models import AutoUpdate, ContainerUpdate, RolledBackDigest, UpdatePolicy, UpdateRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded_categories")]


@pytest.fixture(autouse=True)
def private_queue():
    queue = f"dmtest-runs-{uuid.uuid4().hex[:8]}"
    with override_settings(DOCKMON_UPDATE_QUEUE=queue):
        yield queue
    from dockmon_site.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _container(host, name, image="127.0.0.1:5000/demo/app:1.0", **extra):
    short = uuid.uuid4().hex[:12]
    container = Container.objects.create(host=host, short_id=short, container_id=short + "0" * 52, name=name, image=image,
                                         state="running", **extra)
    ContainerUpdate.objects.create(container=container, status=UpdateStatus.UPDATE_AVAILABLE, update_available=True,
                                   image=image, current_digest="sha256:" + "a" * 64, latest_digest="sha256:" + "b" * 64)
    return container


@pytest.fixture
def world(django_user_model):
    host = DockerHost.objects.create(name="runs-host", url="unix:///nonexistent-runs.sock")
    target, other = _container(host, "target"), _container(host, "other")
    updater = django_user_model.objects.create_user("runs-updater", password="pw-updater-12")
    viewer = django_user_model.objects.create_user("runs-viewer", password="pw-viewer-123")
    outsider = django_user_model.objects.create_user("runs-outsider", password="pw-outsider-1")
    assign_perm("containers.view_container", updater, target)
    assign_perm("containers.update_container", updater, target)
    assign_perm("containers.view_container", viewer, target)
    return {"host": host, "target": target, "other": other, "updater": updater, "viewer": viewer, "outsider": outsider}


def test_manual_update_request_per_person(world, admin_client):
    key = world["target"].key
    assert _client(world["outsider"]).post(f"/api/v1/containers/{key}/update/", {}, format="json").status_code == 404
    refused = _client(world["viewer"]).post(f"/api/v1/containers/{key}/update/", {}, format="json")
    assert refused.status_code == 403 and "may not update" in refused.json()["detail"]
    response = _client(world["updater"]).post(f"/api/v1/containers/{key}/update/", {"health_timeout": 30}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    run = UpdateRun.objects.get(pk=body["run"])
    assert body["status"] == "pending" and body["old_key"] == key and body["new_key"] == ""
    assert run.requested_by == world["updater"] and run.health_timeout == 30 and run.queued_at is not None
    # A second request while it is pending: refused, and it says which run is under way.
    again = admin_client.post(f"/api/v1/containers/{key}/update/", {}, format="json")
    assert again.status_code == 409 and again.json()["run"] == run.pk
    # The run: visible to admin and the granted user, not to the outsider.
    for client in (admin_client, _client(world["updater"]), _client(world["viewer"])):
        detail = client.get(f"/api/v1/update-runs/{run.pk}/").json()
        assert {"status", "stage", "log", "old_key", "new_key"} <= set(detail) and detail["status"] == "pending"
    assert _client(world["outsider"]).get(f"/api/v1/update-runs/{run.pk}/").status_code == 404
    assert _client(world["outsider"]).get("/api/v1/update-runs/").json()["count"] == 0
    assert admin_client.get(f"/api/v1/update-runs/?container={key}").json()["count"] == 1
    assert admin_client.get(f"/api/v1/update-runs/?container={world['other'].key}").json()["count"] == 0


def test_invalid_input_is_400(world, admin_client):
    response = admin_client.post(f"/api/v1/containers/{world['target'].key}/update/", {"health_timeout": 0}, format="json")
    assert response.status_code == 400 and "health_timeout" in response.json()
    assert admin_client.post("/api/v1/update-runs/bulk/", {"containers": []}, format="json").status_code == 400


def test_policies_warn_needs_force_block_and_self_refuse(world, admin_client):
    target = world["target"]
    UpdatePolicy.objects.create(container=target, policy="warn")
    response = admin_client.post(f"/api/v1/containers/{target.key}/update/", {}, format="json")
    assert response.status_code == 409 and "force" in response.json()["detail"]
    assert admin_client.post(f"/api/v1/containers/{target.key}/update/", {"force": True}, format="json").status_code == 202

    other = world["other"]
    UpdatePolicy.objects.create(container=other, policy="block")
    response = admin_client.post(f"/api/v1/containers/{other.key}/update/", {"force": True}, format="json")
    assert response.status_code == 403 and "blocks" in response.json()["detail"]

    me = _container(world["host"], "dockmon-web", image="127.0.0.1:5000/ops/dockmon:1", labels={"dockmon.self": "true"})
    response = admin_client.post(f"/api/v1/containers/{me.key}/update/", {"force": True}, format="json")
    assert response.status_code == 403 and "never updates itself" in response.json()["detail"]

    pinned = _container(world["host"], "pinned", image="127.0.0.1:5000/demo/app@sha256:" + "c" * 64)
    assert admin_client.post(f"/api/v1/containers/{pinned.key}/update/", {}, format="json").status_code == 400


def test_bulk_update_starts_at_most_three_per_host(world, admin_client):
    keys = [world["target"].key, world["other"].key] + [_container(world["host"], f"bulk-{i}").key for i in range(4)]
    response = admin_client.post("/api/v1/update-runs/bulk/", {"containers": keys + ["nope:000000000000"]}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert len(body["runs"]) == 6 and body["refused"] == [{"key": "nope:000000000000", "status": 404, "error": "Not found."}]
    runs = UpdateRun.objects.filter(batch=body["batch"])
    assert runs.filter(queued_at__isnull=False).count() == 3, "the per-host limit"
    assert runs.filter(status=RunStatus.PENDING).count() == 6
    # The granted user's bulk: only the container granted goes through.
    UpdateRun.objects.all().delete()
    body = _client(world["updater"]).post("/api/v1/update-runs/bulk/", {"containers": keys[:2]}, format="json").json()
    assert [r["old_key"] for r in body["runs"]] == [keys[0]] and body["refused"][0]["status"] == 404


def test_auto_update_setting_needs_the_update_right(world, admin_client):
    key = world["target"].key
    url = f"/api/v1/containers/{key}/settings/"
    assert _client(world["viewer"]).patch(url, {"auto_update": True}, format="json").status_code == 403
    window = {"days": [5, 6], "start": "22:00", "end": "04:00", "timezone": "Europe/Berlin"}
    response = _client(world["updater"]).patch(url, {"auto_update": True, "auto_update_window": window}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["auto_update"] is True and response.json()["auto_update_window"] == window
    assert _client(world["outsider"]).patch(url, {"auto_update": True}, format="json").status_code == 404
    bad = admin_client.patch(url, {"auto_update_window": {"start": "10:00", "end": "10:00", "timezone": "Mars/Base"}}, format="json")
    assert bad.status_code == 400 and "auto_update_window" in bad.json()


def test_update_policy_is_a_container_setting(world, admin_client):
    """PATCH /containers/{key}/settings/ {"update_policy"} (design.md's settings contract) sets
    rule 2 of the priority order; "" gives the decision back to the labels/categories/default."""
    from updates import policies

    target = world["target"]
    url = f"/api/v1/containers/{target.key}/settings/"
    assert admin_client.get(url).json()["update_policy"] == ""
    response = admin_client.patch(url, {"update_policy": "block"}, format="json")
    assert response.status_code == 200 and response.json()["update_policy"] == "block"
    assert UpdatePolicy.objects.get(container=target).policy == "block"
    assert policies.decide(target).rule == "container"
    assert admin_client.patch(url, {"update_policy": "sometimes"}, format="json").status_code == 400
    assert admin_client.patch(url, {"update_policy": ""}, format="json").json()["update_policy"] == ""
    assert not UpdatePolicy.objects.filter(container=target).exists()
    # It is a settings right: a viewer is refused, an outsider does not see the container.
    assert _client(world["viewer"]).patch(url, {"update_policy": "allow"}, format="json").status_code == 403
    assert _client(world["outsider"]).patch(url, {"update_policy": "allow"}, format="json").status_code == 404
    assert not UpdatePolicy.objects.filter(container=target).exists()


def test_maintenance_window_is_timezone_aware_and_may_span_midnight():
    setting = AutoUpdate(days=[5], start=dt.time(22, 0), end=dt.time(4, 0), timezone="Europe/Berlin")
    utc = dt.UTC
    assert setting.in_window(dt.datetime(2026, 1, 3, 21, 30, tzinfo=utc))      # Sat 22:30 Berlin
    assert setting.in_window(dt.datetime(2026, 1, 4, 1, 0, tzinfo=utc))        # Sun 02:00 Berlin: Saturday's window
    assert not setting.in_window(dt.datetime(2026, 1, 4, 21, 30, tzinfo=utc))  # Sun 22:30 Berlin
    assert not setting.in_window(dt.datetime(2026, 1, 3, 20, 30, tzinfo=utc))  # Sat 21:30 Berlin
    assert AutoUpdate().in_window(timezone.now())                              # no window: always


def test_auto_update_picks_opted_in_allowed_untried_releases(world):
    target, other = world["target"], world["other"]
    warned = _container(world["host"], "warned")
    tried = _container(world["host"], "tried")
    later = _container(world["host"], "later")
    for c in (target, warned, tried, later):
        AutoUpdate.objects.create(container=c, enabled=True)
    UpdatePolicy.objects.create(container=warned, policy="warn")
    RolledBackDigest.objects.create(container=tried, digest="sha256:" + "b" * 64)
    now = timezone.now()
    closed = (now + dt.timedelta(hours=2)).time()
    AutoUpdate.objects.filter(container=later).update(start=closed, end=(now + dt.timedelta(hours=3)).time())
    assert {r.container_id for r in autoupdate.candidates(now=now)} == {target.key}
    runs = autoupdate.schedule(now=now)
    assert [UpdateRun.objects.get(pk=r).old_key for r in runs] == [target.key]
    assert UpdateRun.objects.get(pk=runs[0]).trigger == "auto"
    assert other.key not in {r.container_id for r in autoupdate.candidates(now=now)}


def test_admin_update_action_and_run_pages(world, admin, django_user_model):
    from django.test import Client

    client = Client()
    client.force_login(admin)
    row = ContainerUpdate.objects.get(container=world["target"])
    response = client.post("/admin/updates/containerupdate/", {"action": "update_now", "_selected_action": [row.pk]}, follow=True)
    assert response.status_code == 200 and "1 update(s) started" in response.content.decode()
    run = UpdateRun.objects.get(old_key=world["target"].key)
    assert run.trigger == "admin" and run.requested_by == admin
    for path in ("updates/updaterun/", f"updates/updaterun/{run.pk}/change/", "updates/autoupdate/", "updates/rolledbackdigest/"):
        assert client.get(f"/admin/{path}").status_code == 200, path
    # A staff member granted only the other container sees no run of the target.
    staff = django_user_model.objects.create_user("runs-staff", password="pw-staff-1234", is_staff=True)
    assign_perm("containers.view_container", staff, world["other"])
    staff_client = Client()
    staff_client.force_login(staff)
    page = staff_client.get("/admin/updates/updaterun/")
    assert page.status_code == 200 and f"/admin/updates/updaterun/{run.pk}/change/" not in page.content.decode()
    assert staff_client.get(f"/admin/updates/updaterun/{run.pk}/change/").status_code in (302, 404)


def test_bulk_update_over_two_hosts_three_each_and_a_finished_run_lets_the_fourth_start(world, admin_client):
    """GIVEN four containers on each of two hosts WHEN all eight are updated at once THEN three
    start per host; WHEN one run of the first host finishes THEN the first host's fourth starts
    (and the second host still has three)."""
    first, second = world["host"], DockerHost.objects.create(name="runs-host-2", url="unix:///nonexistent-runs-2.sock")
    keys = {first.pk: [_container(first, f"two-a{i}").key for i in range(4)],
            second.pk: [_container(second, f"two-b{i}").key for i in range(4)]}
    body = admin_client.post("/api/v1/update-runs/bulk/", {"containers": keys[first.pk] + keys[second.pk]}, format="json").json()
    assert len(body["runs"]) == 8 and body["refused"] == []
    runs = UpdateRun.objects.filter(batch=body["batch"])
    for host in (first, second):
        queued = runs.filter(host=host, queued_at__isnull=False)
        assert queued.count() == 3, host.name
        assert sorted(queued.values_list("slot", flat=True)) == [1, 2, 3]
    waiting = runs.get(host=first, queued_at__isnull=True)
    assert waiting.old_key == keys[first.pk][3], "runs start in the order they were asked for"

    # One of them runs to its end (the host's engine is not there: it fails at once).
    finished = executor.execute(runs.filter(host=first, queued_at__isnull=False).order_by("id")[0].pk)
    assert finished.status == RunStatus.FAILED and "socket does not exist" in finished.error, finished.error
    waiting.refresh_from_db()
    assert waiting.queued_at is not None and waiting.slot == finished.slot, "the finished run's slot went to the fourth"
    assert runs.filter(host=first, status=RunStatus.PENDING, queued_at__isnull=False).count() == 3
    assert runs.filter(host=second, queued_at__isnull=False).count() == 3


def test_a_slot_cannot_be_handed_out_twice():
    """The database itself refuses a second active run on a host's slot (both databases)."""
    from django.db import IntegrityError, transaction

    host = DockerHost.objects.create(name="slot-host", url="unix:///nonexistent-slot.sock")
    a = UpdateRun.objects.create(host=host, container_name="a", old_key="x:a", queued_at=timezone.now(), slot=1)
    b = UpdateRun.objects.create(host=host, container_name="b", old_key="x:b")
    with pytest.raises(IntegrityError), transaction.atomic():
        UpdateRun.objects.filter(pk=b.pk).update(queued_at=timezone.now(), slot=1)
    UpdateRun.objects.filter(pk=a.pk).update(status=RunStatus.SUCCEEDED)  # a finished run holds no slot
    assert UpdateRun.objects.filter(pk=b.pk).update(queued_at=timezone.now(), slot=1) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_kickers_never_start_more_than_the_limit():
    """GIVEN ten waiting runs on one host WHEN six workers kick the host at the same moment
    (several rounds, each round finishing what the last started) THEN no more than three are
    ever started at once, each on its own slot, and every run is started exactly once."""
    import threading

    from django.db import connection

    host = DockerHost.objects.create(name="kick-host", url="unix:///nonexistent-kick.sock")
    for i in range(10):
        UpdateRun.objects.create(host=host, container_name=f"k{i}", old_key=f"{host.pk}:k{i}")
    started_ever: list[int] = []
    for _ in range(4):
        barrier = threading.Barrier(6)
        results: list[list[int]] = []
        errors: list[BaseException] = []

        def kicker(barrier=barrier, results=results, errors=errors):
            try:
                barrier.wait(10)
                results.append(runqueue.kick(host.pk))
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=kicker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        started = [run_id for result in results for run_id in result]
        active = UpdateRun.objects.filter(host=host, status=RunStatus.PENDING, queued_at__isnull=False)
        assert len(started) == len(set(started)) == active.count() <= 3, results
        assert len(set(active.values_list("slot", flat=True))) == active.count()
        started_ever += started
        active.update(status=RunStatus.SUCCEEDED)  # this round's runs end; the next round starts more
    assert sorted(started_ever) == sorted(UpdateRun.objects.filter(host=host).values_list("pk", flat=True))
