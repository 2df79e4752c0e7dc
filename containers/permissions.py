"""One enforcement path for object permissions, used by the API, the admin, the UI and the
WebSocket stream.

Actions on hosts and containers: view, operate, update, change (and delete and deploy for hosts). A right
comes from, in order: being a superuser; a global (model) permission, e.g. through a role group;
an object permission on the host (which covers all its containers, present and future); an
object permission on the container itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q, QuerySet
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import get_objects_for_user
from rest_framework import permissions as drf_permissions

from accounts.roles import is_signed_in
from containers.models import Container, DockerHost

ACTIONS = ("view", "operate", "update", "change")
# `deploy` (compose stacks: creating containers is root on the host) exists on hosts only.
HOST_ACTIONS = (*ACTIONS, "delete", "deploy")


def host_perm(action: str) -> str:
    return f"containers.{action}_dockerhost"


def container_perm(action: str) -> str:
    return f"containers.{action}_container"


def visible_hosts(user, action: str = "view") -> QuerySet:
    if not is_signed_in(user):
        return DockerHost.objects.none()
    if user.is_superuser or user.has_perm(host_perm(action)):
        return DockerHost.objects.all()
    return get_objects_for_user(user, host_perm(action), klass=DockerHost, accept_global_perms=False)


def object_grants(user, action: str) -> tuple[list[str], list[str]]:
    """(host ids, container keys) on which `user` holds `action` through object permissions
    of their own or of their groups, read from guardian's two tables in one query.

    Only the grant rows are read (no join with the hosts or containers themselves): the ids
    are for IN filters and membership tests, where an id of something gone matches nothing.
    """
    host_ct = ContentType.objects.get_for_model(DockerHost)
    codenames = [f"{action}_dockerhost", f"{action}_container"]
    cts = [host_ct, ContentType.objects.get_for_model(Container)]
    own = UserObjectPermission.objects.filter(user=user, content_type__in=cts, permission__codename__in=codenames)
    via_groups = GroupObjectPermission.objects.filter(group__user=user, content_type__in=cts, permission__codename__in=codenames)
    hosts, keys = set(), set()
    for content_type_id, object_pk in own.values_list("content_type_id", "object_pk").union(
        via_groups.values_list("content_type_id", "object_pk")
    ):
        (hosts if content_type_id == host_ct.pk else keys).add(object_pk)
    return sorted(hosts), sorted(keys)


def visible_containers(user, action: str = "view", queryset: QuerySet | None = None) -> QuerySet:
    queryset = Container.objects.all() if queryset is None else queryset
    if not is_signed_in(user):
        return queryset.none()
    if user.is_superuser or user.has_perm(container_perm(action)) or user.has_perm(host_perm(action)):
        return queryset
    # Resolve the grants first (one small query): a plain IN list lets the database use its
    # indexes for the big container query, where OR-ed subqueries made it scan and sort.
    host_ids, keys = object_grants(user, action)
    if not keys:
        return queryset.filter(host_id__in=host_ids)
    if not host_ids:
        return queryset.filter(key__in=keys)
    return queryset.filter(Q(host_id__in=host_ids) | Q(key__in=keys))


def has_host_perm(user, action: str, host) -> bool:
    if not is_signed_in(user):
        return False
    perm = host_perm(action)
    return user.is_superuser or user.has_perm(perm) or user.has_perm(perm, host)


def has_container_perm(user, action: str, container) -> bool:
    if not is_signed_in(user):
        return False
    perm = container_perm(action)
    if user.is_superuser or user.has_perm(perm) or user.has_perm(perm, container):
        return True
    return has_host_perm(user, action, container.host)


@dataclass
class Visibility:
    """What one user may see, in a form cheap to test per WebSocket message."""

    everything: bool = False
    host_ids: set[str] = field(default_factory=set)
    container_keys: set[str] = field(default_factory=set)
    staff: bool = False

    @classmethod
    def for_user(cls, user) -> Visibility:
        if not is_signed_in(user):
            return cls()
        if user.is_superuser or user.has_perm(container_perm("view")) or user.has_perm(host_perm("view")):
            return cls(everything=True, staff=user.is_staff or user.is_superuser)
        hosts, keys = object_grants(user, "view")
        return cls(host_ids=set(hosts), container_keys=set(keys), staff=user.is_staff or user.is_superuser)

    def filter_rows(self, queryset, *, host_field: str = "host_id", key_field: str = "container_key"):
        """Rows that name a host and/or a container key (events, profile sessions) this user may
        see, by the same rule as allows(); rows about neither are for administrators."""
        if self.everything:
            return queryset if self.staff else queryset.exclude(**{f"{host_field}__isnull": True, key_field: ""})
        return queryset.filter(Q(**{f"{host_field}__in": self.host_ids}) | Q(**{f"{key_field}__in": self.container_keys}))

    def allows(self, host_id: str, key: str) -> bool:
        if self.everything:
            return True
        if not host_id and not key:
            # Messages about no host or container (system events) are for administrators.
            return self.staff
        return (host_id in self.host_ids) or (bool(key) and key in self.container_keys)


# ---------------------------------------------------------------------------
# DRF
# ---------------------------------------------------------------------------
_METHOD_ACTION = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


class ObjectPermissions(drf_permissions.BasePermission):
    """Model-level check for creation, object-level for everything else.

    Objects a user cannot view never reach has_object_permission: the queryset filter hides
    them, so they are 404. A viewable object without the needed right is 403. Views may set
    `required_action` on an @action (e.g. "operate").
    """

    def has_permission(self, request, view):
        if not is_signed_in(request.user):
            return False
        if request.method == "POST" and getattr(view, "action", None) == "create":
            model = view.get_queryset().model
            return request.user.has_perm(f"{model._meta.app_label}.add_{model._meta.model_name}")
        return True

    def has_object_permission(self, request, view, obj):
        action = getattr(view, "required_action", None) or _METHOD_ACTION.get(request.method, "change")
        if request.method in drf_permissions.SAFE_METHODS and not getattr(view, "required_action", None):
            action = "view"
        return object_allowed(request.user, action, obj)


def related_target(obj):
    """The host or container another app's object belongs to (its `container` / `host`
    foreign key, or an event-style `container_key` / `host_id`), or None."""
    # The container first (a row about a container is the container's, even when it names the
    # host too: a user granted only that container sees it, as lists do via filter_rows).
    field = _field(obj, "container")
    if field is not None and field.is_relation and field.related_model is Container and obj.container is not None:
        return obj.container
    key = getattr(obj, "container_key", "") or ""
    if key:
        container = Container.objects.select_related("host").filter(pk=key).first()
        if container is not None:
            return container
    field = _field(obj, "host")
    if field is not None and field.is_relation and field.related_model is DockerHost and obj.host is not None:
        return obj.host
    host_id = getattr(obj, "host_id", None)
    if host_id:
        return DockerHost.objects.filter(pk=host_id).first()
    return None


def _field(obj_or_model, name: str):
    try:
        return obj_or_model._meta.get_field(name)
    except Exception:  # FieldDoesNotExist, or not a model at all
        return None


def object_allowed(user, action: str, obj) -> bool:
    """May `user` do `action` on `obj`? Hosts and containers by their rules; anything that
    belongs to a host or container (events, health checks, update records...) follows it:
    viewing needs view on the host/container; other actions need either the model permission
    (e.g. from the Operators role) plus view, or the object's `change` right (its settings)."""
    if not is_signed_in(user):
        return False
    if isinstance(obj, DockerHost):
        return has_host_perm(user, action, obj)
    if isinstance(obj, Container):
        if action == "delete":
            action = "operate"
        return has_container_perm(user, action, obj)
    model = obj._meta
    perm = f"{model.app_label}.{action}_{model.model_name}"
    if user.is_superuser or user.has_perm(perm) and action == "view":
        return True
    target = related_target(obj)
    if target is None:
        return user.has_perm(perm) or user.has_perm(perm, obj)
    if action == "view":
        return object_allowed(user, "view", target)
    if not object_allowed(user, "view", target):
        return False
    return user.has_perm(perm) or user.has_perm(perm, obj) or object_allowed(user, "change", target)


