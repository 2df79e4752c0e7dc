from django.db import models


class CheckStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"


class HttpMethod(models.TextChoices):
    GET = "GET", "GET"
    HEAD = "HEAD", "HEAD"
    POST = "POST", "POST"


class ResultStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"


class RestartTrigger(models.TextChoices):
    DIE = "die", "Container died"
    HEALTH_CHECK = "health_check", "Health check failed"


class AttemptStatus(models.TextChoices):
    PENDING = "pending", "Waiting for its time"
    RUNNING = "running", "Restarting"
    SUCCEEDED = "succeeded", "Restarted"
    FAILED = "failed", "Restart failed"
    SKIPPED = "skipped", "Skipped"
