"""/api/v1/users/, /api/v1/groups/ and /api/v1/permissions/ (grants), and the role groups."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from guardian.models import UserObjectPermission

from accounts.models import AuditEntry
from accounts.roles import sync_roles
from containers import services
from containers.models import Container
from containers.permissions import has_container_perm, has_host_perm, visible_containers, visible_hosts

pytestmark = pytest.mark.django_db


# ---------------------------------------------------------------------------
# Roles
# ---------------------------------------------------------------------------
def test_the_migration_creates_the_roles_with_their_permissions():
    perms = {name: {f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name=name).permissions.all()}
             for name in ("Administrators", "Operators", "Viewers")}
    assert {"auth.change_user", "containers.delete_dockerhost", "guardian.add_userobjectpermission"} <= perms["Administrators"]
    assert {"containers.view_container", "containers.operate_container", "containers.update_dockerhost"} <= perms["Operators"]
    assert "containers.change_dockerhost" not in perms["Operators"] and "auth.view_user" not in perms["Operators"]
    assert perms["Viewers"] == {p for p in perms["Operators"] if ".view_" in p}
    assert all(".view_" in p for p in perms["Viewers"])


def test_sync_roles_attaches_permissions_of_apps_added_later():
    # A model another app adds later: its permissions appear after migrate; sync attaches them.
    content_type = ContentType.objects.get_or_create(app_label="healthchecks", model="widgetcheck")[0]
    view = Permission.objects.create(codename="view_widgetcheck", name="view", content_type=content_type)
    change = Permission.objects.create(codename="change_healthcheck", name="change", content_type=content_type)
    sync_roles()
    assert Group.objects.get(name="Viewers").permissions.filter(pk=view.pk).exists()
    assert Group.objects.get(name="Operators").permissions.filter(pk=change.pk).exists()
    assert not Group.objects.get(name="Viewers").permissions.filter(pk=change.pk).exists()
    # Additive by default: a permission given to a role by hand stays; --reset removes it.
    extra = Permission.objects.get(codename="change_dockerhost")
    Group.objects.get(name="Viewers").permissions.add(extra)
    sync_roles()
    assert Group.objects.get(name="Viewers").permissions.filter(pk=extra.pk).exists()
    sync_roles(reset=True)
    assert not Group.objects.get(name="Viewers").permissions.filter(pk=extra.pk).exists()


def test_role_groups_work_through_the_one_enforcement_path(world, django_user_model):
    operator = django_user_model.objects.create_user("op-user", password="pw-op-123456")
    viewer = django_user_model.objects.create_user("view-user", password="pw-view-123456")
    operator.groups.add(Group.objects.get(name="Operators"))
    viewer.groups.add(Group.objects.get(name="Viewers"))
    for user in (operator, viewer):
        assert set(visible_hosts(user)) == {world.host_a, world.host_b}
        assert set(visible_containers(user)) == {world.a1, world.a2, world.b1}
        assert not has_host_perm(user, "change", world.host_a)
    assert has_container_perm(operator, "operate", world.b1) and has_container_perm(operator, "update", world.a1)
    assert not has_container_perm(viewer, "operate", world.b1)
    client = world.client(None)
    from accounts.models import APIToken

    _, raw = APIToken.issue(viewer)
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert client.get("/api/v1/containers/").json()["count"] == 3
    assert client.post(f"/api/v1/containers/{world.b1.key}/stop/").status_code == 403
    assert client.get("/api/v1/users/").status_code == 403


# ---------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------
def test_users_crud_by_an_administrator(world):
    client = world.client("admin")
    viewers = Group.objects.get(name="Viewers")
    response = client.post("/api/v1/users/", {"username": "carol", "password": "correct-horse-battery", "groups": [viewers.pk],
                                              "email": "carol@example.org", "first_name": "Carol"}, format="json")
    assert response.status_code == 201, response.data
    assert "password" not in response.data and response.data["groups"] == [viewers.pk]
    carol = Group.objects.get(name="Viewers").user_set.get(username="carol")
    assert carol.check_password("correct-horse-battery")
    # Password validators apply, with field errors.
    bad = client.post("/api/v1/users/", {"username": "dave", "password": "123"}, format="json")
    assert bad.status_code == 400 and "password" in bad.data
    assert client.post("/api/v1/users/", {"username": "erin"}, format="json").data["password"]
    assert client.patch(f"/api/v1/users/{carol.pk}/", {"password": "password"}, format="json").status_code == 400
    # Blank password on update keeps the stored one.
    assert client.patch(f"/api/v1/users/{carol.pk}/", {"password": "", "is_active": False}, format="json").status_code == 200
    carol.refresh_from_db()
    assert carol.check_password("correct-horse-battery") and not carol.is_active
    assert client.get("/api/v1/users/", {"search": "carol"}).json()["count"] == 1
    assert client.delete(f"/api/v1/users/{world.admin.pk}/").status_code == 400  # not oneself
    assert client.delete(f"/api/v1/users/{carol.pk}/").status_code == 204
    # Every unsafe call is in the audit log, without the password.
    rows = AuditEntry.objects.filter(action__startswith="user.")
    assert {r.action for r in rows} >= {"user.create", "user.partial_update", "user.destroy"}
    assert "correct-horse-battery" not in str(list(rows.values_list("changes", flat=True)))


def test_users_and_groups_are_refused_to_others_and_read_only_tokens(world):
    for who in ("granted", "outsider"):
        client = world.client(who)
        assert client.get("/api/v1/users/").status_code == 403
        assert client.post("/api/v1/users/", {"username": "x", "password": "correct-horse-battery"}, format="json").status_code == 403
        assert client.get("/api/v1/groups/").status_code == 403
    from rest_framework.test import APIClient

    from accounts.models import APIToken

    _, raw = APIToken.issue(world.admin, read_only=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert client.get("/api/v1/users/").status_code == 200
    assert client.post("/api/v1/users/", {"username": "x", "password": "correct-horse-battery"}, format="json").status_code == 403
    assert client.post("/api/v1/permissions/", {"user": world.outsider.pk, "host": str(world.host_a.pk), "permission": "view"},
                       format="json").status_code == 403
    assert client.post("/api/v1/tokens/", {"name": "more"}, format="json").status_code == 403


def test_groups_crud_and_built_in_roles_are_protected(world):
    client = world.client("admin")
    response = client.post("/api/v1/groups/", {"name": "night-shift", "permissions": ["containers.view_container"]}, format="json")
    assert response.status_code == 201, response.data
    assert response.data["permissions"] == ["containers.view_container"] and response.data["is_role"] is False
    assert client.post("/api/v1/groups/", {"name": "x", "permissions": ["nope.nothing"]}, format="json").status_code == 400
    viewers = Group.objects.get(name="Viewers")
    assert client.patch(f"/api/v1/groups/{viewers.pk}/", {"name": "Lookers"}, format="json").status_code == 400
    assert client.delete(f"/api/v1/groups/{viewers.pk}/").status_code == 400
    assert client.delete(f"/api/v1/groups/{response.data['id']}/").status_code == 204
    listed = {g["name"]: g for g in client.get("/api/v1/groups/").json()["results"]}
    assert listed["Viewers"]["is_role"] is True


# ---------------------------------------------------------------------------
# Grants
# ---------------------------------------------------------------------------
def test_grant_list_filter_and_revoke(world):
    client = world.client("admin")
    team = Group.objects.create(name="team")
    response = client.post("/api/v1/permissions/", {"user": world.outsider.pk, "host": str(world.host_a.pk), "permission": "operate"},
                           format="json")
    assert response.status_code == 201, response.data
    grant = response.data
    assert grant["id"].startswith("u") and grant["host"] == str(world.host_a.pk) and grant["permission"] == "operate"
    assert grant["username"] == world.outsider.username and grant["object_repr"] == world.host_a.name
    # operate implies view: the outsider now sees host A and may operate its containers.
    assert has_host_perm(world.outsider, "view", world.host_a) and has_container_perm(world.outsider, "operate", world.a2)
    again = client.post("/api/v1/permissions/", {"user": world.outsider.pk, "host": str(world.host_a.pk), "permission": "operate"},
                        format="json")
    assert again.status_code == 200 and again.data["id"] == grant["id"]
    group_grant = client.post("/api/v1/permissions/", {"group": team.pk, "container": world.b1.key, "permission": "change"},
                              format="json").data
    assert group_grant["id"].startswith("g") and group_grant["container"] == world.b1.key

    def ids(**params):
        return {g["id"] for g in client.get("/api/v1/permissions/", params).json()["results"]}

    assert grant["id"] in ids(user=world.outsider.pk) and group_grant["id"] not in ids(user=world.outsider.pk)
    assert all(i.startswith("g") for i in ids(group=team.pk)) and len(ids(group=team.pk)) == 2  # change + implied view
    assert grant["id"] in ids(host=str(world.host_a.pk)) and group_grant["id"] not in ids(host=str(world.host_a.pk))
    # A host filter includes grants on that host's containers.
    a1_grant = UserObjectPermission.objects.get(user=world.container_granted, object_pk=world.a1.key)
    assert f"u{a1_grant.pk}" in ids(host=str(world.host_a.pk)) and ids(container=world.a1.key) == {f"u{a1_grant.pk}"}
    assert ids(permission="change") == {group_grant["id"]}
    assert client.get(f"/api/v1/permissions/{grant['id']}/").json() == grant

    assert client.delete(f"/api/v1/permissions/{grant['id']}/").status_code == 204
    assert client.delete(f"/api/v1/permissions/{grant['id']}/").status_code == 404
    assert client.get(f"/api/v1/permissions/{grant['id']}/").status_code == 404
    world.outsider = type(world.outsider).objects.get(pk=world.outsider.pk)  # drop the permission cache
    assert not has_container_perm(world.outsider, "operate", world.a2)
    actions = list(AuditEntry.objects.filter(action__startswith="permission.").values_list("action", "object_id", "status_code"))
    assert ("permission.grant", str(world.host_a.pk), 201) in actions and ("permission.revoke", str(world.host_a.pk), 204) in actions


@pytest.mark.parametrize(
    "body, fields",
    [
        ({"permission": "view"}, {"user", "group", "host", "container"}),
        ({"user": 1, "group": 1, "host": "00000000-0000-0000-0000-000000000000", "permission": "view"}, {"user", "group", "host"}),
        ({"user": 999999, "container": "nope:000000000000", "permission": "view"}, {"user", "container"}),
        ({"group": 999999, "host": "00000000-0000-0000-0000-000000000000", "permission": "view"}, {"group", "host"}),
        ({"user": "USER", "host": "HOST", "container": "KEY", "permission": "view"}, {"host", "container"}),
        ({"user": "USER", "host": "HOST", "permission": "own"}, {"permission"}),
        ({"user": "USER", "host": "not-a-uuid", "permission": "view"}, {"host"}),
    ],
)
def test_grant_validation_gives_field_errors(world, body, fields):
    body = {k: (world.outsider.pk if v == "USER" else str(world.host_a.pk) if v == "HOST" else world.a1.key if v == "KEY" else v)
            for k, v in body.items()}
    response = world.client("admin").post("/api/v1/permissions/", body, format="json")
    assert response.status_code == 400, response.data
    assert fields <= set(response.data), response.data


def test_container_grants_keep_their_id_when_the_container_is_recreated(world):
    client = world.client("admin")
    grant = client.post("/api/v1/permissions/", {"user": world.outsider.pk, "container": world.a1.key, "permission": "view"},
                        format="json").data
    new = Container.objects.create(host=world.host_a, short_id="fedcba987654", container_id="fedcba987654".ljust(64, "0"),
                                   name=world.a1.name)
    services.rekey(world.a1, new)
    moved = client.get(f"/api/v1/permissions/{grant['id']}/").json()
    assert moved["container"] == new.key and moved["id"] == grant["id"]
    outsider = type(world.outsider).objects.get(pk=world.outsider.pk)
    assert new.key in {c.key for c in visible_containers(outsider)}
