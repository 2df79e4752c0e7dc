"""Engine failures: one exception type whose message a person can act on."""

from __future__ import annotations

import socket
import threading

import docker.errors
import requests.exceptions


class EngineError(Exception):
    """A Docker engine could not do what was asked; the message is meant for people."""

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


class ContainerGone(EngineError):
    """The container no longer exists on the engine."""


# What the SDK, requests and sockets raise when an engine call fails.
ENGINE_FAILURES = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)

# What ssh said when it failed (connect.py's ssh transport), for the error of the call it broke.
_ssh_failure = threading.local()


def note_ssh_failure(message: str) -> None:
    _ssh_failure.message = message


def describe_error(exc: BaseException) -> str:
    """Turn an SDK/requests error into one short sentence."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS handshake failed (check the CA, client certificate and key): {_short(text)}"
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout | socket.timeout):
        return "The engine did not answer in time."
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "Connection refused" in text:
            return "Connection refused: nothing listens at that address."
        if "No such file or directory" in text or "FileNotFoundError" in text:
            return "The socket does not exist."
        if "Permission denied" in text:
            return "Permission denied on the socket."
        if "Name or service not known" in text or "nodename nor servname" in text:
            return "The host name cannot be resolved."
        if "timed out" in text.lower():
            return "The engine did not answer in time."
        return f"Cannot connect: {_short(text)}"
    if isinstance(exc, docker.errors.APIError):
        return f"The engine refused: {exc.explanation or exc}"
    return _short(text) or exc.__class__.__name__


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def wrap_error(exc: BaseException) -> EngineError:
    if isinstance(exc, docker.errors.NotFound):
        return ContainerGone(describe_error(exc))
    unreachable = isinstance(
        exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout | socket.timeout | OSError
    ) and not isinstance(exc, requests.exceptions.SSLError | docker.errors.APIError)  # APIError is an OSError too
    ssh_said = getattr(_ssh_failure, "message", None)
    if ssh_said:
        _ssh_failure.message = None
        if unreachable:
            return EngineError(f"ssh: {_short(ssh_said.removeprefix('ssh: '))}", unreachable=True)
    return EngineError(describe_error(exc), unreachable=unreachable)


def engine_status_code(exc: BaseException) -> int | None:
    cause = exc.__cause__
    if isinstance(cause, docker.errors.APIError) and cause.response is not None:
        return cause.response.status_code
    return None

