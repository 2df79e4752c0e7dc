"""Images of a host over the API, against the real testbed engines and registry: the list with
the containers using each image, the detail with history and config, removal (refused while in
use, naming the containers), prune (the dry run lists exactly what the real run removes) and a
pull from the local registry with `image.pull` progress messages."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm

from accounts.models import AuditEntry
from containers import bus
from containers.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def images_to_remove(testbed, containers_to_remove):
    """(engine, ref or id) pairs force-removed after the test, once the test's containers are
    gone (this fixture ends first, and a running container keeps its image)."""
    items: list = []
    yield items
    for engine, name in containers_to_remove:
        engine.docker("rm", "-f", name, check=False)
    for engine, ref in reversed(items):
        engine.docker("rmi", "-f", ref, check=False)


def _image(testbed, engine, ref, marker, images_to_remove, changes=()):
    image_id = testbed.build_image(engine.name, ref, marker, changes=changes)
    images_to_remove.append((engine, image_id))
    return image_id


def _key(host, image_id: str) -> str:
    return f"{host.pk}:{image_id.removeprefix('sha256:')[:12]}"


def _grant(user, host, *actions):
    for name in actions:
        assign_perm(f"containers.{name}_dockerhost", user, host)


def _by_id(response) -> dict:
    assert response.status_code == 200, response.content
    return {row["id"]: row for row in response.json()["results"]}


def test_the_list_shows_each_image_with_its_users_and_only_on_visible_hosts(people, testbed, alpha, make_host, run_container,
                                                                            images_to_remove, unique):
    host = make_host(alpha)
    ref = testbed.image_ref(f"t/img-{unique}", "1")
    image_id = _image(testbed, alpha, ref, "one", images_to_remove)
    cid = run_container(alpha, f"img-user-{unique}", image=ref)
    _grant(people.granted, host, "view")

    rows = _by_id(people.client("granted").get("/api/v1/images/", {"host": str(host.pk)}))
    row = rows[_key(host, image_id)]
    assert row["repo_tags"] == [ref] and row["host"] == str(host.pk)
    assert row["containers"] == [f"{host.pk}:{cid[:12]}"]
    assert row["dangling"] is False and row["update_available"] is False and row["size"] > 0
    assert row["created"].endswith("Z")
    # search narrows by tag; dangling=true leaves a tagged image out
    searched = _by_id(people.client("granted").get("/api/v1/images/", {"host": str(host.pk), "search": f"img-{unique}"}))
    assert list(searched) == [_key(host, image_id)]
    assert _key(host, image_id) not in _by_id(people.client("granted").get("/api/v1/images/", {"host": str(host.pk), "dangling": "true"}))
    # An outsider sees nothing of the host, with or without naming it.
    outsider = people.client("outsider")
    assert outsider.get("/api/v1/images/", {"host": str(host.pk)}).json() == {"count": 0, "results": [], "errors": []}
    assert str(host.pk) not in outsider.get("/api/v1/images/").content.decode()


def test_the_detail_has_config_and_history_and_is_hidden_from_outsiders(people, testbed, alpha, make_host, images_to_remove, unique):
    host = make_host(alpha)
    ref = testbed.image_ref(f"t/detail-{unique}", "1")
    image_id = _image(testbed, alpha, ref, "detail", images_to_remove, changes=("ENV COLOR=blue", "EXPOSE 8080/tcp", f"LABEL t={unique}"))
    _grant(people.granted, host, "view")
    url = f"/api/v1/images/{_key(host, image_id)}/"

    detail = people.client("granted").get(url)
    assert detail.status_code == 200, detail.content
    body = detail.json()
    assert "COLOR=blue" in body["config"]["env"] and body["config"]["exposed_ports"] == ["8080/tcp"]
    assert body["config"]["labels"] == {"t": unique} and body["config"]["cmd"] == ["/bin/sh"]
    assert body["history"] and body["history"][0]["size"] > 0 and body["architecture"]
    assert people.client("outsider").get(url).status_code == 404
    assert people.client("granted").get(f"/api/v1/images/{host.pk}:000000000000/").status_code == 404


def test_removal_needs_deploy_and_is_refused_while_a_container_uses_the_image(people, testbed, alpha, make_host, run_container,
                                                                              images_to_remove, unique):
    host = make_host(alpha)
    ref = testbed.image_ref(f"t/rm-{unique}", "1")
    image_id = _image(testbed, alpha, ref, "rm", images_to_remove)
    name = f"rm-user-{unique}"
    cid = run_container(alpha, name, "true", image=ref, detach=False)  # exited: a stopped container keeps its image too
    cid = alpha.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    url = f"/api/v1/images/{_key(host, image_id)}/"

    assert people.client("outsider").delete(url).status_code == 404
    _grant(people.granted, host, "view", "operate", "change")
    assert people.client("granted").delete(url).status_code == 403  # operate and change are not deploy
    _grant(people.granted, host, "deploy")
    refused = people.client("granted").delete(url)
    assert refused.status_code == 409, refused.content
    assert refused.json()["containers"] == [{"key": f"{host.pk}:{cid[:12]}", "name": name, "state": "exited"}]
    assert name in refused.json()["detail"]
    assert alpha.docker("image", "inspect", ref, check=False).returncode == 0

    # force: the stopped container no longer holds it
    removed = people.client("granted").delete(url + "?force=true")
    assert removed.status_code == 204, removed.content
    assert alpha.docker("image", "inspect", image_id, check=False).returncode != 0
    event = Event.objects.get(type="image.removed", host=host)
    assert event.actor == people.granted and event.data["image"] == image_id
    audit = AuditEntry.objects.filter(action="image.removed").latest("id")
    assert audit.object_id == str(host.pk)


def test_prune_dry_run_lists_exactly_what_the_real_run_removes(people, testbed, alpha, make_host, run_container, images_to_remove, unique):
    host = make_host(alpha)
    label = f"dockmon.test.prune={unique}"
    unused = testbed.image_ref(f"t/prune-unused-{unique}", "1")
    used = testbed.image_ref(f"t/prune-used-{unique}", "1")
    unused_id = _image(testbed, alpha, unused, "unused", images_to_remove, changes=(f"LABEL {label}",))
    used_id = _image(testbed, alpha, used, "used", images_to_remove, changes=(f"LABEL {label}",))
    # The same tag built again leaves the first image dangling.
    dangling_id = _image(testbed, alpha, unused.replace(":1", ":2"), "old", images_to_remove, changes=(f"LABEL {label}",))
    _image(testbed, alpha, unused.replace(":1", ":2"), "new", images_to_remove, changes=(f"LABEL {label}",))
    run_container(alpha, f"prune-user-{unique}", "true", image=used, detach=False)
    _grant(people.granted, host, "view", "operate")
    url = f"/api/v1/hosts/{host.pk}/images/prune/"
    assert people.client("granted").post(url, {"dry_run": True}, format="json").status_code == 403
    _grant(people.granted, host, "deploy")
    client = people.client("granted")
    new_id = alpha.docker("image", "inspect", "-f", "{{.Id}}", unused.replace(":1", ":2")).stdout.strip()

    dangling_dry = client.post(url, {"dry_run": True, "dangling_only": True, "labels": [label]}, format="json").json()
    assert [i["id"] for i in dangling_dry["images"]] == [_key(host, dangling_id)]

    dry = client.post(url, {"dry_run": True, "dangling_only": False, "labels": [label]}, format="json")
    assert dry.status_code == 200, dry.content
    expected = {_key(host, i) for i in (unused_id, dangling_id, new_id)}
    assert {i["id"] for i in dry.json()["images"]} == expected
    assert dry.json()["space_reclaimed"] == sum(i["size"] for i in dry.json()["images"]) > 0
    assert alpha.docker("image", "inspect", unused_id, check=False).returncode == 0  # a dry run removes nothing

    real = client.post(url, {"dry_run": False, "dangling_only": False, "labels": [label]}, format="json").json()
    assert real["images"] == dry.json()["images"] and real["space_reclaimed"] == dry.json()["space_reclaimed"]
    assert real["failed"] == []
    for image_id in (unused_id, dangling_id, new_id):
        assert alpha.docker("image", "inspect", image_id, check=False).returncode != 0
    assert alpha.docker("image", "inspect", used_id, check=False).returncode == 0  # its stopped user keeps it
    assert Event.objects.filter(type="image.pruned", host=host).count() == 1


def test_pull_from_the_registry_onto_the_tls_engine_reports_progress(people, testbed, alpha, beta, make_host, eager, images_to_remove,
                                                                     unique):
    ref = testbed.image_ref(f"t/pull-{unique}", "1")
    _image(testbed, alpha, ref, "pulled", images_to_remove)
    testbed.push("alpha", ref)
    images_to_remove.append((beta, ref))
    host = make_host(beta, via="tls")
    _grant(people.granted, host, "view")
    url = f"/api/v1/hosts/{host.pk}/images/pull/"
    assert people.client("outsider").post(url, {"image": ref}, format="json").status_code == 404
    assert people.client("granted").post(url, {"image": ref}, format="json").status_code == 403
    _grant(people.granted, host, "operate")
    seen = []

    def collect(event):
        if event.type == "image.pull":
            seen.append(event.data)

    bus.subscribe(collect)
    try:
        response = people.client("granted").post(url, {"image": ref}, format="json")
    finally:
        bus.unsubscribe(collect)
    assert response.status_code == 202, response.content
    assert beta.docker("image", "inspect", ref, check=False).returncode == 0
    assert seen and seen[-1]["status"] == "done" and seen[-1]["finished"] is True and seen[-1]["image"] == ref
    assert all(item["host"] == str(host.pk) for item in seen)
    layers = [layer for item in seen[:-1] for layer in item["layers"].values()]
    assert layers and all(layer["total"] > 0 for layer in layers)  # per-layer bytes
    assert Event.objects.filter(type="image.pulled", host=host, actor=people.granted).exists()


def test_pulling_a_missing_image_is_refused_with_the_registrys_answer(people, testbed, alpha, make_host, eager, unique):
    host = make_host(alpha)
    _grant(people.granted, host, "view", "operate")
    missing = testbed.image_ref(f"t/missing-{unique}", "1")
    response = people.client("granted").post(f"/api/v1/hosts/{host.pk}/images/pull/", {"image": missing}, format="json")
    assert response.status_code == 404, response.content
    detail = response.json()["detail"]
    assert missing in detail and "manifest unknown" in detail.lower(), detail  # the registry's own words
    bad = people.client("granted").post(f"/api/v1/hosts/{host.pk}/images/pull/", {"image": "bad ref"}, format="json")
    assert bad.status_code == 400 and "image" in bad.json()


def test_an_unreachable_engine_is_a_clear_503_and_a_list_error(people, make_host, alpha):
    host = make_host(alpha, url="unix:///nonexistent-dockmon.sock")
    detail = people.client("admin").get(f"/api/v1/images/{host.pk}:0123456789ab/")
    assert detail.status_code == 503 and host.name in detail.json()["detail"]
    listed = people.client("admin").get("/api/v1/images/", {"host": str(host.pk)}).json()
    assert listed["results"] == [] and listed["errors"][0]["host"] == str(host.pk)
    # A host the monitor found offline is not asked in a list of every host (no wait for it).
    host.status = "offline"
    host.save(update_fields=["status"])
    everything = people.client("admin").get("/api/v1/volumes/").json()
    assert [e for e in everything["errors"] if e["host"] == str(host.pk)][0]["detail"].endswith("(the monitor cannot reach it).")
