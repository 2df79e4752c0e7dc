"""Errors stored before transports stopped quoting request URLs may hold channel secrets (a
Telegram bot token, a webhook path): scrub them the way new errors are written."""

import json

from django.db import migrations


def scrub_errors(apps, schema_editor):
    from alerts.transports import TRANSPORTS, transport_class
    from alerts.transports.base import scrub, secret_values

    Channel = apps.get_model("alerts", "NotificationChannel")
    Notification = apps.get_model("alerts", "Notification")
    DeliveryAttempt = apps.get_model("alerts", "DeliveryAttempt")
    for channel in Channel.objects.all():
        try:
            secrets = json.loads(channel.secrets or "{}")
        except ValueError:
            secrets = {}
        fields = transport_class(channel.kind).secret_fields if channel.kind in TRANSPORTS else ()
        values = secret_values({**(channel.config or {}), **(secrets if isinstance(secrets, dict) else {})}, fields)
        changed = {name: scrub(getattr(channel, name), values) for name in ("last_error", "disabled_reason")
                   if getattr(channel, name)}
        if any(changed[name] != getattr(channel, name) for name in changed):
            Channel.objects.filter(pk=channel.pk).update(**changed)
        for note in Notification.objects.filter(channel=channel).exclude(last_error="").only("pk", "last_error"):
            clean = scrub(note.last_error, values)
            if clean != note.last_error:
                Notification.objects.filter(pk=note.pk).update(last_error=clean)
        for attempt in DeliveryAttempt.objects.filter(notification__channel=channel).exclude(error="").only("pk", "error"):
            clean = scrub(attempt.error, values)
            if clean != attempt.error:
                DeliveryAttempt.objects.filter(pk=attempt.pk).update(error=clean)


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]

    operations = [migrations.RunPython(scrub_errors, migrations.RunPython.noop)]
