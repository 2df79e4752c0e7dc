import os

from celery import Celery
from celery.signals import task_postrun, worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dockmon_site.settings")

app = Celery("dockmon")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_postrun.connect
def _count_task(sender=None, state=None, **kwargs):
    from dockmon_site import counters

    counters.count(counters.TASKS_KEY, f"{getattr(sender, 'name', 'unknown')}|{state or 'UNKNOWN'}")


@worker_process_shutdown.connect
def _drain_bus(**kwargs):
    # Pool processes may end without running atexit handlers.
    from containers import bus

    bus.drain(bus.SHUTDOWN_WAIT_SECONDS)
