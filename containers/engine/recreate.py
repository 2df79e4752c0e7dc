"""Recreating a container on a new image (updates): the user's whole configuration, carried over."""

from __future__ import annotations

import docker.errors

from containers.engine.errors import ENGINE_FAILURES, wrap_error

# Network modes that are not a network to re-join.
_SPECIAL_NETWORK_MODES = ("host", "none", "default")


def inspect_raw(client, container_id: str) -> dict:
    try:
        return client.api.inspect_container(container_id)
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def _differs(value, image_value) -> bool:
    return value not in (None, "", [], {}) and value != image_value


def recreate_spec(container: dict, old_image: dict | None, image_ref: str) -> tuple[dict, list[tuple[str, dict]]]:
    """What to send to `POST /containers/create` to get the same container on `image_ref`.

    Only what the user set is carried: values equal to the old image's own defaults (env,
    command, labels, exposed ports, healthcheck...) are left out so the new image's apply.
    Returns (create body, [(network, endpoint config)] to connect after creation).
    """
    config = container.get("Config") or {}
    host_config = dict(container.get("HostConfig") or {})
    image_config = (old_image or {}).get("Config") or {}
    body: dict = {"Image": image_ref}

    if config.get("Hostname") and config["Hostname"] != container["Id"][:12]:
        body["Hostname"] = config["Hostname"]
    for field_name in ("Domainname", "Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr", "StopTimeout", "MacAddress"):
        if config.get(field_name) not in (None, "", False):
            body[field_name] = config[field_name]
    for field_name in ("User", "WorkingDir", "StopSignal"):
        if _differs(config.get(field_name), image_config.get(field_name)):
            body[field_name] = config[field_name]
    image_env = set(image_config.get("Env") or [])
    env = [item for item in config.get("Env") or [] if item not in image_env]
    if env:
        body["Env"] = env
    entrypoint_changed = _differs(config.get("Entrypoint"), image_config.get("Entrypoint"))
    if entrypoint_changed:
        body["Entrypoint"] = config["Entrypoint"]
    if entrypoint_changed or _differs(config.get("Cmd"), image_config.get("Cmd")):
        if config.get("Cmd") is not None:
            body["Cmd"] = config["Cmd"]
    image_labels = image_config.get("Labels") or {}
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if image_labels.get(k) != v}
    if labels:
        body["Labels"] = labels
    image_ports = image_config.get("ExposedPorts") or {}
    exposed = {k: {} for k in (config.get("ExposedPorts") or {}) if k not in image_ports}
    if exposed:
        body["ExposedPorts"] = exposed
    image_volumes = image_config.get("Volumes") or {}
    volumes = {k: {} for k in (config.get("Volumes") or {}) if k not in image_volumes}
    if volumes:
        body["Volumes"] = volumes
    if _differs(config.get("Healthcheck"), image_config.get("Healthcheck")):
        body["Healthcheck"] = config["Healthcheck"]

    # Anonymous volumes (and named ones the image declared) are kept: re-attach them by name,
    # so the data in them survives the update.
    covered = {b.split(":")[1] for b in host_config.get("Binds") or [] if ":" in b}
    covered |= {m.get("Target") for m in host_config.get("Mounts") or []}
    binds = list(host_config.get("Binds") or [])
    for mount in container.get("Mounts") or []:
        if mount.get("Type") == "volume" and mount.get("Destination") not in covered and mount.get("Name"):
            binds.append(f"{mount['Name']}:{mount['Destination']}" + ("" if mount.get("RW", True) else ":ro"))
    if binds:
        host_config["Binds"] = binds
    body["HostConfig"] = host_config

    extra: list[tuple[str, dict]] = []
    mode = host_config.get("NetworkMode") or "default"
    networks = ((container.get("NetworkSettings") or {}).get("Networks") or {})
    if mode not in _SPECIAL_NETWORK_MODES and not mode.startswith("container:") and networks:
        short = container["Id"][:12]

        def endpoint(settings_: dict) -> dict:
            data = {}
            aliases = [a for a in settings_.get("Aliases") or [] if a != short]
            if aliases:
                data["Aliases"] = aliases
            if settings_.get("IPAMConfig"):
                data["IPAMConfig"] = settings_["IPAMConfig"]
            if settings_.get("Links"):
                data["Links"] = settings_["Links"]
            if settings_.get("DriverOpts"):
                data["DriverOpts"] = settings_["DriverOpts"]
            return data

        first = mode if mode in networks else sorted(networks)[0]
        body["NetworkingConfig"] = {"EndpointsConfig": {first: endpoint(networks[first])}}
        extra = [(name, endpoint(networks[name])) for name in sorted(networks) if name != first]
    return body, extra


def create_from_spec(client, name: str, body: dict) -> str:
    """Create a container from a recreate_spec() body; returns the new container's ID."""
    try:
        response = client.api._post_json(client.api._url("/containers/create"), data=body, params={"name": name})
        return client.api._result(response, True)["Id"]
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def connect_network(client, network: str, container_id: str, endpoint: dict) -> None:
    try:
        client.api.connect_container_to_network(
            container_id, network,
            aliases=endpoint.get("Aliases"),
            links=[f"{k}" for k in endpoint.get("Links") or []] or None,
            ipv4_address=(endpoint.get("IPAMConfig") or {}).get("IPv4Address") or None,
            ipv6_address=(endpoint.get("IPAMConfig") or {}).get("IPv6Address") or None,
            driver_opt=endpoint.get("DriverOpts"),
        )
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc


def dependents_sharing_network(client, container_id: str) -> list[str]:
    """IDs of containers whose network mode is `container:<this one>` (recreated after it)."""
    try:
        ids = [item["Id"] for item in client.api.containers(all=True)]
        result = []
        for other in ids:
            try:
                data = client.api.inspect_container(other)
            except docker.errors.NotFound:
                continue  # removed since the list: it shares nothing any more
            mode = ((data.get("HostConfig") or {}).get("NetworkMode") or "")
            if mode in (f"container:{container_id}", f"container:{container_id[:12]}"):
                result.append(other)
        return result
    except ENGINE_FAILURES as exc:
        raise wrap_error(exc) from exc