def permitted(user, queryset: QuerySet) -> QuerySet:
    """`queryset` narrowed to what `user` may view: hosts and containers by their rules, other
    models by the host or container they belong to (a `container` or `host` foreign key, or
    event-style `container_key`/`host` columns)."""
    if queryset.model is DockerHost:
        return queryset.filter(pk__in=visible_hosts(user).values("pk"))
    if queryset.model is Container:
        return visible_containers(user, queryset=queryset)
    return filter_related(user, queryset)


def filter_related(user, queryset: QuerySet) -> QuerySet:
    """Objects of another model narrowed to those whose host/container the user may view."""
    model = queryset.model
    if not is_signed_in(user):
        return queryset.none()
    if user.is_superuser:
        return queryset
    container_field, host_field = _field(model, "container"), _field(model, "host")
    if container_field is not None and container_field.is_relation and container_field.related_model is Container:
        query = Q(container__in=visible_containers(user).values("key"))
        if host_field is not None and host_field.is_relation and host_field.related_model is DockerHost:
            query |= Q(container__isnull=True, host__in=visible_hosts(user).values("pk"))
        return queryset.filter(query)
    if host_field is not None and host_field.is_relation and host_field.related_model is DockerHost:
        query = Q(host__in=visible_hosts(user).values("pk"))
        if _field(model, "container_key") is not None:
            query |= Q(container_key__in=visible_containers(user).values("key"))
        return queryset.filter(query)
    return queryset
