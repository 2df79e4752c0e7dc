from django.db import models


class UpdateStatus(models.TextChoices):
    UNCHECKED = "unchecked", "Not checked yet"
    OK = "ok", "Up to date"
    UPDATE_AVAILABLE = "update_available", "Update available"
    PINNED = "pinned", "Pinned to a digest"
    LOCAL_IMAGE = "local_image", "Local image (no registry)"
    REGISTRY_ERROR = "registry_error", "Registry error"
    UNSUPPORTED = "unsupported", "Cannot be checked"


class TrackingMode(models.TextChoices):
    EXACT = "exact", "Same tag, new digest"
    PATCH = "patch", "Newer patch release"
    MINOR = "minor", "Newer minor release"
    MAJOR = "major", "Newer major release"
    LATEST = "latest", "Newest release (any version; same tag when not a version)"


class Policy(models.TextChoices):
    ALLOW = "allow", "Allow"
    WARN = "warn", "Warn (needs an explicit force; skipped by auto-update)"
    BLOCK = "block", "Block"


class PolicyRule(models.TextChoices):
    SELF = "self", "DockMon itself"
    LABEL = "label", "Container label"
    CONTAINER = "container", "Per-container policy"
    CATEGORY = "category", "Pattern category"
    DEFAULT = "default", "Default"


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ROLLED_BACK = "rolled_back", "Rolled back"


ACTIVE_RUN_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)


class RunStage(models.TextChoices):
    QUEUED = "queued", "Queued"
    VALIDATE = "validate", "Validating"
    PULL = "pull", "Pulling the image"
    INSPECT = "inspect", "Reading the configuration"
    STOP = "stop", "Stopping the old container"
    RENAME = "rename", "Keeping the old container as a backup"
    CREATE = "create", "Creating the new container"
    START = "start", "Starting the new container"
    HEALTH = "health", "Health gate"
    DEPENDENTS = "dependents", "Recreating dependent containers"
    CLEANUP = "cleanup", "Removing the backup"
    ROLLBACK = "rollback", "Rolling back"
    REPAIR = "repair", "Repaired after a crash"
    DONE = "done", "Done"


class RunTrigger(models.TextChoices):
    MANUAL = "manual", "Manual"
    BULK = "bulk", "Bulk"
    AUTO = "auto", "Auto-update"
    ADMIN = "admin", "Admin action"
