"""Server-side behaviour of the browser pages (the live parts are in test_ui_browser.py)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from guardian.shortcuts import assign_perm

from containers.models import Container, DockerHost, Event

pytestmark = pytest.mark.django_db


def _host(name):
    return DockerHost.objects.create(name=name, url="unix:///nonexistent.sock", status="online")


def _container(host, name, state="running"):
    short = (name.encode().hex() + "0" * 12)[:12]
    return Container.objects.create(host=host, short_id=short, container_id=short + "0" * 52, name=name, state=state, image="demo/app:1.0")


def test_pages_need_a_login():
    client = Client()
    for path in ("/", "/containers/", "/hosts/", "/events/", "/dashboard.json"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), path


def test_login_logout_and_password_change(django_user_model):
    cache.clear()
    django_user_model.objects.create_user("carol", password="pw-carol-12345")
    client = Client()
    assert client.post("/login/", {"username": "carol", "password": "wrong"}).status_code == 200
    response = client.post("/login/", {"username": "carol", "password": "pw-carol-12345"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    response = client.post("/password/", {"old_password": "pw-carol-12345", "new_password1": "An0ther-secret-pw", "new_password2": "An0ther-secret-pw"})
    assert response.status_code == 302
    client.post("/logout/")
    assert client.get("/").status_code == 302
    assert client.post("/login/", {"username": "carol", "password": "An0ther-secret-pw"}).status_code == 302


def test_ui_login_is_throttled_like_the_api(django_user_model, settings):
    cache.clear()
    settings.DOCKMON_LOGIN_MAX_FAILURES = 3
    django_user_model.objects.create_user("dave", password="pw-dave-123456")
    client = Client()
    for _ in range(3):
        client.post("/login/", {"username": "dave", "password": "nope"})
    # Locked: even the right password is refused for now.
    response = client.post("/login/", {"username": "dave", "password": "pw-dave-123456"})
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    cache.clear()


def test_pages_show_only_what_the_user_may_see(django_user_model):
    mine, other = _host("mine-host"), _host("other-host")
    visible = _container(mine, "visible-one")
    hidden = _container(other, "hidden-one")
    Event.objects.create(category="container", type="container.state", host=other, container_key=hidden.key, message="hidden-one exited")
    Event.objects.create(category="container", type="container.state", host=mine, container_key=visible.key, message="visible-one exited")
    user = django_user_model.objects.create_user("erin", password="pw-erin-123456")
    assign_perm("containers.view_dockerhost", user, mine)
    client = Client()
    client.force_login(user)
    for path in ("/", "/containers/", "/hosts/", "/events/", f"/hosts/{mine.pk}/", f"/containers/{visible.key}/", "/dashboard.json"):
        body = client.get(path).content.decode()
        assert "hidden-one" not in body and "other-host" not in body, path
    assert [row[2] for row in _rows(client.get("/containers/"))] == ["visible-one"]
    assert client.get(f"/containers/{hidden.key}/").status_code == 404
    assert client.get(f"/hosts/{other.pk}/").status_code == 404
    # A viewer gets no operation buttons and no logs panel.
    detail = client.get(f"/containers/{visible.key}/").content.decode()
    assert 'data-op="stop"' not in detail and 'id="logs"' not in detail


def test_dashboard_counts(admin_client, admin):
    host = _host("dash")
    _container(host, "a")
    _container(host, "b", state="exited")
    client = Client()
    client.force_login(admin)
    data = client.get("/dashboard.json").json()
    assert data["total"] == 2 and data["states"] == {"running": 1, "exited": 1}
    assert data["hosts"][0]["name"] == "dash" and data["hosts"][0]["running"] == 1


def test_container_list_query_count_is_flat(admin, django_assert_max_num_queries):
    host = _host("many")
    for i in range(60):
        _container(host, f"c{i}")
    client = Client()
    client.force_login(admin)
    with django_assert_max_num_queries(15):
        response = client.get("/containers/")
    assert response.status_code == 200
    assert len(_rows(response)) == 60


def _rows(response) -> list:
    import json
    import re

    match = re.search(r'<script id="rows" type="application/json">(.*?)</script>', response.content.decode(), re.S)
    return json.loads(match.group(1))


def _stats_row(host, points: dict, seconds_ago: int = 0):
    from datetime import timedelta

    from django.utils import timezone

    from containers.choices import StatsTier
    from containers.models import StatsBatch

    # Raw points: [cpu %, mem KiB, limit KiB, rx, tx, read, write, pids]
    return StatsBatch.objects.create(host=host, tier=StatsTier.RAW, ts=timezone.now() - timedelta(seconds=seconds_ago), data=points)


def test_sparkline_history_for_owner_granted_and_outsider(django_user_model, admin):
    mine, other = _host("spark-mine"), _host("spark-other")
    a, b = _container(mine, "spark-a"), _container(other, "spark-b")
    for ago, cpu in ((30, 1.5), (20, 2.5), (10, 3.5)):
        _stats_row(mine, {a.short_id: [cpu, 1024, 2048, 0, 0, 0, 0, 1]}, ago)
        _stats_row(other, {b.short_id: [cpu * 10, 2048, 4096, 0, 0, 0, 0, 1]}, ago)
    _stats_row(mine, {a.short_id: [99.0, 1024, 2048, 0, 0, 0, 0, 1]}, 3600)  # too old for a sparkline
    url = f"/containers/sparklines.json?keys={a.key},{b.key}"
    owner = Client()
    owner.force_login(admin)
    data = owner.get(url).json()
    assert [p[1] for p in data["points"][a.key]] == [1.5, 2.5, 3.5]  # oldest first, the hour-old point left out
    assert [p[2] for p in data["points"][a.key]] == [1024 * 1024] * 3  # bytes, as live samples carry them
    assert data["limits"][b.key] == 4096 * 1024 and len(data["points"][b.key]) == 3
    granted = django_user_model.objects.create_user("spark-granted", password="pw-spark-12345")
    assign_perm("containers.view_dockerhost", granted, mine)
    client = Client()
    client.force_login(granted)
    assert set(client.get(url).json()["points"]) == {a.key}
    outsider = django_user_model.objects.create_user("spark-outsider", password="pw-spark-12345")
    client.force_login(outsider)
    assert client.get(url).json() == {"points": {}, "limits": {}}
    # Bad input is a 400 with the field named; no login is a redirect to it.
    assert client.get("/containers/sparklines.json").status_code == 400
    assert "keys" in client.get("/containers/sparklines.json?keys=" + ",".join(["x"] * 501)).json()
    assert Client().get(url).status_code == 302


def test_event_page_filters(admin, django_user_model):
    mine, other = _host("ev-mine"), _host("ev-other")
    a, b = _container(mine, "ev-a"), _container(other, "ev-b")
    Event.objects.create(category="container", type="container.state", host=mine, container_key=a.key, container_name="ev-a", message="ev-a exited")
    Event.objects.create(category="container", type="container.state", host=other, container_key=b.key, container_name="ev-b", message="ev-b exited")
    client = Client()
    client.force_login(admin)
    assert "ev-a exited" in (body := client.get(f"/events/?host={mine.pk}").content.decode()) and "ev-b exited" not in body
    assert "ev-b exited" in (body := client.get(f"/events/?container={b.key}").content.decode()) and "ev-a exited" not in body
    assert "ev-a exited" in (body := client.get("/events/?container=EV-A").content.decode()) and "ev-b exited" not in body
    # A user granted one host: the other host is no filter option, and filtering by it shows nothing of it.
    user = django_user_model.objects.create_user("ev-granted", password="pw-ev-123456")
    assign_perm("containers.view_dockerhost", user, mine)
    client.force_login(user)
    body = client.get(f"/events/?host={other.pk}").content.decode()
    assert "ev-b" not in body and "ev-other" not in body and "ev-a exited" in body
    assert "ev-b exited" not in client.get(f"/events/?container={b.key}").content.decode()


def test_hosts_json_part_and_host_pages_show_disk_usage(admin):
    from containers.models import DiskUsage

    host = _host("disk-host")
    _container(host, "d1")
    _container(host, "d2", state="exited")
    DiskUsage.objects.create(host=host, images_size=3 * 1024**3, containers_size=1024, volumes_size=2048, build_cache_size=0)
    client = Client()
    client.force_login(admin)
    assert client.get("/dashboard.json?part=hosts").json() == {"hosts": [{"id": str(host.pk), "name": "disk-host", "status": "online", "total": 2, "running": 1}]}
    page = client.get("/hosts/").content.decode()
    assert f'data-bytes="{3 * 1024**3 + 1024 + 2048}"' in page
    detail = client.get(f"/hosts/{host.pk}/").content.decode()
    assert f'data-bytes="{3 * 1024**3}"' in detail and 'id="n-running">1<' in detail
