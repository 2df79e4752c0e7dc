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
