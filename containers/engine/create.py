"""Creating a container from a person's specification (the API's shapes, see design.md)."""

from __future__ import annotations

import docker.errors

from containers.engine.errors import ENGINE_FAILURES, EngineError, wrap_error

SPECIAL_NETWORKS = ("host", "none")


class CreateRefused(EngineError):
    """The engine refused the container (a name in use, a port taken, a bad setting)."""


def _restart_policy(text: str) -> dict | None:
    if not text:
        return None
    name, _, count = text.partition(":")
    policy = {"Name": name}
    if name == "on-failure" and count:
        policy["MaximumRetryCount"] = int(count)
    return policy


def _port_bindings(ports: dict) -> tuple[list, dict]:
    exposed, bindings = [], {}
    for key, target in ports.items():
        number, _, proto = key.partition("/")
        exposed.append((int(number), proto or "tcp"))
        if target is None:
            bindings[key] = None
        elif isinstance(target, int):
            bindings[key] = target
        else:
            address, _, port = str(target).rpartition(":")
            bindings[key] = (address, int(port)) if address else int(port)
    return exposed, bindings


def _binds(volumes: dict) -> dict:
    binds = {}
    for source, target in volumes.items():
        path, _, mode = target.partition(":")
        binds[source] = {"bind": path, "mode": mode or "rw"}
    return binds


def create(client, spec: dict) -> str:
    """Create (not start) the container; returns its ID. `spec['networks']` is {name: {aliases,
    ipv4}}: the first is joined at creation, the others connected after."""
    api = client.api
    networks = list(spec.get("networks", {}).items())
    first = networks[0] if networks else None
    exposed, bindings = _port_bindings(spec.get("ports") or {})
    try:
        host_config = api.create_host_config(
            binds=_binds(spec.get("volumes") or {}) or None, port_bindings=bindings or None,
            restart_policy=_restart_policy(spec.get("restart_policy") or ""), network_mode=first[0] if first else None,
        )
        networking = None
        if first and first[0] not in SPECIAL_NETWORKS:
            endpoint = api.create_endpoint_config(aliases=first[1].get("aliases") or None, ipv4_address=first[1].get("ipv4") or None)
            networking = api.create_networking_config({first[0]: endpoint})
        answer = api.create_container(
            spec["image"], command=spec.get("command") or None, entrypoint=spec.get("entrypoint") or None, name=spec["name"],
            environment=spec.get("env") or None, labels=spec.get("labels") or None, ports=exposed or None,
            host_config=host_config, networking_config=networking,
        )
        container_id = answer["Id"]
        try:
            for name, endpoint in networks[1:]:
                api.connect_container_to_network(container_id, name, aliases=endpoint.get("aliases") or None,
                                                 ipv4_address=endpoint.get("ipv4") or None)
        except ENGINE_FAILURES:
            remove(client, container_id)  # nothing half done
            raise
    except docker.errors.APIError as exc:
        if exc.response is not None and 400 <= exc.response.status_code < 500:
            raise CreateRefused(f"The engine refused: {exc.explanation or exc}") from exc
        raise wrap_error(exc) from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc
    return container_id


def start(client, container_id: str) -> None:
    try:
        client.api.start(container_id)
    except docker.errors.APIError as exc:
        raise CreateRefused(f"The container was created but could not start: {exc.explanation or exc}") from exc
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def remove(client, container_id: str) -> None:
    """Undo a creation that could not be completed (best effort: the caller reports the cause)."""
    try:
        client.api.remove_container(container_id, force=True, v=False)
    except ENGINE_FAILURES:
        pass
