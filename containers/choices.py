from django.db import models


class HostStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    ERROR = "error", "Error"


class ContainerState(models.TextChoices):
    CREATED = "created", "Created"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    RESTARTING = "restarting", "Restarting"
    REMOVING = "removing", "Removing"
    EXITED = "exited", "Exited"
    DEAD = "dead", "Dead"
    REMOVED = "removed", "Removed"


class Health(models.TextChoices):
    NONE = "none", "No healthcheck"
    STARTING = "starting", "Starting"
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"


class TagSource(models.TextChoices):
    USER = "user", "Set by a user"
    COMPOSE = "compose", "From compose labels"


class EventCategory(models.TextChoices):
    CONTAINER = "container", "Container"
    HOST = "host", "Host"
    UPDATE = "update", "Update"
    STACK = "stack", "Compose stack"
    HEALTH = "health", "Health check"
    ALERT = "alert", "Alert"
    USER = "user", "User action"
    SYSTEM = "system", "System"


class Severity(models.TextChoices):
    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"


class DesiredState(models.TextChoices):
    UNSET = "", "Not set"
    RUNNING = "running", "Should run"
    STOPPED = "stopped", "Stopped on purpose"


class StatsTier(models.TextChoices):
    RAW = "raw", "Raw samples"
    FIVE_MINUTES = "5m", "5-minute rollup"
    HOUR = "1h", "1-hour rollup"


class ContainerAction(models.TextChoices):
    START = "start", "Start"
    STOP = "stop", "Stop"
    RESTART = "restart", "Restart"
    KILL = "kill", "Kill"
    PAUSE = "pause", "Pause"
    UNPAUSE = "unpause", "Unpause"
    REMOVE = "remove", "Remove"


class BulkJobStatus(models.TextChoices):
    PENDING = "pending", "Waiting for a worker"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"


class BulkItemStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
