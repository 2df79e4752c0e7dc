"""The update-check schedule: a strict five-field cron expression → a Celery crontab.

Imported by settings.py, so it must not touch Django models or settings.
"""

from __future__ import annotations

import re

from celery.schedules import crontab

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
