"""Update detection end to end: real engines, the real registry on 127.0.0.1:5000."""

from __future__ import annotations

import pytest

from containers.models import Container, Event
from updates import services
from updates.choices import TrackingMode, UpdateStatus
from updates.models import ContainerUpdate, UpdatePolicy

pytestmark = pytest.mark.django_db(transaction=True)


def _row(host, cid) -> ContainerUpdate:
    return ContainerUpdate.objects.get(container_id=f"{host.pk}:{cid[:12]}")


def _publish(testbed, repo, tag, marker, images_to_remove, engine="alpha"):
    ref = testbed.image_ref(repo, tag)
    testbed.build_image(engine, ref, marker)
    images_to_remove.append((testbed.engines[engine], ref))
    return ref, testbed.push(engine, ref)


def test_new_push_shows_an_update_and_a_cli_update_makes_it_disappear(
    testbed, alpha, make_host, run_container, sync, repo, unique, images_to_remove
):
    """GIVEN a container running repo:1.0 as pulled from the registry
    WHEN a new image is pushed under the same tag THEN the container shows an update (once announced)
    WHEN the user pulls and recreates it with the docker CLI THEN the update disappears."""
    ref, first = _publish(testbed, repo, "1.0", "one", images_to_remove)
    host = make_host(alpha)
    name = f"upd-{unique}"
    cid = run_container(alpha, name, image=ref)
    sync(host)

    summary = services.check(force=True)
    row = _row(host, cid)
    assert row.status == UpdateStatus.OK, row.error
    assert row.current_digest == first and row.latest_digest == first
    assert row.update_available is False and row.checked_at is not None
    assert summary.statuses.get(UpdateStatus.OK, 0) >= 1

    # A new release, pushed from the other engine so alpha's image keeps only the old digest.
    testbed.build_image("beta", ref, "two")
    images_to_remove.append((testbed.engines["beta"], ref))
    second = testbed.push("beta", ref)
    assert second != first

    services.check(container_keys=[row.container_id], force=True)
    row.refresh_from_db()
    assert row.status == UpdateStatus.UPDATE_AVAILABLE
    assert row.update_available is True
    assert (row.current_digest, row.latest_digest) == (first, second)
    assert row.available_since is not None
    events = Event.objects.filter(type="update.available", container_key=row.container_id)
    assert events.count() == 1 and events.get().data["latest_digest"] == second

    # A second check does not announce the same offer again.
    services.check(container_keys=[row.container_id], force=True)
    assert Event.objects.filter(type="update.available", container_key=row.container_id).count() == 1

    # The container API says so too (annotation on the container queryset).
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_superuser("upd-admin", password="x" * 12))
    assert client.get(f"/api/v1/containers/{row.container_id}/").json()["update_available"] is True

    # Update outside DockMon: pull, remove, run again under the same name.
    alpha.docker("pull", ref)
    alpha.docker("rm", "-f", name)
    new_cid = run_container(alpha, name, image=ref)
    sync(host)
    new_key = f"{host.pk}:{new_cid[:12]}"
    assert Container.objects.get(pk=row.container_id).replaced_by == new_key
    moved = ContainerUpdate.objects.get(container_id=new_key)
    assert moved.pk == row.pk, "the update record follows the re-created container"
    assert not ContainerUpdate.objects.filter(container_id=row.container_id).exists()

    services.check(force=True)
    moved.refresh_from_db()
    assert moved.status == UpdateStatus.OK, moved.error
    assert moved.update_available is False
    assert moved.current_digest == second
    assert client.get(f"/api/v1/containers/{new_key}/").json()["update_available"] is False


