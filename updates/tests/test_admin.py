"""Admin pages of the updates app: they render, are scoped by object permissions, and "check now" works."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from containers.models import Container, DockerHost
from updates.choices import UpdateStatus
from updates.models import ContainerUpdate, UpdatePolicy

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded_categories")]


def _container(host, name):
    short = uuid.uuid4().hex[:12]
    return Container.objects.create(host=host, short_id=short, container_id=short + "0" * 52, name=name,
                                    image="127.0.0.1:5000/demo/app:1.0")


def test_admin_pages_render_for_an_administrator(admin):
    client = Client()
    client.force_login(admin)
    host = DockerHost.objects.create(name="adm", url="unix:///nonexistent.sock")
    c = _container(host, "adm-c")
    row = ContainerUpdate.objects.create(container=c, status=UpdateStatus.OK)
    UpdatePolicy.objects.create(container=c, policy="warn")
    for path in ("updates/containerupdate/", f"updates/containerupdate/{row.pk}/change/", "updates/updatepolicy/",
                 "updates/policycategory/", "updates/registrycredential/", "updates/registrycredential/add/"):
        assert client.get(f"/admin/{path}").status_code == 200, path
    page = client.get(f"/admin/updates/containerupdate/{row.pk}/change/").content.decode()
    assert "warn" in page and "per-container policy" in page.lower()


def test_staff_user_sees_only_granted_containers_rows(django_user_model):
    mine = DockerHost.objects.create(name="adm-mine", url="unix:///nonexistent-a.sock")
    other = DockerHost.objects.create(name="adm-other", url="unix:///nonexistent-b.sock")
    a, b = _container(mine, "visible-one"), _container(other, "hidden-one")
    ContainerUpdate.objects.create(container=a)
    hidden = ContainerUpdate.objects.create(container=b)
    staff = django_user_model.objects.create_user("adm-staff", password="pw-staff-1234", is_staff=True)
    assign_perm("containers.view_dockerhost", staff, mine)
    client = Client()
    client.force_login(staff)
    page = client.get("/admin/updates/containerupdate/").content.decode()
    assert "visible-one" in page and "hidden-one" not in page
    assert client.get(f"/admin/updates/containerupdate/{hidden.pk}/change/").status_code in (302, 403, 404)


@pytest.mark.django_db(transaction=True)
def test_check_now_action_runs_a_check(admin, alpha, make_host, run_container, sync, unique):
    host = make_host(alpha)
    cid = run_container(alpha, f"upd-adm-{unique}", image="127.0.0.1:5000/demo/app:1.0")
    sync(host)
    key = f"{host.pk}:{cid[:12]}"
    row = ContainerUpdate.objects.create(container_id=key)
    client = Client()
    client.force_login(admin)
    resp = client.post("/admin/updates/containerupdate/", {"action": "check_now", "_selected_action": [row.pk]}, follow=True)
    assert resp.status_code == 200 and "Checked 1 container" in resp.content.decode()
    row.refresh_from_db()
    assert row.status == UpdateStatus.OK and row.checked_at is not None
