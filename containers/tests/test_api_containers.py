"""/api/v1/containers/ and /api/v1/events/: filters, pagination, keys, permissions, query counts."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from containers.models import Container, ContainerTag, DockerHost, Event, Tag

pytestmark = pytest.mark.django_db


def _host(name):
    return DockerHost.objects.create(name=name, url="unix:///nonexistent.sock")


def _container(host, name, short=None, state="running", **extra):
    short = short or uuid.uuid4().hex[:12]
    return Container.objects.create(
        host=host, short_id=short, container_id=short + "0" * 52, name=name, image=extra.pop("image", "demo/app:1.0"), state=state, **extra
    )


def _client(user=None):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def test_two_hosts_may_hold_the_same_container_id(admin_client):
    one, two = _host("one"), _host("two")
    a = _container(one, "web", short="abcdef012345")
    b = _container(two, "web", short="abcdef012345")
    assert a.key != b.key and a.key == f"{one.pk}:abcdef012345"
    data = admin_client.get("/api/v1/containers/").data
    assert {c["key"] for c in data["results"]} == {a.key, b.key}
    detail = admin_client.get(f"/api/v1/containers/{b.key}/").data
    assert detail["host"] == str(two.pk) and detail["short_id"] == "abcdef012345"


def test_detail_has_the_contract_fields(admin_client):
    row = _container(_host("h"), "api", labels={"a": "b"}, ports=[{"private_port": 80}], started_at=timezone.now())
    data = admin_client.get(f"/api/v1/containers/{row.key}/").data
    for field in ("key", "host", "short_id", "name", "image", "image_id", "state", "status", "health", "labels", "ports",
                  "tags", "created_at", "started_at", "update_available"):
        assert field in data
    assert data["started_at"].endswith("Z")


def test_unknown_key_is_404(admin_client):
    assert admin_client.get(f"/api/v1/containers/{uuid.uuid4()}:000000000000/").status_code == 404
    assert admin_client.get("/api/v1/containers/not-a-key/").status_code == 404


def test_filters_host_state_tag_search_and_removed(admin_client):
    one, two = _host("one"), _host("two")
    web = _container(one, "web-frontend", image="nginx:1.25")
    _container(one, "db", state="exited", image="postgres:16")
    other = _container(two, "worker")
    gone = _container(two, "old", removed_at=timezone.now(), state="removed")
    tag = Tag.objects.create(name="prod")
    ContainerTag.objects.create(container=web, tag=tag)

    def keys(query):
        response = admin_client.get(f"/api/v1/containers/?{query}")
        assert response.status_code == 200, response.data
        return {c["key"] for c in response.data["results"]}

    assert keys(f"host={two.pk}") == {other.key}
    assert keys("state=exited") == {Container.objects.get(name="db").key}
    assert keys("tag=prod") == {web.key}
    assert keys("search=nginx") == {web.key}
    assert keys("search=front") == {web.key}
    assert gone.key not in keys("")
    assert keys("state=removed") == {gone.key}
    assert gone.key in keys("include_removed=true")
    assert admin_client.get("/api/v1/containers/?state=bogus").status_code == 400
    assert admin_client.get("/api/v1/containers/?host=not-a-uuid").status_code == 400


def test_pagination_shape(admin_client):
    host = _host("p")
    for i in range(7):
        _container(host, f"c{i}")
    data = admin_client.get("/api/v1/containers/?page_size=3").data
    assert set(data) == {"count", "next", "previous", "results"}
    assert data["count"] == 7 and len(data["results"]) == 3 and data["next"]


def test_list_query_count_does_not_grow_with_containers(admin_client):
    host = _host("q")
    tag = Tag.objects.create(name="t")

    def count_queries():
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get("/api/v1/containers/?page_size=500").status_code == 200
        return len(ctx.captured_queries)

    for i in range(5):
        ContainerTag.objects.create(container=_container(host, f"a{i}"), tag=tag)
    small = count_queries()
    for i in range(60):
        ContainerTag.objects.create(container=_container(host, f"b{i}"), tag=tag)
    assert count_queries() == small


def test_list_query_count_is_constant_for_a_granted_user_too(django_user_model):
    host = _host("g")
    user = django_user_model.objects.create_user("viewer", password="pw-viewer-12")
    assign_perm("containers.view_dockerhost", user, host)
    client = _client(user)

    def count_queries():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/api/v1/containers/?page_size=500").status_code == 200
        return len(ctx.captured_queries)

    _container(host, "first")
    count_queries()  # warm the user's permission cache
    small = count_queries()
    for i in range(40):
        _container(host, f"n{i}")
    assert count_queries() == small


class TestContainerPermissions:
    @pytest.fixture
    def world(self, django_user_model):
        mine, other = _host("mine"), _host("other")
        in_mine = _container(mine, "in-mine")
        in_other = _container(other, "in-other")
        single = _container(other, "single")
        host_user = django_user_model.objects.create_user("hostuser", password="pw-hostuser-1")
        one_user = django_user_model.objects.create_user("oneuser", password="pw-oneuser-12")
        outsider = django_user_model.objects.create_user("outsider", password="pw-outsider-1")
        assign_perm("containers.view_dockerhost", host_user, mine)
        assign_perm("containers.view_container", one_user, single)
        return {"mine": mine, "other": other, "in_mine": in_mine, "in_other": in_other, "single": single,
                "host_user": host_user, "one_user": one_user, "outsider": outsider}

    def test_a_host_grant_covers_its_containers_present_and_future(self, world):
        client = _client(world["host_user"])
        assert {c["key"] for c in client.get("/api/v1/containers/").data["results"]} == {world["in_mine"].key}
        later = _container(world["mine"], "later")
        assert later.key in {c["key"] for c in client.get("/api/v1/containers/").data["results"]}
        assert client.get(f"/api/v1/containers/{world['in_other'].key}/").status_code == 404

    def test_a_container_grant_covers_only_that_container(self, world):
        client = _client(world["one_user"])
        data = client.get("/api/v1/containers/").data
        assert data["count"] == 1 and data["results"][0]["key"] == world["single"].key
        assert client.get(f"/api/v1/containers/{world['in_other'].key}/").status_code == 404
        # The host itself stays invisible.
        assert client.get(f"/api/v1/hosts/{world['other'].pk}/").status_code == 404

    def test_an_outsider_sees_nothing_not_even_through_filters_or_counts(self, world):
        client = _client(world["outsider"])
        for query in ("", f"?host={world['mine'].pk}", "?search=in", "?state=running"):
            data = client.get(f"/api/v1/containers/{query}").data
            assert data["count"] == 0 and data["results"] == []

    def test_anonymous_is_refused(self, world):
        assert _client().get("/api/v1/containers/").status_code in (401, 403)


def test_events_api_filters_and_permissions(admin_client, django_user_model):
    one, two = _host("e1"), _host("e2")
    c1 = _container(one, "x")
    Event.objects.create(category="container", type="container.state", host=one, container_key=c1.key, message="x exited")
    Event.objects.create(category="host", type="host.status", host=two, message="e2 offline", severity="error")
    Event.objects.create(category="system", type="system.note", message="system only")
    all_events = admin_client.get("/api/v1/events/").data
    assert all_events["count"] == 3
    assert admin_client.get("/api/v1/events/?category=host").data["count"] == 1
    assert admin_client.get(f"/api/v1/events/?container={c1.key}").data["results"][0]["message"] == "x exited"
    assert admin_client.get(f"/api/v1/events/?host={two.pk}").data["count"] == 1
    since = timezone.now().isoformat()
    assert admin_client.get("/api/v1/events/", {"since": since}).data["count"] == 0
    assert admin_client.get("/api/v1/events/?since=yesterday").status_code == 400
    first = all_events["results"][0]
    assert set(first) >= {"id", "ts", "category", "type", "severity", "host", "container", "message", "data"}
    assert first["ts"].endswith("Z")

    viewer = django_user_model.objects.create_user("ev", password="pw-viewer-12")
    assign_perm("containers.view_dockerhost", viewer, one)
    data = _client(viewer).get("/api/v1/events/").data
    assert data["count"] == 1 and data["results"][0]["host"] == str(one.pk)


def test_settings_endpoint_reads_and_writes_tags_and_desired_state(admin_client, django_user_model):
    host = _host("s")
    row = _container(host, "cfg")
    url = f"/api/v1/containers/{row.key}/settings/"
    response = admin_client.patch(url, {"tags": ["prod", "web"], "desired_state": "running"}, format="json")
    assert response.status_code == 200, response.data
    assert response.data["tags"] == ["prod", "web"] and response.data["desired_state"] == "running"
    assert admin_client.patch(url, {"tags": ["web"]}, format="json").data["tags"] == ["web"]
    assert admin_client.get(f"/api/v1/containers/{row.key}/").data["tags"] == ["web"]
    assert admin_client.patch(url, {"tags": ["bad tag!"]}, format="json").status_code == 400
    assert admin_client.patch(url, {"desired_state": "dancing"}, format="json").status_code == 400
    assert Event.objects.filter(type="container.settings", container_key=row.key).count() == 2

    viewer = django_user_model.objects.create_user("cfgviewer", password="pw-viewer-12")
    assign_perm("containers.view_dockerhost", viewer, host)
    assert _client(viewer).get(url).status_code == 200
    assert _client(viewer).patch(url, {"tags": []}, format="json").status_code == 403
    changer = django_user_model.objects.create_user("cfgchanger", password="pw-change-12")
    assign_perm("containers.view_container", changer, row)
    assign_perm("containers.change_container", changer, row)
    assert _client(changer).patch(url, {"tags": []}, format="json").data["tags"] == []
    outsider = django_user_model.objects.create_user("cfgout", password="pw-outsider-1")
    assert _client(outsider).patch(url, {"tags": []}, format="json").status_code == 404


def test_the_fast_list_representation_equals_the_declared_fields(admin_client):
    """The hand-built representation must say exactly what DRF's field machinery would."""
    from rest_framework import serializers as drf_serializers

    from containers.api.serializers import ContainerSerializer

    host = _host("same")
    row = _container(host, "twin", labels={"a": "1"}, ports=[{"private_port": 80}], started_at=timezone.now(), exit_code=3)
    ContainerTag.objects.create(container=row, tag=Tag.objects.create(name="x"))
    row = Container.objects.select_related("host").prefetch_related("tags").get(pk=row.pk)
    fast = ContainerSerializer(row).data
    generic = drf_serializers.ModelSerializer.to_representation(ContainerSerializer(), row)
    assert dict(fast) == dict(generic)
    listed = admin_client.get("/api/v1/containers/").data["results"][0]
    assert listed == dict(fast)


