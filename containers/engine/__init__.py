"""The only package that talks to Docker engines (it alone imports the docker SDK).

Everything it returns is plain data (dataclasses, dicts, strings); callers never see SDK objects
other than the client handle and the streams. Every call carries a timeout, and every failure
becomes an EngineError with a message a person can act on. The package itself offers the client
and the errors, re-exported below: `connect` (URLs, the DOCKMON_ENGINE_ALLOW rules, ssh, timeouts,
the engine's identity) with `tls` (TLS material kept in memory) and `errors`. Each topic is a
module that callers import by name (`from containers.engine import logs as engine_logs`): `facts`
(inspect, list and events as ContainerFacts), `lifecycle` (start, stop, rename, remove...), `logs`,
`stats` (container stats, disk usage), `images` (list, inspect, history, pull, remove, prune
candidates), `volumes`, `networks`, `usage` (which containers hold an image, volume or network)
and `recreate` (a container's configuration carried to a new image). A new engine topic (exec,
compose) gets a module of its own here, built on `errors`.
"""

from containers.engine.connect import (
    NO_TIMEOUT,
    EngineInfo,
    check_engine_allowed,
    client_for_host,
    connect,
    engine_info,
    normalize_url,
    ping,
    probe,
)
from containers.engine.errors import (
    ENGINE_FAILURES,
    ContainerGone,
    EngineError,
    describe_error,
    engine_status_code,
    wrap_error,
)

__all__ = [
    "ENGINE_FAILURES",
    "NO_TIMEOUT",
    "ContainerGone",
    "EngineError",
    "EngineInfo",
    "check_engine_allowed",
    "client_for_host",
    "connect",
    "describe_error",
    "engine_info",
    "engine_status_code",
    "normalize_url",
    "ping",
    "probe",
    "wrap_error",
]