def test_pinned_local_and_unreachable_registry_never_report_an_update(
    testbed, alpha, make_host, run_container, sync, unique, images_to_remove, repo
):
    ref, digest = _publish(testbed, repo, "1.0", "one", images_to_remove)
    pinned = f"{testbed.registry}/{repo}@{digest}"
    alpha.docker("pull", pinned)
    # An image that names an unreachable registry (nothing listens on port 1) but was never pulled
    # from it, and one that was "pulled" from it: its RepoDigest is copied from a real pull.
    host = make_host(alpha)
    c_pinned = run_container(alpha, f"upd-pin-{unique}", image=pinned)
    c_local = run_container(alpha, f"upd-local-{unique}", image=testbed.busybox_image)
    c_id = run_container(alpha, f"upd-id-{unique}", image=alpha.inspect(ref)["Id"])
    sync(host)

    services.check(force=True)
    assert _row(host, c_pinned).status == UpdateStatus.PINNED
    assert _row(host, c_pinned).current_digest == digest
    local = _row(host, c_local)
    assert local.status == UpdateStatus.LOCAL_IMAGE and "locally" in local.error
    assert _row(host, c_id).status == UpdateStatus.UNSUPPORTED
    mine = [f"{host.pk}:{c[:12]}" for c in (c_pinned, c_local, c_id)]
    assert not ContainerUpdate.objects.filter(container_id__in=mine, update_available=True).exists()


def test_registry_down_is_a_registry_error_not_an_update(
    testbed, alpha, make_host, run_container, sync, unique, images_to_remove, tmp_path
):
    """A registry that stops answering gives registry_error with the reason."""
    from testkit.registry import RegistryProcess

    registry = RegistryProcess(tmp_path / "reg").start()
    try:
        ref = f"{registry.addr}/upd-{unique}/gone:1.0"
        testbed.build_image("alpha", ref, "gone")
        images_to_remove.append((alpha, ref))
        alpha.docker("push", ref)
        host = make_host(alpha)
        cid = run_container(alpha, f"upd-gone-{unique}", image=ref)
        sync(host)
        services.check(force=True)
        assert _row(host, cid).status == UpdateStatus.OK
    finally:
        registry.stop()
    services.check(force=True)
    row = _row(host, cid)
    assert row.status == UpdateStatus.REGISTRY_ERROR
    assert "refused" in row.error.lower()
    assert row.update_available is False


def test_unreachable_engine_keeps_the_last_answer_and_says_why(
    testbed, alpha, make_host, run_container, sync, repo, unique, images_to_remove
):
    ref, _ = _publish(testbed, repo, "1.0", "one", images_to_remove)
    host = make_host(alpha)
    cid = run_container(alpha, f"upd-{unique}", image=ref)
    sync(host)
    services.check(force=True)
    host.url = "unix:///tmp/upd-no-such-engine.sock"
    host.save()
    summary = services.check(host_ids=[host.pk], force=True)
    row = _row(host, cid)
    assert row.status == UpdateStatus.OK
    assert "Engine unreachable" in row.error
    assert str(host.pk) in summary.host_errors


def test_one_registry_request_per_distinct_reference_shared_across_hosts(
    testbed, alpha, beta, make_host, run_container, sync, repo, unique, images_to_remove, tmp_path
):
    """Three containers on two hosts using one image, one on another image: two HEADs in all,
    counted by the registry itself; a second unforced check is served from the cache."""
    from testkit.registry import RegistryProcess

    registry = RegistryProcess(tmp_path / "reg").start()
    try:
        refs = []
        for i in range(2):
            ref = f"{registry.addr}/upd-{unique}/img{i}:1.0"
            testbed.build_image("alpha", ref, f"img{i}")
            images_to_remove.append((alpha, ref))
            alpha.docker("push", ref)
            beta.docker("pull", ref)
            images_to_remove.append((beta, ref))
            refs.append(ref)
        host_a, host_b = make_host(alpha), make_host(beta, via="tls")
        ids = [
            (host_a, run_container(alpha, f"upd-a1-{unique}", image=refs[0])),
            (host_a, run_container(alpha, f"upd-a2-{unique}", image=refs[0])),
            (host_b, run_container(beta, f"upd-b1-{unique}", image=refs[0])),
            (host_b, run_container(beta, f"upd-b2-{unique}", image=refs[1])),
        ]
        sync(host_a)
        sync(host_b)
        # Only our four containers: the engines also run other tests' containers.
        keys = [f"{host.pk}:{cid[:12]}" for host, cid in ids]
        before = len(registry.manifest_requests())
        summary = services.check(container_keys=keys, force=True)
        assert summary.statuses == {UpdateStatus.OK: 4}, summary.as_dict()
        lines = registry.manifest_requests()[before:]
        assert len(lines) == 2, lines
        assert all('"HEAD ' in line for line in lines)

        again = services.check(container_keys=keys, force=False)
        assert len(registry.manifest_requests()) == before + 2, "the second check is answered from the cache"
        assert again.cache_hits == 2
    finally:
        registry.stop()


