"""The people of a permission test: users named after their role (plus the test's unique suffix)
and API clients signed in as them. The root conftest.py hands a `People` to tests as `people`."""

from __future__ import annotations

from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

# Role -> the start of its user name.
PREFIXES = {"admin": "adm", "granted": "gr", "changer": "chg", "viewer": "vw", "operator": "op", "outsider": "out"}


class People:
    """An administrator (superuser) and two plain users, `granted` and `outsider`, with no rights
    yet; a test module adds people and what they may do (`add`, `on_two_hosts`). A person is an
    attribute or an item: `people.granted`, `people["granted"]`."""

    def __init__(self, user_model, unique: str):
        self.user_model = user_model
        self.unique = unique
        self.add("admin", superuser=True)
        self.add("granted")
        self.add("outsider")

    def add(self, role: str, *, superuser: bool = False, groups: tuple[str, ...] = (), **fields):
        """A user for the role (no password unless given: these people mostly use
        force_authenticate or tokens), a superuser or in the given groups (roles) if asked."""
        from django.contrib.auth.models import Group

        name = f"{PREFIXES.get(role, role)}{self.unique}"
        fields.setdefault("password", None)
        manager = self.user_model.objects
        user = manager.create_superuser(name, **fields) if superuser else manager.create_user(name, **fields)
        for group in groups:
            user.groups.add(Group.objects.get(name=group))
        setattr(self, role, user)
        return user

    def __getitem__(self, role: str):
        return getattr(self, role)

    def client(self, who: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(getattr(self, who))
        return client

    def on_two_hosts(self, container: dict | None = None, other: dict | None = None) -> People:
        """Two hosts (no engine behind them) with a container each (`container` on `host`, `other`
        on `other_host`, with the given fields); `granted` and `changer` may view and change
        `host`, `viewer` may view it, `operator` may view and operate `container`, and `outsider`
        may view only `other_host`."""
        from containers.models import Container, DockerHost

        unique = self.unique
        self.host = DockerHost.objects.create(name=f"api-{unique}", url="unix:///nonexistent.sock")
        self.other_host = DockerHost.objects.create(name=f"api-other-{unique}", url="unix:///nonexistent2.sock")
        self.container = Container.objects.create(host=self.host, container_id="a" * 64, short_id="a" * 12, name=f"web-{unique}",
                                                  **(container or {}))
        self.other = Container.objects.create(host=self.other_host, container_id="b" * 64, short_id="b" * 12, name=f"db-{unique}",
                                              **(other or {}))
        for role in ("changer", "viewer", "operator"):
            self.add(role)
        for user in (self.granted, self.changer):
            for perm in ("view", "change"):
                assign_perm(f"containers.{perm}_dockerhost", user, self.host)
        assign_perm("containers.view_dockerhost", self.viewer, self.host)
        assign_perm("containers.view_container", self.operator, self.container)
        assign_perm("containers.operate_container", self.operator, self.container)
        assign_perm("containers.view_dockerhost", self.outsider, self.other_host)
        return self
