"""A compose file rebuilt from a project's running containers, for adopting a project whose own
file DockMon cannot read. What is carried follows the update executor's fidelity rules
(containers/engine/recreate.py: only what the user set, not the image's defaults); anything
this cannot express in compose is named in the notes, for the user's review before the first
deploy. The result is plain data; stacks.compose renders it as YAML."""

from __future__ import annotations

from containers.engine import recreate as engine_recreate

COMPOSE_LABEL_PREFIX = "com.docker.compose."
_RESTART = {"always": "always", "unless-stopped": "unless-stopped", "on-failure": "on-failure", "no": "no", "": "no"}
_CARRIED_HOST_CONFIG = {"Binds", "NetworkMode", "RestartPolicy", "PortBindings", "Privileged", "CapAdd", "CapDrop", "ExtraHosts",
                        "Init", "ReadonlyRootfs", "Tmpfs", "ShmSize", "Mounts", "LogConfig"}
# Set by the engine on every container (its defaults), not by the user.
_ENGINE_DEFAULTS = {"CgroupnsMode": None, "ConsoleSize": None, "MaskedPaths": None, "ReadonlyPaths": None,
                    "IpcMode": ("private", "shareable"), "Runtime": ("runc",), "Isolation": ("default",)}


def _escape(value):
    """Compose interpolates `$`: what ran literally must stay literal."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value


def _duration(nanoseconds) -> str | None:
    if not nanoseconds:
        return None
    seconds = nanoseconds / 1_000_000_000
    return f"{seconds:g}s"


def _engine_default(key: str, value) -> bool:
    if key not in _ENGINE_DEFAULTS:
        return False
    values = _ENGINE_DEFAULTS[key]
    return values is None or value in values


def service_from(project: str, container: dict, image: dict | None) -> tuple[dict, set[str], list[str]]:
    """(compose service, named volumes it uses, notes) for one running container."""
    config = container.get("Config") or {}
    body, _ = engine_recreate.recreate_spec(container, image, config.get("Image") or "")
    host = body.get("HostConfig") or {}
    service: dict = {"image": config.get("Image") or ""}
    notes: list[str] = []
    if "Entrypoint" in body:
        service["entrypoint"] = body["Entrypoint"]
    if "Cmd" in body:
        service["command"] = body["Cmd"]
    if body.get("Env"):
        service["environment"] = body["Env"]
    for source, target in (("User", "user"), ("WorkingDir", "working_dir"), ("StopSignal", "stop_signal"), ("Hostname", "hostname"),
                           ("Tty", "tty"), ("OpenStdin", "stdin_open")):
        if body.get(source) not in (None, "", False):
            service[target] = body[source]
    labels = {k: v for k, v in (body.get("Labels") or {}).items() if not k.startswith(COMPOSE_LABEL_PREFIX)}
    if labels:
        service["labels"] = labels
    health = body.get("Healthcheck")
    if health:
        check = {"test": health.get("Test")}
        for source, target in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period")):
            if _duration(health.get(source)):
                check[target] = _duration(health.get(source))
        if health.get("Retries"):
            check["retries"] = health["Retries"]
        service["healthcheck"] = check
    mode = host.get("NetworkMode") or ""
    if mode in ("host", "none") or mode.startswith("container:"):
        service["network_mode"] = mode
    elif mode and mode not in ("default", "bridge", f"{project}_default"):
        notes.append(f"network {mode} is not carried: add it under networks if the service needs it")
    policy = (host.get("RestartPolicy") or {}).get("Name", "")
    if _RESTART.get(policy, "no") != "no":
        service["restart"] = _RESTART[policy]
    ports = []
    for container_port, bindings in (host.get("PortBindings") or {}).items():
        for binding in bindings or [{}]:
            published = binding.get("HostPort") or ""
            address = binding.get("HostIp") or ""
            ports.append(":".join(p for p in (address, published, container_port.replace("/tcp", "")) if p))
    if ports:
        service["ports"] = ports
    volumes, named = [], set()
    for bind in host.get("Binds") or []:
        parts = bind.split(":")
        source = parts[0]
        if not source.startswith("/"):  # a named volume
            key = source[len(project) + 1:] if source.startswith(f"{project}_") else source
            named.add(key if key != source else f"!{source}")
            parts[0] = key
        volumes.append(":".join(parts))
    if volumes:
        service["volumes"] = volumes
    for source, target in (("Privileged", "privileged"), ("CapAdd", "cap_add"), ("CapDrop", "cap_drop"), ("ExtraHosts", "extra_hosts"),
                           ("Init", "init"), ("ReadonlyRootfs", "read_only")):
        if host.get(source):
            service[target] = host[source]
    if host.get("Tmpfs"):
        service["tmpfs"] = sorted(host["Tmpfs"])
    left_out = sorted(k for k, v in host.items() if k not in _CARRIED_HOST_CONFIG and v not in (None, "", [], {}, 0, False)
                      and not _engine_default(k, v))
    if host.get("Mounts"):
        left_out.append("Mounts")
    if left_out:
        notes.append(f"not carried, check by hand: {', '.join(left_out)}")
    return _escape(service), named, notes


def compose_from(project: str, by_service: dict[str, tuple[dict, dict | None]]) -> tuple[dict, list[str]]:
    """The compose document for {service: (container inspect, image inspect)}, and the notes."""
    services, volumes, notes = {}, {}, []
    for name in sorted(by_service):
        container, image = by_service[name]
        service, named, service_notes = service_from(project, container, image)
        services[name] = service
        notes += [f"{name}: {note}" for note in service_notes]
        for key in named:
            if key.startswith("!"):  # a volume the project did not create: used as it is
                volumes[key[1:]] = {"external": True}
            else:
                volumes[key] = {}
    document: dict = {"services": services}
    if volumes:
        document["volumes"] = volumes
    return document, notes
