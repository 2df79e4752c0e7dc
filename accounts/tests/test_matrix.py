"""The permission matrix over every API endpoint, discovered from the OpenAPI schema, so that an
endpoint added later is covered without touching this file.

People: an administrator, a user granted host A, a user granted one container of host A, a user
granted only host B, and an anonymous client. What must hold:
- anonymous: 401 everywhere but the login endpoint (the schema and docs need a login too,
  accounts/tests/test_openapi.py; they are not in the schema they serve);
- lists: 200 with only permitted objects: nothing of host A (ids, names, keys, event messages)
  reaches the host-B user, whatever filter or search they pass, and nothing of host B reaches
  the host-A users; counts agree with what is listed;
- details of host/container-bound objects: 404 for those who may not see them, 200 for those
  who may; unsafe calls: 404 for outsiders, 403 for those who may only view;
- administration endpoints (users, groups, permissions): 403 for everyone but administrators;
- no response ever carries a TLS private key.
"""

from __future__ import annotations

import json
import re

import pytest
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from guardian.shortcuts import assign_perm

from containers.models import Container

pytestmark = pytest.mark.django_db

UNSAFE = ("post", "put", "patch", "delete")
# Endpoints anyone may call: the login itself.
PUBLIC = {"/api/v1/auth/token/"}
# Administration: users, groups, grants and the configuration export/import, for Administrators only.
ADMIN_ONLY_PREFIXES = ("/api/v1/users/", "/api/v1/groups/", "/api/v1/permissions/", "/api/v1/config/")
# Object-bound collections: the world holds one of each on a1 (host A) and on b1 (host B),
# keyed by these prefixes (accounts/tests/conftest.py::_bound_objects).
BOUND_COLLECTIONS = (
    "/api/v1/hosts/", "/api/v1/containers/", "/api/v1/events/", "/api/v1/health-checks/", "/api/v1/alert-rules/",
    "/api/v1/alerts/", "/api/v1/auto-restart/", "/api/v1/maintenance-windows/", "/api/v1/profiles/",
    "/api/v1/update-policies/", "/api/v1/update-runs/", "/api/v1/updates/", "/api/v1/stacks/", "/api/v1/stack-runs/",
    "/api/v1/images/", "/api/v1/volumes/", "/api/v1/networks/",
)
# Collections bound to a host as a whole: a grant on one of its containers does not show them.
HOST_WIDE_COLLECTIONS = ("/api/v1/hosts/", "/api/v1/stacks/", "/api/v1/stack-runs/", "/api/v1/images/", "/api/v1/volumes/",
                         "/api/v1/networks/")
# Collections of objects bound to no host or container (or one's own): their detail routes are
# checked elsewhere (tokens, audit, administration) or hold nothing about hosts.
UNBOUND_COLLECTIONS = (
    "/api/v1/tokens/", "/api/v1/audit/", "/api/v1/users/", "/api/v1/groups/", "/api/v1/permissions/",
    "/api/v1/notification-channels/", "/api/v1/registry-credentials/", "/api/v1/update-policy-categories/",
    "/api/v1/bulk-jobs/",  # one's own jobs (containers/tests/test_bulk.py)
)
# Routes that ask the engine about the container (a world row has none behind it).
LIVE = ("/logs/", "/stats/", "/inspect/")


def _schema_operations():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def _collection(path: str) -> str | None:
    return next((prefix for prefix in BOUND_COLLECTIONS if path.startswith(prefix)), None)


def _fill(path: str, world, side: str = "a") -> str | None:
    """The path with its parameter naming the object of a1 (side "a") or b1 ("b") of its
    collection (None: not object-bound). Any other route whose only parameter is `{key}` names
    a container (the design's identity rule)."""
    if "{" not in path:
        return path
    if path.count("{") != 1:
        return None
    objects = world.a_objects if side == "a" else world.b_objects
    prefix = _collection(path)
    if prefix is not None:
        return re.sub(r"\{[^}]+\}", objects[prefix], path)
    if "{key}" in path:
        return path.replace("{key}", objects["/api/v1/containers/"])
    return None


