import os

from celery import Celery
from celery.signals import import_modules, task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dockmon_site.settings")

app = Celery("dockmon")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@import_modules.connect(sender=app)
def schedule_update_check(sender=None, **kwargs):
    """When a worker or beat starts (after django.setup()): the settings keep the update check's
    cron expression as text, and its beat entry gets the parsed schedule here. A bad expression
    stops the process with ImproperlyConfigured naming the setting (the web role's migrate stops
    on the same system check, updates.E001)."""
    from updates.schedule import update_check_schedule

    sender.conf.beat_schedule["check-updates"]["schedule"] = update_check_schedule()


@task_postrun.connect
def _count_task(sender=None, state=None, **kwargs):
    from dockmon_site import metrics

    metrics.count(metrics.TASKS_KEY, f"{getattr(sender, 'name', 'unknown')}|{state or 'UNKNOWN'}")
