"""Containers made from DockMon: the image pulled when missing, the container created with the
person's settings, started, recorded at once (the monitor's event for it is then a no-op),
audited and written to the event log. Nothing half done: a container that cannot start is
removed again."""

from __future__ import annotations

from containers import engine, services
from containers.engine import create as engine_create
from containers.engine import facts as engine_facts
from containers.engine import images as engine_images
from containers.engine_objects import ObjectError, client_of, record
from containers.images import check_pullable, pull


def create_container(host, spec: dict, *, actor) -> str:
    """Create (and start, unless `start` is false) a container; returns its key."""
    # Guarded by the caller: `deploy` on the host.
    user = getattr(actor, "user", actor)
    with client_of(host) as client:
        if any(f.name == spec["name"] for f in engine_facts.list_containers(client)):
            raise ObjectError(f"A container named {spec['name']} exists already on {host.name}.", 400, field="name")
        missing = engine_images.inspect_image_raw(client, spec["image"]) is None
    if missing:
        check_pullable(host, spec["image"])  # the registry's answer when it has no such image
        pull(host, spec["image"], user)
    with client_of(host) as client:
        try:
            container_id = engine_create.create(client, spec)
        except engine_create.CreateRefused as exc:
            raise ObjectError(str(exc), 400, field="name" if "already in use" in str(exc) else "non_field_errors") from exc
        if spec.get("start", True):
            try:
                engine_create.start(client, container_id)
            except engine.EngineError as exc:
                engine_create.remove(client, container_id)
                raise ObjectError(f"{exc} The container was removed again.", 409) from exc
        facts = engine_facts.inspect_container(client, container_id)
    container = services.apply_facts(host.pk, facts)
    record(actor, host, "container.deployed", f"created container {spec['name']} on {host.name}",
           data={"key": container.key, "name": spec["name"], "image": spec["image"], "started": spec.get("start", True)})
    return container.key


def spec_of(document: dict) -> dict:
    """A creation spec (the API's shapes) read back from a container's inspect document, for a
    duplicate. Anonymous volumes (64 hex digits) are left out: the copy gets its own."""
    config, host_config = document.get("Config") or {}, document.get("HostConfig") or {}
    ports = {}
    for key, bindings in (host_config.get("PortBindings") or {}).items():
        binding = (bindings or [None])[0]
        if not binding or not binding.get("HostPort"):
            ports[key] = None
        else:
            ports[key] = f"{binding['HostIp']}:{binding['HostPort']}" if binding.get("HostIp") else int(binding["HostPort"])
    volumes = {}
    for mount in document.get("Mounts") or []:
        source = mount.get("Name") if mount.get("Type") == "volume" else mount.get("Source")
        if not source or (mount.get("Type") == "volume" and len(source) == 64 and all(c in "0123456789abcdef" for c in source)):
            continue
        volumes[source] = mount["Destination"] + ("" if mount.get("RW", True) else ":ro")
    mode = host_config.get("NetworkMode") or ""
    networks = {}
    for name, endpoint in ((document.get("NetworkSettings") or {}).get("Networks") or {}).items():
        endpoint = endpoint or {}
        short = (document.get("Id") or "")[:12]
        aliases = [a for a in endpoint.get("Aliases") or [] if a != short]
        ipv4 = ((endpoint.get("IPAMConfig") or {}).get("IPv4Address")) or ""
        networks[name] = {**({"aliases": aliases} if aliases else {}), **({"ipv4": ipv4} if ipv4 else {})}
    if mode in ("host", "none") or not networks:
        networks = {mode: {}} if mode in ("host", "none") else {}
    policy = host_config.get("RestartPolicy") or {}
    restart = policy.get("Name") or ""
    if restart == "on-failure" and policy.get("MaximumRetryCount"):
        restart = f"on-failure:{policy['MaximumRetryCount']}"
    return {
        "image": config.get("Image") or document.get("Image"), "command": config.get("Cmd") or [],
        "entrypoint": config.get("Entrypoint") or [],
        "env": dict(item.partition("=")[::2] for item in config.get("Env") or []),
        "labels": dict(config.get("Labels") or {}), "ports": ports, "volumes": volumes, "networks": networks,
        "restart_policy": "" if restart == "no" else restart,
    }


def apply_changes(spec: dict, changes: dict) -> dict:
    """`changes` in the API's shapes: env and labels set the keys given (null removes one) and
    keep the others; every other field given replaces the old value."""
    spec = dict(spec)
    for field, value in changes.items():
        if field in ("env", "labels"):
            merged = dict(spec.get(field) or {})
            for key, item in value.items():
                if item is None:
                    merged.pop(key, None)
                else:
                    merged[key] = item
            spec[field] = merged
        else:
            spec[field] = value
    return spec


def duplicate(container, name: str, changes: dict, *, start: bool, actor) -> str:
    """A new container like `container` (read from the engine), named `name`, with `changes`."""
    # Guarded by the caller: `deploy` on the host.
    from containers.engine import recreate as engine_recreate

    with client_of(container.host) as client:
        try:
            document = engine_recreate.inspect_raw(client, container.container_id)
        except engine.ContainerGone as exc:
            raise ObjectError(f"{container.name} no longer exists on {container.host.name}.", 404) from exc
    spec = apply_changes(spec_of(document), changes)
    spec.update(name=name, start=start)
    return create_container(container.host, spec, actor=actor)
