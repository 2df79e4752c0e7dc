"""The updates app's part of the configuration file (see containers/config_io.py).

Sections "registry_credentials" (never the password: `has_password` says there was one) and
"policy_categories" (the built-in ones too: their policy, patterns and switch are settings);
keys "update_policy", "auto_update" and "update_tracking" of each "containers" entry (null: not
set, so an import removes one that is). What update checks found, runs and rolled-back
releases are history, not configuration.
"""

from __future__ import annotations

from rest_framework import serializers

from containers.config_io import ExportContext, ImportContext, ValidationContext, apply_values, rows_by_container
from updates.api.serializers import (
    MaintenanceWindowRules,
    PolicyCategorySerializer,
    RegistryCredentialSerializer,
    TrackingSerializer,
    check_registry_destination,
    insecure_given,
)
from updates.choices import Policy, TrackingMode
from updates.models import AutoUpdate, ContainerUpdate, PolicyCategory, RegistryCredential, UpdatePolicy
from updates.registry import canonical_registry

SECTIONS = ("registry_credentials", "policy_categories")
CONTAINER_FIELDS = {"update_policy": None, "auto_update": None, "update_tracking": None}
DEFAULT_TRACKING = {"tracking_mode": TrackingMode.EXACT, "include_prerelease": False}


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------
def _auto_update(setting: AutoUpdate) -> dict:
    return {"enabled": setting.enabled, "days": list(setting.days or []), "start": setting.start, "end": setting.end,
            "timezone": setting.timezone}


def export(ctx: ExportContext) -> None:
    for cred in RegistryCredential.objects.order_by("registry"):
        ctx.add("registry_credentials", {"registry": cred.registry, "username": cred.username, "has_password": bool(cred.password),
                                         "ca_cert": cred.ca_cert, "insecure": cred.insecure, "note": cred.note})
    for category in PolicyCategory.objects.order_by("name"):
        ctx.add("policy_categories", {"name": category.name, "label": category.label, "policy": category.policy,
                                      "enabled": category.enabled, "patterns": list(category.patterns or [])})
    present = {"container__removed_at__isnull": True}
    for policy in UpdatePolicy.objects.filter(**present).select_related("container__host"):
        ctx.container(policy.container)["update_policy"] = {"policy": policy.policy, "note": policy.note}
    for setting in AutoUpdate.objects.filter(**present).select_related("container__host"):
        ctx.container(setting.container)["auto_update"] = _auto_update(setting)
    records = ContainerUpdate.objects.filter(**present).exclude(**DEFAULT_TRACKING).select_related("container__host")
    for record in records:
        ctx.container(record.container)["update_tracking"] = {"tracking_mode": record.tracking_mode,
                                                               "include_prerelease": record.include_prerelease}


# ---------------------------------------------------------------------------
# Validation (the API's rules, without its uniqueness checks: the importer matches instead)
# ---------------------------------------------------------------------------
class PortableRegistrySerializer(RegistryCredentialSerializer):
    password = None
    has_password = serializers.BooleanField(required=False, default=False,
                                            help_text="It had a password (not exported): enter it again after the import")

    class Meta(RegistryCredentialSerializer.Meta):
        fields = ["registry", "username", "has_password", "ca_cert", "insecure", "note"]
        read_only_fields = []
        extra_kwargs = {"registry": {"validators": []}}

    def validate_registry(self, value):
        registry = canonical_registry(value)
        if not registry or any(ch in registry for ch in " @?#"):
            raise serializers.ValidationError("Enter a registry host, e.g. ghcr.io or 127.0.0.1:5000.")
        return check_registry_destination(registry, insecure=insecure_given(self))

    def validate(self, attrs):
        return attrs


class PortableCategorySerializer(PolicyCategorySerializer):
    class Meta(PolicyCategorySerializer.Meta):
        fields = ["name", "label", "policy", "enabled", "patterns"]
        read_only_fields = []
        extra_kwargs = {"name": {"validators": []}}


