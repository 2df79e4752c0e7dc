from django.db import models


class AuditSource(models.TextChoices):
    API = "api", "REST API"
    ADMIN = "admin", "Admin"
    UI = "ui", "Browser UI"
    WEBSOCKET = "websocket", "WebSocket"
    SYSTEM = "system", "System"


class Role(models.TextChoices):
    """The built-in role groups (see accounts/roles.py); custom groups work beside them."""

    ADMINISTRATORS = "Administrators", "Administrators"
    OPERATORS = "Operators", "Operators"
    VIEWERS = "Viewers", "Viewers"
