"""Update policies: may this container be updated, and which rule says so.

Priority (design.md), first match wins:
  0. DockMon itself is never updated by DockMon (it would stop in the middle of its own update);
  1. the container label ``dockmon.update_policy`` (or ``com.dockmon.update.policy``);
  2. the per-container policy a user set (UpdatePolicy);
  3. enabled pattern categories: substring of the container name or image (the strictest
     matching category wins when several match);
  4. allow.
``warn`` needs an explicit force for a manual update and is skipped by auto-update; ``block``
refuses both. Pure functions over rows the caller may preload (batch checks pass categories
and policies in to stay at a constant number of queries).
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from django.conf import settings

from updates.choices import Policy, PolicyRule

POLICY_LABELS = ("dockmon.update_policy", "com.dockmon.update.policy")
SELF_LABELS = ("dockmon.self", "com.dockmon.self")
_STRICTNESS = {Policy.ALLOW: 0, Policy.WARN: 1, Policy.BLOCK: 2}
_UNSET = object()


@dataclass
class Decision:
    policy: str
    rule: str
    reason: str
    details: dict = field(default_factory=dict)
    # Every rule that was looked at, in order, with what it found: the "why" for people.
    steps: list[dict] = field(default_factory=list)

    @property
    def allows_auto_update(self) -> bool:
        return self.policy == Policy.ALLOW

    def allows_manual_update(self, force: bool = False) -> bool:
        return self.policy == Policy.ALLOW or (self.policy == Policy.WARN and force)

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def _own_short_id() -> str:
    """The short ID of the container DockMon itself runs in, when it runs in one."""
    configured = (getattr(settings, "DOCKMON_SELF_CONTAINER_ID", "") or "").strip().lower()
    if configured:
        return configured[:12]
    if os.path.exists("/.dockerenv"):
        # Docker sets a container's host name to its short ID unless told otherwise.
        return socket.gethostname().lower()[:12]
    return ""


def _repository_name(image: str) -> str:
    name = (image or "").split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def self_reason(container) -> str | None:
    labels = container.labels or {}
    for label in SELF_LABELS:
        if str(labels.get(label, "")).strip().lower() in ("1", "true", "yes"):
            return f"label {label}={labels[label]} marks it as DockMon"
    own = _own_short_id()
    if own and (container.short_id or "").lower() == own:
        return "it is the container DockMon runs in"
    if _repository_name(container.image) == "dockmon":
        return f"its image {container.image} is DockMon's"
    return None


def _label_policy(labels: dict) -> tuple[str, str, str | None]:
    """(label, value, policy or None when absent/invalid) of the first policy label present."""
    for label in POLICY_LABELS:
        if label in (labels or {}):
            raw = str(labels[label]).strip()
            value = raw.lower()
            return label, raw, value if value in Policy.values else None
    return "", "", None


def category_matches(container, categories) -> list[tuple[object, str, str]]:
    """[(category, pattern, "name"|"image")] for every enabled category pattern that matches."""
    name = (container.name or "").lower()
    image = (container.image or "").lower()
    found = []
    for category in categories:
        if not category.enabled:
            continue
        for pattern in category.patterns or []:
            needle = str(pattern).strip().lower()
            if not needle:
                continue
            if needle in name:
                found.append((category, pattern, "name"))
                break
            if needle in image:
                found.append((category, pattern, "image"))
                break
    return found


def decide(container, *, container_policy=_UNSET, categories=None) -> Decision:
    """The policy for `container` and the rule that decided it (see the module docstring)."""
    from updates.models import PolicyCategory, UpdatePolicy

    steps: list[dict] = []

    reason = self_reason(container)
    if reason:
        steps.append({"rule": PolicyRule.SELF, "matched": True, "note": reason})
        return Decision(Policy.BLOCK, PolicyRule.SELF, f"DockMon never updates itself: {reason}.", {}, steps)
    steps.append({"rule": PolicyRule.SELF, "matched": False, "note": "not DockMon itself"})

    label, raw, policy = _label_policy(container.labels or {})
    if policy:
        steps.append({"rule": PolicyRule.LABEL, "matched": True, "note": f"{label}={raw}"})
        return Decision(policy, PolicyRule.LABEL, f"The container label {label}={raw} sets the policy to {policy}.",
                        {"label": label, "value": raw}, steps)
    steps.append({"rule": PolicyRule.LABEL, "matched": False,
                  "note": f"{label}={raw} is not allow, warn or block; ignored" if label else "no policy label"})

    if container_policy is _UNSET:
        container_policy = UpdatePolicy.objects.filter(container_id=container.pk).first()
    if container_policy is not None:
        steps.append({"rule": PolicyRule.CONTAINER, "matched": True, "note": container_policy.policy})
        who = f" by {container_policy.created_by}" if container_policy.created_by_id else ""
        return Decision(container_policy.policy, PolicyRule.CONTAINER,
                        f"A per-container policy set{who} says {container_policy.policy}.",
                        {"policy_id": container_policy.pk, "note": container_policy.note}, steps)
    steps.append({"rule": PolicyRule.CONTAINER, "matched": False, "note": "no per-container policy"})

    if categories is None:
        categories = list(PolicyCategory.objects.filter(enabled=True))
    matches = category_matches(container, categories)
    if matches:
        category, pattern, where = max(matches, key=lambda m: _STRICTNESS.get(m[0].policy, 0))
        steps.append({"rule": PolicyRule.CATEGORY, "matched": True,
                      "note": ", ".join(f"{c.name} ({p!r} in {w})" for c, p, w in matches)})
        return Decision(category.policy, PolicyRule.CATEGORY,
                        f"The {where} matches {pattern!r} of the enabled category {category.name}, whose policy is {category.policy}.",
                        {"category": category.name, "pattern": pattern, "matched_on": where,
                         "all_matches": [{"category": c.name, "pattern": p, "matched_on": w} for c, p, w in matches]},
                        steps)
    steps.append({"rule": PolicyRule.CATEGORY, "matched": False, "note": "no enabled category pattern matches"})

    steps.append({"rule": PolicyRule.DEFAULT, "matched": True, "note": "allow"})
    return Decision(Policy.ALLOW, PolicyRule.DEFAULT, "No rule applies, so updates are allowed (the default).", {}, steps)


def decide_many(containers) -> dict[str, Decision]:
    """decide() for many containers with two queries in all."""
    from updates.models import PolicyCategory, UpdatePolicy

    containers = list(containers)
    categories = list(PolicyCategory.objects.filter(enabled=True))
    policies = {p.container_id: p for p in UpdatePolicy.objects.filter(container__in=[c.pk for c in containers])}
    return {c.pk: decide(c, container_policy=policies.get(c.pk), categories=categories) for c in containers}


# --- PATCH /containers/{key}/settings/ {"update_policy": "allow"|"warn"|"block"|""} ---------------
def get_container_policy(container) -> str:
    """The policy a user set on this container ("" = none: the labels/categories/default decide)."""
    from updates.models import UpdatePolicy

    row = UpdatePolicy.objects.filter(container=container).only("policy").first()
    return row.policy if row else ""


def set_container_policy(container, value: str, user) -> None:
    from updates.models import UpdatePolicy

    if not value:
        UpdatePolicy.objects.filter(container=container).delete()
        return
    UpdatePolicy.objects.update_or_create(
        container=container, defaults={"policy": value, "created_by": user if getattr(user, "is_authenticated", False) else None}
    )
