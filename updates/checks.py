"""System checks of the updates app's settings (registered in UpdatesConfig.ready())."""

from __future__ import annotations

from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured

from updates.schedule import update_check_schedule


def update_check_cron(app_configs, **kwargs) -> list[Error]:
    try:
        update_check_schedule()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="A five-field cron expression, e.g. \"0 4 * * *\".", id="updates.E001")]
    return []
