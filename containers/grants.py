"""Object-permission grants on hosts and containers, as one list over guardian's two tables.

A grant's id is stable and says which table it lives in: "u<pk>" for a user's row
(UserObjectPermission), "g<pk>" for a group's (GroupObjectPermission). Container grants keep
their id when the container is recreated (containers.services.rekey moves the rows in place).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Q
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm

from containers.models import Container, DockerHost
from containers.permissions import ACTIONS, HOST_ACTIONS


@dataclass
class Grant:
    id: str
    user_id: int | None
    username: str
    group_id: int | None
    group_name: str
    host_id: str | None
    container_key: str | None
    permission: str
    object_repr: str


def _content_types():
    return ContentType.objects.get_for_model(DockerHost), ContentType.objects.get_for_model(Container)


def _scope_filter(*, host: str | None = None, container: str | None = None) -> Q:
    host_ct, container_ct = _content_types()
    query = Q(content_type__in=[host_ct, container_ct])
    if host:
        # A host's grants and those on its containers (their keys start with the host's id).
        query &= Q(content_type=host_ct, object_pk=str(host)) | Q(content_type=container_ct, object_pk__startswith=f"{host}:")
    if container:
        query &= Q(content_type=container_ct, object_pk=container)
    return query


def list_grants(*, user=None, group=None, host=None, container=None, permission=None) -> list[Grant]:
    """Every grant on hosts and containers matching the filters, user grants first."""
    host_ct, _ = _content_types()
    scope = _scope_filter(host=host, container=container)
    if permission:
        scope &= Q(permission__codename__startswith=f"{permission}_")
    rows: list[tuple[str, object]] = []
    if group is None:
        user_rows = UserObjectPermission.objects.filter(scope).select_related("permission", "user")
        if user is not None:
            user_rows = user_rows.filter(user_id=user)
        rows += [("u", row) for row in user_rows.order_by("pk")]
    if user is None:
        group_rows = GroupObjectPermission.objects.filter(scope).select_related("permission", "group")
        if group is not None:
            group_rows = group_rows.filter(group_id=group)
        rows += [("g", row) for row in group_rows.order_by("pk")]

    host_pks = {row.object_pk for _, row in rows if row.content_type_id == host_ct.pk}
    container_pks = {row.object_pk for _, row in rows if row.content_type_id != host_ct.pk}
    host_names = {str(pk): name for pk, name in DockerHost.objects.filter(pk__in=host_pks).values_list("pk", "name")}
    container_names = dict(Container.objects.filter(pk__in=container_pks).values_list("pk", "name"))

    grants = []
    for prefix, row in rows:
        is_host = row.content_type_id == host_ct.pk
        grants.append(
            Grant(
                id=f"{prefix}{row.pk}",
                user_id=getattr(row, "user_id", None),
                username=row.user.username if prefix == "u" else "",
                group_id=getattr(row, "group_id", None),
                group_name=row.group.name if prefix == "g" else "",
                host_id=row.object_pk if is_host else None,
                container_key=None if is_host else row.object_pk,
                permission=row.permission.codename.split("_", 1)[0],
                object_repr=(host_names if is_host else container_names).get(row.object_pk, row.object_pk),
            )
        )
    return grants


def get_grant(grant_id: str) -> Grant | None:
    row = _row_for(grant_id)
    if row is None:
        return None
    prefix = grant_id[0]
    grants = list_grants(user=row.user_id) if prefix == "u" else list_grants(group=row.group_id)
    return next((grant for grant in grants if grant.id == grant_id), None)


def _row_for(grant_id: str):
    if not grant_id or grant_id[0] not in "ug" or not grant_id[1:].isdigit():
        return None
    model = UserObjectPermission if grant_id[0] == "u" else GroupObjectPermission
    return model.objects.filter(_scope_filter(), pk=int(grant_id[1:])).first()


def grant(principal, action: str, obj) -> tuple[Grant, bool]:
    """Give a user or group `action` on a host or container. Returns (grant, created).

    Any right but view also grants view: a right on something one cannot see is unusable
    (the API answers 404 for what a user may not view).
    """
    is_host = isinstance(obj, DockerHost)
    allowed = HOST_ACTIONS if is_host else ACTIONS
    if action not in allowed:
        raise ValueError(f"unknown permission {action!r}")
    codename_model = "dockerhost" if is_host else "container"
    with transaction.atomic():
        if action != "view":
            assign_perm(f"containers.view_{codename_model}", principal, obj)
        model = GroupObjectPermission if isinstance(principal, Group) else UserObjectPermission
        principal_field = "group" if isinstance(principal, Group) else "user"
        content_type = ContentType.objects.get_for_model(obj)
        existing = model.objects.filter(
            **{principal_field: principal}, content_type=content_type, object_pk=str(obj.pk), permission__codename=f"{action}_{codename_model}"
        ).first()
        row = existing or assign_perm(f"containers.{action}_{codename_model}", principal, obj)
    prefix = "g" if isinstance(principal, Group) else "u"
    return get_grant(f"{prefix}{row.pk}"), existing is None


def revoke(grant_id: str) -> Grant | None:
    """Remove one grant; returns what it was, or None when there is no such grant."""
    row = _row_for(grant_id)
    if row is None:
        return None
    before = get_grant(grant_id)
    row.delete()
    return before
