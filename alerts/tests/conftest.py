"""Fixtures for the alerts tests: a real SMTP server (aiosmtpd) and rows for a host and a
container that need no engine. The local HTTP receiver standing in for every notification
service and inline Celery tasks come from the root conftest.py."""

from __future__ import annotations

import pytest


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""
    from aiosmtpd.controller import Controller

    from testkit.testing import free_port

    class Handler:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "data": envelope.content.decode()})
            return "250 Message accepted for delivery"

    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    controller.messages = handler.messages
    yield controller
    controller.stop()


@pytest.fixture
def smtp_auth_server():
    """A real SMTP server that offers AUTH and refuses every login (535)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from testkit.testing import free_port

    class Handler:
        def __init__(self):
            self.messages = []
            self.logins = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope.content.decode())
            return "250 OK"

    handler = Handler()

    def authenticator(server, session, envelope, mechanism, auth_data):
        handler.logins.append((mechanism, getattr(auth_data, "login", b"").decode(errors="replace")))
        return AuthResult(success=False, handled=False)

    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    controller.handler_state = handler
    yield controller
    controller.stop()


@pytest.fixture
def rows(unique):
    """A host and a running container recorded in the database (no engine behind them)."""
    from containers.models import Container, DockerHost

    class Rows:
        host = DockerHost.objects.create(name=f"al-{unique}", url="unix:///nonexistent.sock", status="online")
        container = Container.objects.create(host=host, container_id=(unique * 8)[:64], short_id=(unique * 2)[:12],
                                             name=f"web-{unique}", state="running", image="demo/web:1")

    return Rows


def make_channel(kind: str, name: str | None = None, **config):
    from alerts.models import NotificationChannel
    from alerts.transports import transport_class

    secret = set(transport_class(kind).secret_fields)
    channel = NotificationChannel(name=name or f"{kind}-{len(config)}-{id(config)}", kind=kind,
                                  config={k: v for k, v in config.items() if k not in secret})
    channel.set_secrets({k: v for k, v in config.items() if k in secret})
    channel.save()
    return channel


def make_rule(kind: str, channels=(), **fields):
    from alerts.models import AlertRule

    rule = AlertRule.objects.create(name=fields.pop("name", kind), kind=kind, **fields)
    rule.channels.set(channels)
    return rule


def die(container, exit_code: int = 1, state: str = "exited"):
    """What the monitor emits when a running container dies."""
    from containers import bus
    from containers.models import Container

    Container.objects.filter(pk=container.pk).update(state=state, exit_code=exit_code)
    return bus.emit("container.state", category="container", host=container.host_id, container=container,
                    message=f"{container.name} exited with code {exit_code}",
                    data={"key": container.key, "state": state, "previous_state": "running", "exit_code": exit_code, "health": "none"})


def start(container, previous: str = "exited"):
    from containers import bus
    from containers.models import Container

    Container.objects.filter(pk=container.pk).update(state="running", exit_code=None)
    return bus.emit("container.state", category="container", host=container.host_id, container=container,
                    message=f"{container.name} is running",
                    data={"key": container.key, "state": "running", "previous_state": previous, "exit_code": None, "health": "none"})
