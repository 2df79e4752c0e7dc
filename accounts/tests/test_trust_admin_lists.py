"""Trust boundary in the Django admin's lists: list filters offer only what the user may view,
actions are offered only to who may do what they do, and a row cannot be pointed at a container
the user may not change. Uses the permission world (accounts/tests/conftest.py): host A with a1
and a2, host B with b1, one object of every bound model on each side."""

from __future__ import annotations

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from updates.models import UpdatePolicy

pytestmark = [pytest.mark.django_db, pytest.mark.trust]

# Every changelist of rows bound to a host or a container, and the filter parameter that names a host.
BOUND_CHANGELISTS = [
    "/admin/containers/dockerhost/", "/admin/containers/container/", "/admin/containers/event/", "/admin/containers/statsbatch/",
    "/admin/containers/diskusage/", "/admin/containers/profilesession/", "/admin/healthchecks/healthcheck/",
    "/admin/healthchecks/checkresult/", "/admin/healthchecks/autorestartconfig/", "/admin/healthchecks/restartattempt/",
    "/admin/updates/containerupdate/", "/admin/updates/updatepolicy/", "/admin/updates/updaterun/", "/admin/updates/autoupdate/",
    "/admin/updates/rolledbackdigest/", "/admin/alerts/alert/", "/admin/alerts/maintenancewindow/", "/admin/alerts/alertrule/",
    "/admin/alerts/notification/", "/admin/alerts/deliveryattempt/", "/admin/alerts/conditionstate/",
    "/admin/alerts/subjectstate/", "/admin/alerts/alerthistory/",
]


def _staff_client(user) -> Client:
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def _actions(page) -> set[str]:
    import re

    return set(re.findall(r'<option value="([a-z_]+)"', page.content.decode().split('name="action"', 1)[-1].split("</select>", 1)[0]))


def test_list_filters_name_only_hosts_the_user_may_see(world):
    """GIVEN staff users granted host A, one container of A, or host B
    WHEN they open every changelist of host- or container-bound rows
    THEN no page names a host (in its filters or rows) the user may not see; the owner's
    filters name both hosts."""
    hidden = {"granted": world.host_b.name, "container_granted": world.host_b.name, "outsider": world.host_a.name}
    for who, name in hidden.items():
        client = _staff_client(getattr(world, who))
        for url in BOUND_CHANGELISTS:
            response = client.get(url)
            assert response.status_code in (200, 403), (who, url, response.status_code)
            assert name not in response.content.decode(), (who, url)
    owner = _staff_client(world.admin)
    events = owner.get("/admin/containers/event/").content.decode()
    assert world.host_a.name in events and world.host_b.name in events
    # With a second visible host the filter shows (one choice is no filter): its hosts, not B.
    from containers.models import DockerHost

    third = DockerHost.objects.create(name=f"{world.host_a.name}-c", url="tcp://127.0.0.1:9")
    assign_perm("containers.view_dockerhost", world.granted, third)
    granted = _staff_client(world.granted)
    page = granted.get("/admin/containers/container/").content.decode()
    assert f"?host__id__exact={world.host_a.pk}" in page and f"?host__id__exact={third.pk}" in page
    assert f"?host__id__exact={world.host_b.pk}" not in page
    page = granted.get(f"/admin/containers/container/?host__id__exact={world.host_b.pk}").content.decode()
    assert world.b1.name not in page


def test_actions_are_offered_only_to_who_may_do_them(world):
    client = _staff_client(world.granted)  # view on host A only
    offered = {url: _actions(client.get(url)) for url in (
        "/admin/containers/container/", "/admin/healthchecks/healthcheck/", "/admin/alerts/alert/", "/admin/updates/updatepolicy/",
        "/admin/updates/containerupdate/", "/admin/containers/dockerhost/", "/admin/healthchecks/autorestartconfig/")}
    assert not offered["/admin/containers/container/"] & {"op_stop", "op_kill", "op_rename", "op_remove_force"}
    assert not offered["/admin/healthchecks/healthcheck/"] & {"run_now", "enable", "disable", "reset_state"}
    assert not offered["/admin/alerts/alert/"] & {"acknowledge", "resolve"}
    assert not offered["/admin/updates/updatepolicy/"] & {"set_allow", "set_block"}
    assert not offered["/admin/healthchecks/autorestartconfig/"] & {"reset_guard", "enable"}
    assert "check_now" in offered["/admin/updates/containerupdate/"]  # a registry read: viewing is enough
    assert not offered["/admin/updates/containerupdate/"] & {"update_now", "update_now_forced"}
    assert "test_connection" in offered["/admin/containers/dockerhost/"]
    # With operate / change / update on host A, the matching actions appear.
    for action in ("operate", "change", "update"):
        assign_perm(f"containers.{action}_dockerhost", world.granted, world.host_a)
    assert {"op_stop", "op_rename"} <= _actions(client.get("/admin/containers/container/"))
    assert {"run_now", "enable"} <= _actions(client.get("/admin/healthchecks/healthcheck/"))
    assert {"acknowledge", "resolve"} <= _actions(client.get("/admin/alerts/alert/"))
    assert {"set_allow", "set_block"} <= _actions(client.get("/admin/updates/updatepolicy/"))
    assert {"update_now", "update_now_forced"} <= _actions(client.get("/admin/updates/containerupdate/"))


