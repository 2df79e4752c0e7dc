"""SMTP email through Django's SMTP backend (host, port, TLS and a timeout per channel)."""

from __future__ import annotations

import smtplib

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend

from alerts.transports.base import Message, Transport, TransportError


class _PolicySMTP(smtplib.SMTP):
    """smtplib's client whose TCP connection goes through the outbound policy: the SMTP host's
    addresses are checked (never an engine, link-local, metadata, a denied range) and the
    socket connects to exactly a checked address."""

    def _get_socket(self, host, port, timeout):
        from dockmon_site import outbound

        return outbound.create_connection(host, port, timeout=timeout)


class _PolicySMTPSSL(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        from dockmon_site import outbound

        return self.context.wrap_socket(outbound.create_connection(host, port, timeout=timeout), server_hostname=self._host)


class _PolicyBackend(EmailBackend):
    @property
    def connection_class(self):
        return _PolicySMTPSSL if self.use_ssl else _PolicySMTP


class Email(Transport):
    kind = "email"
    required_fields = ("to",)
    optional_fields = ("host", "port", "username", "password", "from_address", "security")
    secret_fields = ("password",)
    # The password goes to this server, on this port, protected (or not) this way.
    destination_fields = ("host", "port", "security")

    @classmethod
    def all_fields(cls) -> tuple[str, ...]:
        return (*cls.required_fields, *cls.optional_fields)

    @classmethod
    def validate(cls, config: dict) -> dict:
        errors = super().validate(config)
        to = config.get("to")
        if isinstance(to, str):
            to = [part.strip() for part in to.split(",") if part.strip()]
        if not to or not isinstance(to, list) or not all(isinstance(a, str) and "@" in a for a in to):
            errors["to"] = "Give one or more email addresses."
        if config.get("security", "none") not in ("none", "starttls", "ssl"):
            errors["security"] = "Use none, starttls or ssl."
        port = config.get("port")
        if port not in (None, "") and (not str(port).isdigit() or not 0 < int(port) < 65536):
            errors["port"] = "Use a port number."
        return errors

    def send(self, message: Message) -> None:
        to = self.config["to"]
        if isinstance(to, str):
            to = [part.strip() for part in to.split(",") if part.strip()]
        security = self.config.get("security", "none")
        # Permission: mail goes to the SMTP server an administrator set (alerts/destinations.py).
        backend = _PolicyBackend(
            host=self.config.get("host") or settings.DOCKMON_SMTP_HOST,
            port=int(self.config.get("port") or settings.DOCKMON_SMTP_PORT),
            username=self.config.get("username") or "",
            password=self.config.get("password") or "",
            use_tls=security == "starttls",
            use_ssl=security == "ssl",
            timeout=settings.DOCKMON_NOTIFY_TIMEOUT,
            fail_silently=False,
        )
        body = message.body + (f"\n\n{message.link}" if message.link else "")
        mail = EmailMessage(
            subject=message.title.replace("\n", " ")[:250], body=body,
            from_email=self.config.get("from_address") or settings.DOCKMON_SMTP_FROM, to=to,
            connection=backend,
        )
        from dockmon_site import outbound

        try:
            mail.send()
        except outbound.Refused as exc:
            raise TransportError(f"email: {exc}", permanent=True) from exc
        except outbound.OutboundError as exc:
            raise TransportError(f"email: cannot connect to the SMTP server ({exc.__class__.__name__}: {exc})") from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(f"email: the SMTP server refused the login ({exc.smtp_code})", permanent=True,
                                 status_code=exc.smtp_code) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise TransportError(f"email: every recipient was refused: {', '.join(exc.recipients)}", permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            # 5xx answers are final for this message; 4xx are "try later".
            raise TransportError(f"email: SMTP {exc.smtp_code} {exc.smtp_error!r}", retry=exc.smtp_code < 500,
                                 status_code=exc.smtp_code) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportError(f"email: {exc.__class__.__name__}: {exc}") from exc