def test_multi_arch_index_where_only_another_platform_changed_gives_no_update(
    testbed, alpha, beta, make_host, run_container, sync, repo, unique, images_to_remove
):
    """GIVEN repo:1.0 is a manifest list (amd64 + arm64) and alpha pulled it through the list
    (so alpha's image only knows the list digest) WHEN only the arm64 entry changes THEN no update;
    WHEN the amd64 entry changes THEN an update."""
    from testkit import registry as t

    reg = testbed.registry
    amd_ref = testbed.image_ref(repo, "amd64-build")
    testbed.build_image("beta", amd_ref, "amd64-one")
    images_to_remove.append((beta, amd_ref))
    amd_digest = testbed.push("beta", amd_ref)
    amd_size = t.manifest_size(reg, repo, amd_digest)
    arm1, arm1_size = t.push_variant(reg, repo, amd_digest, architecture="arm64", marker="arm-one")
    index1 = t.put_index(reg, repo, "1.0", [(amd_digest, amd_size, "amd64"), (arm1, arm1_size, "arm64")])

    ref = testbed.image_ref(repo, "1.0")
    alpha.docker("pull", ref)
    images_to_remove.append((alpha, ref))
    digests = alpha.inspect(ref)["RepoDigests"]
    assert f"{reg}/{repo}@{index1}" in digests and f"{reg}/{repo}@{amd_digest}" not in digests
    host = make_host(alpha)
    cid = run_container(alpha, f"upd-multi-{unique}", image=ref)
    sync(host)
    services.check(force=True)
    assert _row(host, cid).status == UpdateStatus.OK

    arm2, arm2_size = t.push_variant(reg, repo, amd_digest, architecture="arm64", marker="arm-two")
    index2 = t.put_index(reg, repo, "1.0", [(amd_digest, amd_size, "amd64"), (arm2, arm2_size, "arm64")])
    assert index2 != index1
    services.check(force=True)
    row = _row(host, cid)
    assert row.status == UpdateStatus.OK, row.error
    assert row.update_available is False
    assert row.latest_digest == index2

    amd2, amd2_size = t.push_variant(reg, repo, amd_digest, marker="amd-two")
    index3 = t.put_index(reg, repo, "1.0", [(amd2, amd2_size, "amd64"), (arm2, arm2_size, "arm64")])
    services.check(force=True)
    row.refresh_from_db()
    assert row.status == UpdateStatus.UPDATE_AVAILABLE
    assert row.latest_digest == index3