def _known(url: str) -> bool:
    return _collection(url) is not None


def _any_resolving(path: str) -> str:
    """The path with a parameter value its route accepts (ids are numbers, grants "u<n>"...)."""
    from django.urls import Resolver404

    for value in ("1", "u1", "x", "00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000:000000000000"):
        url = re.sub(r"\{[^}]+\}", value, path)
        try:
            resolve(url)
            return url
        except Resolver404:
            continue
    raise AssertionError(f"no parameter value resolves for {path}")


def _text(response) -> str:
    if hasattr(response, "streaming_content"):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def _call(client, method, path, **extra):
    return getattr(client, method)(path, format="json", **extra) if method != "get" else client.get(path, **extra)


@pytest.fixture
def operations():
    ops = list(_schema_operations())
    # The endpoints that exist at the time of writing must be found; new ones join automatically.
    paths = {path for path, _, _ in ops}
    for expected in ("/api/v1/hosts/", "/api/v1/containers/", "/api/v1/events/", "/api/v1/tokens/", "/api/v1/users/",
                     "/api/v1/groups/", "/api/v1/permissions/", "/api/v1/audit/", "/api/v1/auth/token/"):
        assert expected in paths, expected
    return ops


def test_anonymous_is_refused_everywhere_but_login(world, operations):
    client = world.client(None)
    checked = 0
    for path, method, _ in operations:
        url = _fill(path, world) or _any_resolving(path)
        if path in PUBLIC:
            continue
        response = _call(client, method, url)
        assert response.status_code == 401, (method, url, response.status_code)
        checked += 1
    assert checked >= 20


def test_lists_show_exactly_what_each_person_may_see(world, operations):
    lists = [path for path, method, _ in operations if method == "get" and "{" not in path and path not in PUBLIC]
    assert len(lists) >= 8
    clients = {who: world.client(who) for who in ("admin", "granted", "container_granted", "outsider")}
    for path in lists:
        admin_only = path.startswith(ADMIN_ONLY_PREFIXES)
        assert clients["admin"].get(path).status_code == 200, path
        for who in ("granted", "container_granted", "outsider"):
            response = clients[who].get(path)
            if admin_only:
                assert response.status_code == 403, (who, path)
                continue
            assert response.status_code == 200, (who, path, response.status_code)
            body = _text(response)
            forbidden = world.identifiers_of_a() if who == "outsider" else world.identifiers_of_b()
            if who == "container_granted":
                forbidden += world.identifiers_beyond_a1()
            leaked = [text for text in forbidden if text in body]
            assert not leaked, (who, path, leaked)
            if response["Content-Type"].startswith("application/json"):
                data = response.json()
                if isinstance(data, dict) and "count" in data and data.get("next") is None:
                    assert data["count"] == len(data["results"]), (who, path)


def test_filters_and_search_do_not_leak_objects_of_other_hosts(world, operations):
    lists = [path for path, method, _ in operations if method == "get" and "{" not in path and path not in PUBLIC
             and not path.startswith(ADMIN_ONLY_PREFIXES)]
    outsider = world.client("outsider")
    probes = {"host": str(world.host_a.pk), "container": world.a1.key, "search": world.a1.name, "name": world.host_a.name,
              "tag": "x", "state": "running", "category": "container"}
    for path in lists:
        for name, value in probes.items():
            response = outsider.get(path, {name: value})
            assert response.status_code in (200, 400), (path, name, response.status_code)
            leaked = [text for text in world.identifiers_of_a() if text in _text(response)]
            assert not leaked, (path, name, leaked)
    # Where the filter exists, an outsider's count for host A is zero: nothing to count.
    for path in ("/api/v1/containers/", "/api/v1/events/"):
        assert outsider.get(path, {"host": str(world.host_a.pk)}).json()["count"] == 0
    assert outsider.get("/api/v1/containers/", {"search": world.a1.name}).json()["count"] == 0
    assert outsider.get("/api/v1/hosts/", {"search": world.host_a.name}).json()["count"] == 0
    # The granted user's lists hold host A's objects and nothing else.
    granted = world.client("granted")
    assert {c["key"] for c in granted.get("/api/v1/containers/").json()["results"]} == {world.a1.key, world.a2.key}
    assert [h["id"] for h in granted.get("/api/v1/hosts/").json()["results"]] == [str(world.host_a.pk)]
    one = world.client("container_granted")
    assert [c["key"] for c in one.get("/api/v1/containers/").json()["results"]] == [world.a1.key]
    assert one.get("/api/v1/hosts/").json()["count"] == 0
    assert [e["id"] for e in one.get("/api/v1/events/").json()["results"]] == [world.event_a1.pk]


