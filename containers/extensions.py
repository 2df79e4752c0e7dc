"""What other apps add to the containers app's lists and pages.

The containers app never imports updates, healthchecks or alerts. An app that shows something of
its own beside a container (update state, an update panel, an auto-restart switch, open alerts on
the dashboard) registers it here from its AppConfig.ready(), the way `container_settings` takes the
fields of PATCH /containers/{key}/settings/:

- `register_annotation(name, func)`: func(queryset) -> queryset adds the column `name` in the same
  query (e.g. `update_available`); list pages and the API read it with `annotate()`.
- `register_panel(name, template, context)`: a block of the container page below the events,
  rendered from `template` with context(request, container) -> dict.
- `register_setting_rows(name, template, context)`: rows of the container page's settings form
  (the context's `editable` says whether the user may change them).
- `register_dashboard_part(name, func)`: func(user) -> JSON-able value, at `name` in the
  dashboard's data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import BooleanField, QuerySet, Value
from django.template.loader import render_to_string
from django.utils.safestring import SafeString


@dataclass(frozen=True)
class Fragment:
    name: str
    template: str
    context: Callable  # context(request, container) -> dict


_annotations: dict[str, Callable[[QuerySet], QuerySet]] = {}
_panels: dict[str, Fragment] = {}
_setting_rows: dict[str, Fragment] = {}
_dashboard: dict[str, Callable] = {}


def register_annotation(name: str, func: Callable[[QuerySet], QuerySet]) -> None:
    _annotations[name] = func


def register_panel(name: str, template: str, context: Callable) -> None:
    _panels[name] = Fragment(name, template, context)


def register_setting_rows(name: str, template: str, context: Callable) -> None:
    _setting_rows[name] = Fragment(name, template, context)


def register_dashboard_part(name: str, func: Callable) -> None:
    _dashboard[name] = func


def annotate(queryset: QuerySet, *names: str) -> QuerySet:
    """The queryset with the named registered columns (every registered one when none is named).
    A named column no app registered reads as False, so a page still renders without that app."""
    for name in names or tuple(_annotations):
        func = _annotations.get(name)
        queryset = func(queryset) if func else queryset.annotate(**{name: Value(False, output_field=BooleanField())})
    return queryset


def panels(request, container) -> list[SafeString]:
    return [render_to_string(f.template, f.context(request, container), request=request) for f in _panels.values()]


def setting_rows(request, container) -> tuple[list[SafeString], bool]:
    """The rows' HTML, and whether the user may edit any of them (a row's context says so with
    `editable`)."""
    rows, editable = [], False
    for fragment in _setting_rows.values():
        context = fragment.context(request, container)
        editable = editable or bool(context.get("editable"))
        rows.append(render_to_string(fragment.template, context, request=request))
    return rows, editable


def dashboard_parts(user) -> dict:
    return {name: func(user) for name, func in _dashboard.items()}