def test_semver_tracking_offers_newer_versions_in_mode_and_never_a_downgrade(
    testbed, alpha, make_host, run_container, sync, repo, unique, images_to_remove
):
    from testkit import registry as t

    reg = testbed.registry
    ref, current = _publish(testbed, repo, "1.2.3", "1.2.3", images_to_remove)
    for tag in ("1.2.2", "1.2.4", "1.3.0", "2.0.0", "1.3.1-rc1", "1.2.4-alpine", "latest"):
        t.push_variant(reg, repo, current, tag=tag, marker=tag)
    host = make_host(alpha)
    cid = run_container(alpha, f"upd-semver-{unique}", image=ref)
    sync(host)
    key = f"{host.pk}:{cid[:12]}"
    services.check(force=True)
    row = ContainerUpdate.objects.get(container_id=key)
    assert row.status == UpdateStatus.OK and row.latest_version == "1.2.3"

    expected = {
        (TrackingMode.PATCH, False): "1.2.4",
        (TrackingMode.MINOR, False): "1.3.0",
        (TrackingMode.MINOR, True): "1.3.1-rc1",
        (TrackingMode.MAJOR, False): "2.0.0",
        (TrackingMode.LATEST, False): "2.0.0",
    }
    for (mode, pre), version in expected.items():
        ContainerUpdate.objects.filter(pk=row.pk).update(tracking_mode=mode, include_prerelease=pre)
        services.check(container_keys=[key], force=True)
        row.refresh_from_db()
        assert (row.status, row.latest_version) == (UpdateStatus.UPDATE_AVAILABLE, version), (mode, pre, row.error)
        assert row.current_version == "1.2.3"
        assert row.latest_digest == testbed.registry_digest(repo, version)

    # With 1.2.4 gone, patch mode has only the older 1.2.2 around: that is never offered.
    t.delete_manifest(reg, repo, testbed.registry_digest(repo, "1.2.4"))
    ContainerUpdate.objects.filter(pk=row.pk).update(tracking_mode=TrackingMode.PATCH, include_prerelease=True)
    services.check(container_keys=[key], force=True)
    row.refresh_from_db()
    assert (row.status, row.latest_version, row.update_available) == (UpdateStatus.OK, "1.2.3", False)
    assert UpdatePolicy.objects.count() == 0


def test_each_images_results_go_out_as_soon_as_its_registry_answered(
    testbed, alpha, make_host, sync_container, unique, images_to_remove, containers_to_remove
):
    """GIVEN two containers on two images of one registry, whose answer for the second image is
    held back (a stand-in in front of the real registry: fault injection) WHEN a check runs
    THEN the first container's row is saved and its `update.check` result is sent while the
    second image's request is still waiting; the second follows once it is answered."""
    from containers import bus
    from testkit.registry import RegistryStandIn

    front = RegistryStandIn(testbed.registry, max_hold=30)
    keys = {}
    host = make_host(alpha)
    try:
        for which in ("fast", "slow"):
            repo = f"upd-{unique}/{which}"
            ref = testbed.image_ref(repo, "1.0")
            testbed.build_image("alpha", ref, which)
            images_to_remove.append((alpha, ref))
            testbed.push("alpha", ref)
            front_ref = f"{front.addr}/{repo}:1.0"
            alpha.docker("pull", front_ref)
            images_to_remove.append((alpha, front_ref))
            name = f"upd-{which}-{unique}"
            containers_to_remove.append((alpha, name))
            cid = alpha.docker("run", "-d", "--network", "none", "--name", name, front_ref, "sleep", "3600").stdout.strip()
            keys[which] = sync_container(host, cid).key
        front.hold(f"/v2/upd-{unique}/slow/manifests/")
        seen = []

        def listen(event):
            if event.type != "update.check" or event.data.get("stage") != "container":
                return
            key = event.data["key"]
            row = ContainerUpdate.objects.get(container_id=key)
            seen.append({"key": key, "slow_held": bool(front.held) and not front._released.is_set(), "saved_status": row.status})
            if key == keys["fast"]:
                front.release()  # the held answer may come now

        bus.subscribe(listen)
        try:
            services.check(force=True)
        finally:
            bus.unsubscribe(listen)
        assert [s["key"] for s in seen] == [keys["fast"], keys["slow"]], seen
        assert seen[0]["slow_held"] is True, "the first result went out while the second image was still asked"
        assert seen[0]["saved_status"] == UpdateStatus.OK, "its row was saved before it was announced"
        assert seen[1]["slow_held"] is False and seen[1]["saved_status"] == UpdateStatus.OK
    finally:
        front.stop()