def test_pages_are_ordered_disjoint_and_complete_whatever_the_order_and_filter(admin_client):
    """The list reads each page's keys first, then those rows: the rows must come back in the
    order asked, with nothing lost or repeated across pages, also with a tag filter (which
    joins) and a requested ordering."""
    hosts = [_host("pga"), _host("pgb")]
    tag = Tag.objects.create(name="paged")
    other = Tag.objects.create(name="other")
    names = []
    for i in range(23):
        row = _container(hosts[i % 2], f"p{(i * 7) % 23:02d}", state="running" if i % 3 else "exited")
        names.append(row.name)
        ContainerTag.objects.create(container=row, tag=tag)
        if i % 2:
            ContainerTag.objects.create(container=row, tag=other)

    def walk(**params):
        seen, page = [], 1
        while True:
            data = admin_client.get("/api/v1/containers/", {"page_size": 5, "page": page, **params}).json()
            seen += data["results"]
            if not data["next"]:
                return data["count"], seen
            page += 1

    count, rows = walk()
    assert count == 23 and [r["name"] for r in rows] == sorted(names)
    count, rows = walk(tag="paged")
    assert count == 23 and [r["name"] for r in rows] == sorted(names)  # one row per container, two tags or one
    count, rows = walk(ordering="-name")
    assert [r["name"] for r in rows] == sorted(names, reverse=True)
    count, rows = walk(state="exited", ordering="host__name")
    assert count == len(rows) == sum(1 for i in range(23) if i % 3 == 0)
    assert [r["host_name"] for r in rows] == sorted(r["host_name"] for r in rows)
    assert all(r["tags"] in (["paged"], ["other", "paged"]) for r in rows)