def test_superuser_only_actions_are_hidden_from_everyone_else(world, django_user_model):
    from django.contrib.auth.models import Group

    administrator = world.granted
    administrator.groups.add(Group.objects.get(name="Administrators"))
    client = _staff_client(administrator)
    assert "repair_now" not in _actions(client.get("/admin/updates/updaterun/"))
    assert "repair_now" in _actions(_staff_client(world.admin).get("/admin/updates/updaterun/"))


def test_a_row_cannot_be_pointed_at_a_container_the_user_may_not_change(world):
    """GIVEN a staff user with `change` on a1 only, editing a1's update policy
    WHEN they type b1's (or a2's) key into the container field
    THEN the form refuses it and the policy stays on a1; moving it nowhere else works."""
    user = world.container_granted
    assign_perm("containers.change_container", user, world.a1)
    client = _staff_client(user)
    policy = UpdatePolicy.objects.get(container=world.a1)
    url = f"/admin/updates/updatepolicy/{policy.pk}/change/"
    assert client.get(url).status_code == 200
    for key in (world.b1.key, world.a2.key):
        response = client.post(url, {"container": key, "policy": "block", "note": "moved"})
        assert response.status_code == 200 and "Select a valid choice" in response.content.decode(), key
        policy.refresh_from_db()
        assert (policy.container_id, policy.policy) == (world.a1.key, "warn")
    assert client.post(url, {"container": world.a1.key, "policy": "block", "note": "kept"}).status_code == 302
    policy.refresh_from_db()
    assert (policy.container_id, policy.policy) == (world.a1.key, "block")


def test_relation_pickers_offer_only_visible_hosts_and_channels(world):
    """GIVEN a staff user allowed to add alert rules, granted host A and one channel
    WHEN they open the add form
    THEN the hosts and channels it offers are theirs only; posting host B is refused."""
    from django.contrib.auth.models import Permission

    from alerts.models import AlertRule, NotificationChannel

    mine = NotificationChannel.objects.create(name="picker-mine", kind="ntfy", config={"topic": "a"})
    NotificationChannel.objects.create(name="picker-hidden", kind="ntfy", config={"topic": "b"})
    assign_perm("alerts.view_notificationchannel", world.granted, mine)
    world.granted.user_permissions.add(*Permission.objects.filter(content_type__app_label="alerts",
                                                                  codename__in=["add_alertrule", "change_alertrule"]))
    client = _staff_client(world.granted)
    page = client.get("/admin/alerts/alertrule/add/").content.decode()
    assert "picker-mine" in page and world.host_a.name in page
    assert "picker-hidden" not in page and world.host_b.name not in page
    form = {"name": "picked", "kind": "container_stopped", "scope": "hosts", "hosts": [str(world.host_b.pk)], "severity": "warning",
            "cooldown_seconds": 300, "occurrences": 1, "duration_seconds": 0, "threshold_unit": "percent", "window_seconds": 0,
            "enabled": "on"}
    response = client.post("/admin/alerts/alertrule/add/", form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["hosts"] and str(world.host_b.pk) in str(errors["hosts"]), errors
    assert not AlertRule.objects.filter(name="picked").exists()
    form.update(hosts=[str(world.host_a.pk)], channels=[str(mine.pk)])
    assert client.post("/admin/alerts/alertrule/add/", form).status_code == 302
    assert list(AlertRule.objects.get(name="picked").hosts.all()) == [world.host_a]
