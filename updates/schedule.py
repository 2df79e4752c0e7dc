"""The update-check schedule: DOCKMON_UPDATE_CHECK_CRON, a strict five-field cron expression,
as a Celery crontab (dockmon_site/celery.py puts it on the beat entry; updates/checks.py refuses
a bad one when DockMon starts)."""

from __future__ import annotations

import re

from celery.schedules import crontab
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_FIELD = re.compile(r"^[0-9A-Za-z*/,-]+$")
_NAMES = ("minute", "hour", "day of month", "month", "day of week")


def parse_cron(expression: str) -> crontab:
    """"0 4 * * *" → crontab(minute="0", hour="4", ...); ValueError naming the bad field."""
    fields = (expression or "").split()
    if len(fields) != 5:
        raise ValueError(f"{expression!r} must have 5 fields (minute hour day-of-month month day-of-week)")
    for name, value in zip(_NAMES, fields, strict=True):
        if not _FIELD.match(value):
            raise ValueError(f"the {name} field {value!r} has characters a cron field cannot have")
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        # crontab expands (and so validates) every field when it is built.
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month, day_of_week=day_of_week)
    except Exception as exc:  # celery raises ValueError or its own ParseException
        raise ValueError(f"{expression!r} is not a valid cron expression: {exc}") from None


def update_check_schedule() -> crontab:
    """The setting's schedule; ImproperlyConfigured naming the setting when it is not valid."""
    try:
        return parse_cron(settings.DOCKMON_UPDATE_CHECK_CRON)
    except ValueError as exc:
        raise ImproperlyConfigured(f"DOCKMON_UPDATE_CHECK_CRON: {exc}") from None
