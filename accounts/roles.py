"""Built-in roles: Django groups whose model permissions are derived from codename rules.

Model permissions from a group are global: a member of Operators may operate every container.
To give someone only some hosts or containers, leave them out of these groups and grant object
permissions (see containers/permissions.py and /api/v1/permissions/).

The rules are patterns, not lists, because apps add models over time: every `manage.py
migrate` (post_migrate) re-applies them, and `manage.py sync_roles` does it by hand.
"""

from __future__ import annotations

import re

from django.apps import apps as global_apps

from accounts.choices import Role

# The apps whose objects DockMon manages. Framework apps (auth, guardian, admin, sessions,
# accounts) are left out so that "every view_*" does not let an Operator list users or grants.
DOCKMON_APPS = ("containers", "updates", "healthchecks", "alerts", "stacks")
_APPS = "|".join(DOCKMON_APPS)

ROLE_RULES: dict[str, tuple[str, ...]] = {
    # Administrators: everything (matched by the catch-all below).
    Role.ADMINISTRATORS: (r".*",),
    Role.OPERATORS: (
        rf"({_APPS})\.view_\w+",
        r"containers\.operate_(container|dockerhost)",
        r"containers\.update_(container|dockerhost)",
        # Running an update / a check creates its run record.
        r"updates\.add_(updaterun|updatecheck)",
        r"healthchecks\.(add|change|delete)_healthcheck",
        r"alerts\.(add|change|delete)_alertrule",
        # Acknowledge, snooze and resolve alerts.
        r"alerts\.change_alert",
    ),
    Role.VIEWERS: (rf"({_APPS})\.view_\w+",),
}


def role_names() -> list[str]:
    return [role.value for role in Role]


def permissions_for_role(role: str, permission_model=None):
    """The Permission rows a role's rules match, as a queryset-free list."""
    Permission = permission_model or global_apps.get_model("auth", "Permission")
    patterns = [re.compile(rf"^{rule}$") for rule in ROLE_RULES[role]]
    rows = Permission.objects.select_related("content_type").all()
    return [p for p in rows if any(pattern.match(f"{p.content_type.app_label}.{p.codename}") for pattern in patterns)]


def sync_roles(*, apps=None, using: str = "default", reset: bool = False) -> dict[str, int]:
    """Create the role groups and attach the permissions their rules match.

    Additive by default, so that permissions an administrator added to a role by hand stay;
    `reset=True` makes each role hold exactly what its rules match. Returns {role: permissions}.
    """
    registry = apps or global_apps
    Group = registry.get_model("auth", "Group")
    Permission = registry.get_model("auth", "Permission")
    result = {}
    for role in role_names():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        wanted = permissions_for_role(role, Permission)
        if reset:
            group.permissions.set(wanted)
        else:
            group.permissions.add(*wanted)
        result[role] = group.permissions.count()
    return result


def sync_roles_after_migrate(sender, app_config=None, using="default", apps=None, plan=None, **kwargs):
    # post_migrate is sent once per app; permissions are created by each app's own handler,
    # so act once, after the last app with models has had its permissions made.
    with_models = [config for config in global_apps.get_app_configs() if config.models_module is not None]
    if not with_models or sender is not with_models[-1]:
        return
    sync_roles(using=using)


def is_signed_in(user) -> bool:
    """A signed-in, active user (anonymous and deactivated users have no rights at all)."""
    return bool(user and user.is_authenticated and user.is_active)


def is_administrator(user) -> bool:
    """May manage users, groups and grants (superusers and the Administrators role)."""
    return is_signed_in(user) and (user.is_superuser or user.has_perm("auth.change_user"))
