"""Audit rows written before header maps were masked are scrubbed by migration 0004."""

from __future__ import annotations

import importlib
import json

import pytest
from django.apps import apps

from accounts.models import AuditEntry

pytestmark = [pytest.mark.django_db, pytest.mark.trust]

migration = importlib.import_module("accounts.migrations.0004_scrub_audit_secrets")


def test_the_migration_masks_header_values_and_secrets_left_in_old_rows_and_keeps_the_rest():
    """GIVEN rows as the old code wrote them (a check's headers in clear, a token value)
    WHEN the data migration runs
    THEN no secret value is left, header names and ordinary changes stay, other rows are untouched."""
    leaky = AuditEntry.objects.create(action="update", object_type="healthchecks.healthcheck", changes={
        # The request body, as the API recorded it.
        "headers": {"X-Api-Key": "key-OLD-1", "Cookie": "sid=S3"},
        "url": "http://127.0.0.1:1/b",
        "nested": {"extra_headers": {"Authorization": "Bearer key-NEW-2"}},
        "api_token": "tok-4",
    })
    clean = AuditEntry.objects.create(action="update", object_type="containers.container", changes={"name": {"old": "a", "new": "b"}})
    clean_before = AuditEntry.objects.get(pk=clean.pk).changes

    migration.scrub(apps, None)

    text = json.dumps(AuditEntry.objects.get(pk=leaky.pk).changes)
    for secret in ("key-OLD-1", "key-NEW-2", "sid=S3", "tok-4"):
        assert secret not in text
    changes = AuditEntry.objects.get(pk=leaky.pk).changes
    assert "X-Api-Key" in json.dumps(changes["headers"]) and "Cookie" in json.dumps(changes["headers"])
    assert changes["url"] == "http://127.0.0.1:1/b"
    assert AuditEntry.objects.get(pk=clean.pk).changes == clean_before
