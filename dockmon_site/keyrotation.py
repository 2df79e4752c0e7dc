"""Re-encrypt every stored secret with the newest key (`manage.py rotate_keys`).

Every EncryptedTextField of every installed model is found through the app registry, so a new
secret field is rotated without being listed here. Values are read as stored (no decryption
on load), then each is left alone when the newest key already encrypts it, re-encrypted when an
older configured key opens it, encrypted when it predates encryption (plain text), and reported
when no configured key opens it (it is left as it is: restoring the old key still opens it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.apps import apps
from django.db import models, transaction
from django.db.models.functions import Cast

from dockmon_site import crypto


@dataclass
class FieldReport:
    label: str  # app_label.Model.field
    rotated: int = 0
    encrypted: int = 0
    current: int = 0
    undecryptable: list = field(default_factory=list)  # primary keys

    @property
    def changed(self) -> int:
        return self.rotated + self.encrypted


@dataclass
class RotationReport:
    fields: list[FieldReport] = field(default_factory=list)
    dry_run: bool = False

    def total(self, name: str) -> int:
        return sum(len(item.undecryptable) if name == "undecryptable" else getattr(item, name) for item in self.fields)

    def undecryptable_pks(self, model_label: str) -> set:
        return {pk for item in self.fields if item.label.rsplit(".", 1)[0] == model_label for pk in item.undecryptable}


def encrypted_fields() -> list[tuple[type[models.Model], list[crypto.EncryptedTextField]]]:
    found = []
    for model in apps.get_models():
        names = [f for f in model._meta.concrete_fields if isinstance(f, crypto.EncryptedTextField)]
        if names:
            found.append((model, names))
    return found


def rotate(*, dry_run: bool = False, batch_size: int = 500) -> RotationReport:
    """One transaction over every encrypted value; a dry run writes nothing."""
    report = RotationReport(dry_run=dry_run)
    with transaction.atomic():
        for model, fields in encrypted_fields():
            report.fields.extend(_rotate_model(model, fields, dry_run=dry_run, batch_size=batch_size))
    return report


def _rotate_model(model, fields, *, dry_run: bool, batch_size: int) -> list[FieldReport]:
    reports = {f.attname: FieldReport(label=f"{model._meta.label}.{f.name}") for f in fields}
    manager = model._base_manager
    # Cast to a plain text field: the value comes back as stored, without the field's decryption.
    raw = {f"_stored_{f.attname}": Cast(f.attname, output_field=models.TextField()) for f in fields}
    pks = list(manager.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(pks), batch_size):
        chunk = pks[start:start + batch_size]
        rows = manager.filter(pk__in=chunk).annotate(**raw).values_list("pk", *raw)
        for pk, *stored_values in rows:
            changes = {}
            for f, stored in zip(fields, stored_values, strict=True):
                plain = _next_value(stored or "", reports[f.attname], pk)
                if plain is not None:
                    changes[f.attname] = plain  # the field encrypts it with the newest key on save
            if changes and not dry_run:
                manager.filter(pk=pk).update(**changes)
    return list(reports.values())


def _next_value(stored: str, report: FieldReport, pk) -> str | None:
    """The plain text to write again, or None to leave the stored value as it is."""
    if not stored:
        return None
    if not stored.startswith(crypto.PREFIX):
        report.encrypted += 1
        return stored
    if crypto.is_current(stored):
        report.current += 1
        return None
    try:
        plain = crypto.decrypt(stored)
    except ValueError:
        report.undecryptable.append(pk)
        return None
    report.rotated += 1
    return plain
