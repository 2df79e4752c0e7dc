"""Update history across re-creations: a container updated twice has three keys; its history
(the Updates page, the API and the container page) shows both runs from any of them."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from containers.models import Container
from updates import executor, runqueue
from updates.choices import RunStatus
from updates.history import lineage_keys
from updates.models import UpdateRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


def _update(key):
    with override_settings(DOCKMON_UPDATE_GRACE_SECONDS=1.0, DOCKMON_UPDATE_STOP_TIMEOUT=2):
        run = runqueue.request_update(Container.objects.get(pk=key), enqueue=False)
        return executor.execute(run.pk)


def _page_runs(user, key) -> set[int]:
    import re

    client = Client()
    client.force_login(user)
    page = client.get(f"/updates/?container={key}").content.decode()
    table = page[page.index('id="runs"'):]
    return {int(n) for n in re.findall(r'<tr data-run="(\d+)"', table)}


def _api_runs(user, key) -> set[int]:
    client = APIClient()
    client.force_authenticate(user)
    return {r["run"] for r in client.get(f"/api/v1/update-runs/?container={key}").json()["results"]}


def test_history_follows_the_container_across_two_updates(
    testbed, alpha, admin, django_user_model, make_host, sync, repo, unique, images_to_remove, containers_to_remove
):
    """GIVEN a container updated twice (keys A → B → C), and a user granted it before the first
    update WHEN its history is asked for by any of its keys THEN both runs are listed, for an
    administrator and for the granted user (whose grant moved to C); an outsider sees none, and
    another container's run is never listed."""
    ref = testbed.image_ref(repo, "1.0")
    testbed.build_image("alpha", ref, "one", cmd=LOOP)
    images_to_remove.append((alpha, ref))
    testbed.push("alpha", ref)
    name, other = f"hist-{unique}", f"hist-other-{unique}"
    containers_to_remove.extend([(alpha, name), (alpha, other)])
    alpha.docker("run", "-d", "--network", "none", "--name", name, ref)
    alpha.docker("run", "-d", "--network", "none", "--name", other, ref)
    host = make_host(alpha)
    sync(host)
    first = Container.objects.get(host=host, name=name)
    granted = django_user_model.objects.create_user("hist-granted", password="pw-granted-123")
    outsider = django_user_model.objects.create_user("hist-outsider", password="pw-outsider-1")
    assign_perm("containers.view_container", granted, first)

    runs = []
    for marker in ("two", "three"):
        testbed.build_image("beta", ref, marker, cmd=LOOP)
        testbed.push("beta", ref)
        run = _update(runs[-1].new_key if runs else first.key)
        assert run.status == RunStatus.SUCCEEDED, run.log
        runs.append(run)
    other_run = _update(Container.objects.get(host=host, name=other).key)
    assert other_run.status == RunStatus.SUCCEEDED, other_run.log
    a, b, c = first.key, runs[0].new_key, runs[1].new_key
    assert runs[1].old_key == b and len({a, b, c}) == 3
    assert lineage_keys(a) == lineage_keys(b) == lineage_keys(c) == [c, b, a]

    both = {runs[0].pk, runs[1].pk}
    for key in (a, b, c):
        assert _page_runs(admin, key) == both, key
        assert _api_runs(admin, key) == both, key
        assert _page_runs(granted, key) == both, key
        assert _api_runs(granted, key) == both, key
        assert _page_runs(outsider, key) == set() and _api_runs(outsider, key) == set()
    # The container page of the current container lists the whole history too.
    client = Client()
    client.force_login(granted)
    page = client.get(f"/containers/{c}/").content.decode()
    assert f'data-run="{runs[0].pk}"' in page and f'data-run="{runs[1].pk}"' in page and f'data-run="{other_run.pk}"' not in page
    assert UpdateRun.objects.count() == 3
