from django.db import models


class RuleKind(models.TextChoices):
    CONTAINER_STOPPED = "container_stopped", "Container stopped or died"
    CONTAINER_STARTED = "container_started", "Container started"
    CONTAINER_RESTARTED = "container_restarted", "Container restarted"
    RESTART_LOOP = "restart_loop", "Restart loop"
    CONTAINER_UNHEALTHY = "container_unhealthy", "Container unhealthy (Docker healthcheck)"
    HEALTH_CHECK_FAILED = "health_check_failed", "HTTP health check failed"
    CPU_HIGH = "cpu_high", "CPU high"
    MEMORY_HIGH = "memory_high", "Memory high"
    HOST_OFFLINE = "host_offline", "Host offline"
    DISK_HIGH = "disk_high", "Host disk usage high"
    UPDATE_AVAILABLE = "update_available", "Update available"
    UPDATE_SUCCEEDED = "update_succeeded", "Update succeeded"
    UPDATE_FAILED = "update_failed", "Update failed or rolled back"


# Kinds whose alert stands for a condition that can clear (auto-resolve applies); the others
# stand for things that happened and stay open until someone resolves them.
CONDITION_KINDS = frozenset({
    RuleKind.CONTAINER_STOPPED, RuleKind.CONTAINER_UNHEALTHY, RuleKind.HEALTH_CHECK_FAILED, RuleKind.CPU_HIGH,
    RuleKind.MEMORY_HIGH, RuleKind.HOST_OFFLINE, RuleKind.DISK_HIGH, RuleKind.UPDATE_AVAILABLE,
})
METRIC_KINDS = frozenset({RuleKind.CPU_HIGH, RuleKind.MEMORY_HIGH})
HOST_KINDS = frozenset({RuleKind.HOST_OFFLINE, RuleKind.DISK_HIGH})
THRESHOLD_KINDS = frozenset({RuleKind.CPU_HIGH, RuleKind.MEMORY_HIGH, RuleKind.DISK_HIGH})


class Scope(models.TextChoices):
    ALL = "all", "Everything"
    HOSTS = "hosts", "Hosts"
    CONTAINERS = "containers", "Containers"
    TAGS = "tags", "Tags"


class ThresholdUnit(models.TextChoices):
    PERCENT = "percent", "Percent"
    BYTES = "bytes", "Bytes"
    MIB = "mib", "MiB"
    GIB = "gib", "GiB"


UNIT_BYTES = {ThresholdUnit.BYTES: 1, ThresholdUnit.MIB: 1024**2, ThresholdUnit.GIB: 1024**3}


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    SNOOZED = "snoozed", "Snoozed"
    RESOLVED = "resolved", "Resolved"


class HistoryAction(models.TextChoices):
    FIRED = "fired", "Fired"
    OCCURRED = "occurred", "Occurred again"
    REOPENED = "reopened", "Reopened"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    SNOOZED = "snoozed", "Snoozed"
    UNSNOOZED = "unsnoozed", "Snooze ended"
    RESOLVED = "resolved", "Resolved"
    NOTE = "note", "Note"
    NOTIFIED = "notified", "Notifications queued"
    HELD = "held", "Held (maintenance window)"
    RELEASED = "released", "Released after maintenance"
    COOLDOWN = "cooldown", "Not sent (cooldown)"


class NotificationEvent(models.TextChoices):
    FIRED = "fired", "Fired"
    RESOLVED = "resolved", "Resolved"
    TEST = "test", "Test"


class NotificationStatus(models.TextChoices):
    HELD = "held", "Held (maintenance window)"
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class WindowRecurrence(models.TextChoices):
    ONCE = "once", "Once"
    WEEKLY = "weekly", "Weekly"
