import os

from celery import Celery
from celery.signals import import_modules, task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dockmon_site.settings")

app = Celery("dockmon")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@import_modules.connect(sender=app)
def resolve_schedules(sender=None, **kwargs):
    """When a worker or beat starts (after django.setup()), the beat entries whose schedule an app
    works out from a setting (DOCKMON_BEAT_SCHEDULE_FUNCTIONS: entry name -> dotted path of a
    function returning the schedule) get it here; the settings import no app. A bad value stops
    the process with the function's ImproperlyConfigured (the update check's cron expression:
    the web role's migrate stops on the same system check, updates.E001)."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    for name, path in settings.DOCKMON_BEAT_SCHEDULE_FUNCTIONS.items():
        sender.conf.beat_schedule[name]["schedule"] = import_string(path)()


@task_postrun.connect
def _count_task(sender=None, state=None, **kwargs):
    from dockmon_site import counters

    counters.count(counters.TASKS_KEY, f"{getattr(sender, 'name', 'unknown')}|{state or 'UNKNOWN'}")
