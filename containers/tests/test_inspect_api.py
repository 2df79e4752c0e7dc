"""A container's full inspect document over the API, from the real engine: environment values
are masked for everyone; someone with `change` on the container may ask for them (audited)."""

from __future__ import annotations

import uuid

import pytest
from guardian.shortcuts import assign_perm

from accounts.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_inspect_masks_environment_values_unless_a_changer_asks(people, alpha, make_host, run_container, sync_container, unique):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    host = make_host(alpha)
    cid = run_container(alpha, f"inspect-{unique}", extra=("-e", f"API_TOKEN={secret}", "--label", f"t={unique}"))
    row = sync_container(host, cid)
    url = f"/api/v1/containers/{row.key}/inspect/"
    assert people.client("outsider").get(url).status_code == 404
    assign_perm("containers.view_dockerhost", people.granted, host)
    viewer = people.client("granted")

    document = viewer.get(url)
    assert document.status_code == 200, document.content
    body = document.json()
    assert body["Id"] == cid and body["Config"]["Labels"]["t"] == unique and body["HostConfig"]["NetworkMode"] == "none"
    assert "API_TOKEN=********" in body["Config"]["Env"] and secret not in document.content.decode()
    assert viewer.get(url, {"reveal_env": "true"}).status_code == 403

    assign_perm("containers.change_container", people.granted, row)
    revealed = viewer.get(url, {"reveal_env": "true"})
    assert revealed.status_code == 200 and f"API_TOKEN={secret}" in revealed.json()["Config"]["Env"]
    assert secret not in viewer.get(url).content.decode()  # still masked unless asked
    assert AuditEntry.objects.filter(action="container.env_revealed", object_id=row.key, user=people.granted).count() == 1

    alpha.docker("rm", "-f", cid)
    assert viewer.get(url).status_code == 404
