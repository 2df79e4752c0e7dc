"""Audit rows written before header maps were masked may hold a health check's header values
(X-Api-Key, Cookie, ...) in clear: pass every row's recorded changes through today's redaction."""

from django.db import migrations


def scrub(apps, schema_editor):
    from accounts.audit import redact

    AuditEntry = apps.get_model("accounts", "AuditEntry")
    last = 0
    while True:
        batch = list(AuditEntry.objects.filter(pk__gt=last).order_by("pk").values_list("pk", "changes")[:500])
        if not batch:
            return
        for pk, changes in batch:
            cleaned = redact(changes)
            if cleaned != changes:
                AuditEntry.objects.filter(pk=pk).update(changes=cleaned)
        last = batch[-1][0]


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_role_groups")]

    operations = [migrations.RunPython(scrub, migrations.RunPython.noop)]