def _forbidden_for(world, who: str) -> list[str]:
    if who == "outsider":
        return world.identifiers_of_a()
    if who == "container_granted":
        return world.identifiers_of_b() + world.identifiers_beyond_a1()
    if who == "granted":
        return world.identifiers_of_b()
    return []


def test_object_details_and_operations(world, operations):
    """Every route naming one object of a host/container-bound collection, for the object of
    a1 and the object of b1: 200 for who may see it (and no text of what they may not see in the
    answer), 404 for who may not; unsafe calls 404 for who may not see it, 403 for who may only
    view it. A new route must join BOUND_COLLECTIONS or UNBOUND_COLLECTIONS."""
    clients = {who: world.client(who) for who in ("admin", "granted", "container_granted", "outsider")}
    sees = {  # side -> who sees the object of that side (a1's objects; host A itself is not a1's)
        "a": {"admin", "granted", "container_granted"},
        "b": {"admin", "outsider"},
    }
    detail_gets, unsafe, collections = 0, 0, set()
    for path, method, _ in operations:
        if "{" not in path:
            continue
        prefix = _collection(path)
        if prefix is None and "{key}" not in path:
            assert path.startswith(UNBOUND_COLLECTIONS), f"{path}: name its collection in BOUND_ or UNBOUND_COLLECTIONS"
            continue
        collections.add(prefix)
        live = path.startswith("/api/v1/containers/") and path.endswith(LIVE)
        for side in ("a", "b"):
            url = _fill(path, world, side)
            # These rows have no container on the engine: a live view that asks the engine marks
            # them removed (hidden from then on). Bring them back so each check starts alike.
            Container.objects.filter(pk__in=[world.a1.pk, world.a2.pk, world.b1.pk]).update(removed_at=None)
            allowed = set(sees[side])
            if side == "a" and prefix in HOST_WIDE_COLLECTIONS:
                allowed.discard("container_granted")  # one container of a host does not show the host
            if method == "get":
                for who, client in clients.items():
                    response = client.get(url)
                    if who not in allowed:
                        assert response.status_code == 404, (who, url, response.status_code)
                    elif live:
                        # Logs and stats ask the engine, which does not know these rows' containers:
                        # any answer but a refusal or a server error.
                        assert response.status_code not in (401, 403, 500), (who, url, response.status_code)
                    else:
                        assert response.status_code == 200, (who, url, response.status_code, _text(response)[:300])
                        leaked = [text for text in _forbidden_for(world, who) if text in _text(response)]
                        assert not leaked, (who, url, leaked)
                detail_gets += 1
            elif method in UNSAFE:
                required = getattr(resolve(url).func, "initkwargs", {}).get("required_action")
                for who in ("granted", "container_granted", "outsider"):
                    status = _call(clients[who], method, url).status_code
                    if who not in allowed:
                        assert status == 404, (who, method, url, status)
                    elif required != "view":
                        assert status == 403, (who, method, url, status)  # visible, but viewing is all they may do
                unsafe += 1
    assert collections >= set(BOUND_COLLECTIONS), set(BOUND_COLLECTIONS) - collections
    assert detail_gets >= 40 and unsafe >= 40


