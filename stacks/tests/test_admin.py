"""Stacks in the admin: read-only lists for those who may view, runs only for those who may deploy."""

from __future__ import annotations

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from accounts.models import AuditEntry
from containers.models import DockerHost
from stacks.models import Stack, StackRun

pytestmark = pytest.mark.django_db


def test_the_deploy_action_runs_only_where_the_user_may_deploy_and_is_audited(people, eager, settings, unique):
    settings.DOCKMON_COMPOSE_BINARY = "/nonexistent/docker-compose"  # runs fail at once: nothing reaches an engine
    host = DockerHost.objects.create(name=f"ad-{unique}", url="unix:///nonexistent.sock")
    other = DockerHost.objects.create(name=f"ad2-{unique}", url="unix:///nonexistent2.sock")
    mine = Stack.objects.create(host=host, name=f"mine{unique}", compose="services: {}\n")
    theirs = Stack.objects.create(host=other, name=f"theirs{unique}", compose="services: {}\n")
    staff = people.add("staff", is_staff=True)
    for perm in ("view", "deploy"):
        assign_perm(f"containers.{perm}_dockerhost", staff, host)
    assign_perm("containers.view_dockerhost", staff, other)
    client = Client()
    client.force_login(staff)
    listing = client.get("/admin/stacks/stack/")
    assert listing.status_code == 200 and mine.name in listing.content.decode() and theirs.name in listing.content.decode()
    response = client.post("/admin/stacks/stack/", {"action": "deploy_selected", "_selected_action": [mine.pk, theirs.pk]})
    assert response.status_code == 302
    assert list(StackRun.objects.values_list("stack_name", "kind")) == [(mine.name, "deploy")]
    assert AuditEntry.objects.filter(action="stack.deploy", object_id=str(mine.pk)).exists()
    assert client.get(f"/admin/stacks/stackrun/{StackRun.objects.get().pk}/change/").status_code == 200

    outsider = Client()
    outsider.force_login(people.add("staffout", is_staff=True))
    assert outsider.get(f"/admin/stacks/stack/{mine.pk}/change/").status_code in (302, 403, 404)