class ContainerPolicySerializer(serializers.Serializer):
    policy = serializers.ChoiceField(choices=Policy.choices)
    note = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class AutoUpdateSettingSerializer(MaintenanceWindowRules, serializers.Serializer):
    enabled = serializers.BooleanField(required=False, default=True)
    days = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=6), required=False, default=list, max_length=7)
    start = serializers.TimeField(required=False, allow_null=True, default=None)
    end = serializers.TimeField(required=False, allow_null=True, default=None)
    timezone = serializers.CharField(max_length=64, required=False, default="UTC")


class ContainerSettingsSerializer(serializers.Serializer):
    update_policy = ContainerPolicySerializer(required=False, allow_null=True)
    auto_update = AutoUpdateSettingSerializer(required=False, allow_null=True)
    update_tracking = TrackingSerializer(required=False, allow_null=True)


def container_serializer():
    return ContainerSettingsSerializer


def validate(ctx: ValidationContext) -> None:
    ctx.clean_section("registry_credentials", PortableRegistrySerializer, identities=(lambda r: r["registry"],))
    ctx.clean_section("policy_categories", PortableCategorySerializer, identities=(lambda c: c["name"],))


def container_refs(ctx: ImportContext):
    return []


# ---------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------
def import_(ctx: ImportContext) -> None:
    for item in ctx.items("registry_credentials"):
        result = ctx.item("registry_credentials", item["registry"])
        with ctx.guard(result):
            _import_registry(ctx, item, result)
    for item in ctx.items("policy_categories"):
        result = ctx.item("policy_categories", item["name"])
        with ctx.guard(result):
            category = PolicyCategory.objects.filter(name=item["name"]).first()
            values = {k: item[k] for k in ("label", "policy", "enabled", "patterns") if k in item}
            if category is None:
                PolicyCategory.objects.create(name=item["name"], **values)
                result.created()
            elif apply_values(category, values):
                category.save()
                result.updated()
    entries = list(ctx.container_entries())
    keys = [c.pk for _, c, _ in entries]
    policies = rows_by_container(UpdatePolicy.objects.all(), keys)
    auto = rows_by_container(AutoUpdate.objects.all(), keys)
    records = rows_by_container(ContainerUpdate.objects.all(), keys)
    for entry, container, result in entries:
        with ctx.guard(result):
            if "update_policy" in entry:
                result.changed(_set_one(UpdatePolicy, container, entry["update_policy"], policies.get(container.pk),
                                        created_by=ctx.user))
            if "auto_update" in entry:
                result.changed(_set_one(AutoUpdate, container, entry["auto_update"], auto.get(container.pk)))
            if "update_tracking" in entry:
                result.changed(_set_tracking(container, entry["update_tracking"], records.get(container.pk)))


def _import_registry(ctx: ImportContext, item: dict, result) -> None:
    cred = RegistryCredential.objects.filter(registry=item["registry"]).first()
    values = {k: item[k] for k in ("username", "ca_cert", "insecure", "note") if k in item}
    if cred is None:
        cred = RegistryCredential(registry=item["registry"], **values)
        cred.save()
        result.created()
    elif apply_values(cred, values):
        # The stored password stays: the file never carries one.
        cred.save()
        result.updated()
    if not cred.password and (item.get("has_password") or cred.username):
        result.note("needs its password (or token) again: enter it under registry credentials")


def _set_one(model, container, value: dict | None, current, **create) -> bool:
    """A one-to-one settings row of a container: created, brought in line, or removed (None)."""
    if value is None:
        if current is None:
            return False
        current.delete()
        return True
    if current is None:
        model.objects.create(container=container, **create, **value)
        return True
    if apply_values(current, value):
        current.save()
        return True
    return False


def _set_tracking(container, value: dict | None, record) -> bool:
    """Tracking lives on the container's update record; defaults need no record of their own."""
    wanted = {**DEFAULT_TRACKING, **(value or {})}
    if record is None:
        if wanted == DEFAULT_TRACKING:
            return False
        ContainerUpdate.objects.create(container=container, image=container.image, **wanted)
        return True
    if apply_values(record, wanted):
        record.save(update_fields=[*wanted, "updated_at"])
        return True
    return False
