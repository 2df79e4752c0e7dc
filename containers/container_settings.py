"""PATCH /api/v1/containers/{key}/settings/: one endpoint, fields owned by several apps.

The containers app owns `tags` and `desired_state`; other apps (updates: update_policy,
auto_update; healthchecks: auto_restart...) register their own fields from AppConfig.ready()
so the endpoint stays one place without this app importing theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rest_framework import serializers


@dataclass
class SettingField:
    name: str
    field: Callable[[], serializers.Field]
    get: Callable  # get(container) -> value
    set: Callable  # set(container, value, user) -> None (inside the request's transaction)
    permission: str = "change"


_registry: dict[str, SettingField] = {}


def register(name: str, field: Callable[[], serializers.Field], get: Callable, set: Callable, permission: str = "change") -> None:
    _registry[name] = SettingField(name, field, get, set, permission)


def registered() -> dict[str, SettingField]:
    return dict(_registry)


def serializer_class() -> type[serializers.Serializer]:
    attrs = {name: spec.field() for name, spec in _registry.items()}
    return type("ContainerSettingsSerializer", (serializers.Serializer,), attrs)


def read(container) -> dict:
    return {name: spec.get(container) for name, spec in _registry.items()}


# --- the containers app's own fields ----------------------------------------------------
TAG_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$"


def _get_tags(container) -> list[str]:
    from containers.choices import TagSource

    return sorted(link.tag.name for link in container.tag_links.select_related("tag").filter(source=TagSource.USER))


def _set_tags(container, names: list[str], user) -> None:
    from containers.choices import TagSource
    from containers.models import ContainerTag, Tag

    wanted = set(names)
    links = {link.tag.name: link for link in container.tag_links.select_related("tag").filter(source=TagSource.USER)}
    for name, link in links.items():
        if name not in wanted:
            link.delete()
    for name in wanted - set(links):
        tag, _ = Tag.objects.get_or_create(name=name)
        ContainerTag.objects.get_or_create(container=container, tag=tag, defaults={"source": TagSource.USER})


def _set_desired(container, value: str, user) -> None:
    from containers.models import Container

    Container.objects.filter(pk=container.pk).update(desired_state=value)
    container.desired_state = value


def _register_own() -> None:
    from containers.choices import DesiredState

    register(
        "tags",
        lambda: serializers.ListField(child=serializers.RegexField(TAG_NAME), max_length=50, required=False),
        _get_tags,
        _set_tags,
    )
    register(
        "desired_state",
        lambda: serializers.ChoiceField(choices=DesiredState.choices, required=False, allow_blank=True),
        lambda c: c.desired_state,
        _set_desired,
    )


_register_own()
