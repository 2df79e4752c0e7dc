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