def test_counts_on_a_shared_rule_count_only_what_the_reader_sees(world):
    """A rule of scope "all" has an open alert on each host: its open_alerts is what the reader
    may see of them, in the list and in the detail."""
    expected = {"admin": 2, "granted": 1, "container_granted": 1, "outsider": 1}
    for who, count in expected.items():
        client = world.client(who)
        detail = client.get(f"/api/v1/alert-rules/{world.rule_all.pk}/")
        assert detail.status_code == 200, (who, detail.status_code)
        assert detail.json()["open_alerts"] == count, (who, detail.json()["open_alerts"])
        listed = {rule["id"]: rule for rule in client.get("/api/v1/alert-rules/", {"page_size": 100}).json()["results"]}
        assert listed[world.rule_all.pk]["open_alerts"] == count, who
        assert client.get("/api/v1/alerts/").json()["count"] == count, who
    # A rule naming a container someone may not see is not theirs to see at all.
    both = world.texts_a_host_only[1]
    names = {who: [r["name"] for r in world.client(who).get("/api/v1/alert-rules/").json()["results"]] for who in expected}
    assert both in names["admin"] and both in names["granted"]
    assert both not in names["container_granted"] and both not in names["outsider"]


def test_operate_grant_on_a_container_allows_exactly_that_container(world, alpha, run_container, unique):
    from containers.permissions import has_container_perm

    # A real container behind a1's row, so that the permitted stop really happens.
    cid = run_container(alpha, f"matrix-{unique}")
    Container.objects.filter(pk=world.a1.pk).delete()
    world.a1 = Container.objects.create(host=world.host_a, container_id=cid, short_id=cid[:12], name=f"matrix-{unique}", state="running")
    assign_perm("containers.view_container", world.container_granted, world.a1)
    client = world.client("container_granted")
    assert client.post(f"/api/v1/containers/{world.a1.key}/stop/").status_code == 403
    assign_perm("containers.operate_container", world.container_granted, world.a1)
    assert has_container_perm(world.container_granted, "operate", world.a1)
    assert not has_container_perm(world.container_granted, "operate", world.a2)
    # a2 on the same host stays invisible; the host itself too.
    assert client.post(f"/api/v1/containers/{world.a2.key}/stop/").status_code == 404
    assert client.patch(f"/api/v1/hosts/{world.host_a.pk}/", {"name": "x"}, format="json").status_code == 404
    response = client.post(f"/api/v1/containers/{world.a1.key}/stop/", {"timeout": 0}, format="json")
    assert response.status_code == 200, response.content
    assert alpha.docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "false"


def test_administration_details_are_for_administrators_only(world):
    from accounts.models import APIToken

    token, _ = APIToken.issue(world.admin)
    for url in (f"/api/v1/users/{world.granted.pk}/", "/api/v1/groups/1/", "/api/v1/permissions/u1/"):
        for who in ("granted", "outsider"):
            assert world.client(who).get(url).status_code == 403, (who, url)
    # Tokens and audit entries: one's own only; another's are not found.
    assert world.client("granted").get(f"/api/v1/tokens/{token.pk}/").status_code == 404


def test_no_response_carries_a_private_key(world, operations):
    admin = world.client("admin")
    for path, method, _ in operations:
        if method != "get":
            continue
        url = _fill(path, world)
        if url is None:
            continue
        body = _text(admin.get(url))
        assert "PRIVATE KEY" not in body and "secretsecret" not in body, url
    host = admin.get(f"/api/v1/hosts/{world.host_a.pk}/").json()
    assert "tls_key" not in host and host["name"] == world.host_a.name


def test_every_field_marked_secret_is_write_only_in_the_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for name, component in schema["components"]["schemas"].items():
        for field, spec in (component.get("properties") or {}).items():
            # Only text can hold a secret: has_password (a boolean) or secret_fields_set (a list
            # of names) say whether secrets are set, not what they are.
            if any(part in field for part in ("password", "tls_key", "secret")) and spec.get("type") == "string":
                assert spec.get("writeOnly") is True, (name, field)
    assert json.dumps(schema)  # the schema is plain JSON
