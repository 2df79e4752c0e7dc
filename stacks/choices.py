from django.db import models


class StackSource(models.TextChoices):
    DOCKMON = "dockmon", "Managed by DockMon"
    EXTERNAL = "external", "Started outside DockMon"


class StackStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PARTIAL = "partial", "Partly running"
    STOPPED = "stopped", "Stopped"
    DRIFTED = "drifted", "Differs from its file"
    DEPLOYING = "deploying", "A run is in progress"
    ERROR = "error", "The last run failed"


class RunKind(models.TextChoices):
    DEPLOY = "deploy", "Deploy"
    START = "start", "Start"
    STOP = "stop", "Stop"
    RESTART = "restart", "Restart"
    DOWN = "down", "Down"
    DELETE = "delete", "Down and forget"
    ADOPT = "adopt", "Adopt"
    UPDATE = "update", "Update images"


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ROLLED_BACK = "rolled_back", "Rolled back"


ACTIVE_RUN_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)


class RunStage(models.TextChoices):
    QUEUED = "queued", "Queued"
    VALIDATE = "validate", "Validating the file"
    PULL = "pull", "Pulling images"
    CHECK = "check", "Comparing images"
    UP = "up", "Creating and starting services"
    START = "start", "Starting services"
    STOP = "stop", "Stopping services"
    RESTART = "restart", "Restarting services"
    DOWN = "down", "Removing services"
    SYNC = "sync", "Reading what runs"
    TRASH = "trash", "Moving the files to the trash"
    ROLLBACK = "rollback", "Rolling back"
    ADOPT = "adopt", "Reading the project's files"
    DONE = "done", "Done"


class ServiceChange(models.TextChoices):
    UNCHANGED = "unchanged", "Unchanged"
    NEW = "new", "New service"
    REMOVED = "removed", "Removed service"
    IMAGE = "image", "Image changed"
    CONFIG = "config", "Configuration changed"
