"""POST /api/v1/auth/token/ and token authentication."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import APIToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_superuser("alice", password="pw-alice-12345")


def _obtain(**body):
    return APIClient().post("/api/v1/auth/token/", body, format="json")


def test_it_issues_a_token_shown_once_and_stored_hashed(user):
    response = _obtain(username="alice", password="pw-alice-12345", name="ci", expires_in_days=3)
    assert response.status_code == 201, response.data
    raw = response.data["token"]
    assert raw.startswith("dm_") and response.data["name"] == "ci" and response.data["expires_at"].endswith("Z")
    row = APIToken.objects.get(pk=response.data["id"])
    assert raw.split("_", 2)[2] not in (row.secret_hash, row.lookup)
    listed = _auth(raw).get("/api/v1/tokens/").data
    assert "token" not in listed["results"][0]


def _auth(raw, scheme="Token"):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {raw}")
    return client


@pytest.mark.parametrize("scheme", ["Token", "Bearer"])
def test_token_and_bearer_schemes_work(user, scheme):
    raw = _obtain(username="alice", password="pw-alice-12345").data["token"]
    assert _auth(raw, scheme).get("/api/v1/hosts/").status_code == 200


def test_bad_credentials_are_a_400_and_garbage_tokens_a_401(user):
    response = _obtain(username="alice", password="wrong")
    assert response.status_code == 400 and "non_field_errors" in response.data
    assert _obtain(username="alice").status_code == 400
    assert _obtain(username="alice", password="pw-alice-12345", expires_in_days=0).status_code == 400
    assert _auth("dm_nothing_here").get("/api/v1/hosts/").status_code == 401
    assert _auth("garbage").get("/api/v1/hosts/").status_code == 401


def test_read_only_tokens_cannot_write(user, alpha):
    raw = _obtain(username="alice", password="pw-alice-12345", read_only=True).data["token"]
    client = _auth(raw)
    assert client.get("/api/v1/hosts/").status_code == 200
    response = client.post("/api/v1/hosts/", {"name": "x", "url": alpha.unix_url}, format="json")
    assert response.status_code == 403


def test_expired_and_revoked_tokens_stop_working_at_once(user):
    token, raw = APIToken.issue(user, expires_at=timezone.now() - timedelta(seconds=1))
    assert _auth(raw).get("/api/v1/hosts/").status_code == 401
    token, raw = APIToken.issue(user)
    client = _auth(raw)
    assert client.get("/api/v1/hosts/").status_code == 200
    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert client.get("/api/v1/hosts/").status_code == 401


def test_inactive_users_tokens_are_refused(user):
    _, raw = APIToken.issue(user)
    user.is_active = False
    user.save()
    assert _auth(raw).get("/api/v1/hosts/").status_code == 401


def test_login_attempts_are_throttled(user, settings):
    from django.core.cache import cache

    cache.clear()
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"login": "3/min"}}
    from rest_framework.settings import api_settings
    from rest_framework.throttling import ScopedRateThrottle

    ScopedRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    try:
        codes = [_obtain(username="alice", password="wrong").status_code for _ in range(5)]
    finally:
        cache.clear()
    assert codes[:3] == [400, 400, 400] and codes[-1] == 429


def test_health_endpoints():
    client = APIClient()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok", "channel_layer": "ok"}


def test_openapi_schema_and_docs_are_served_without_a_cdn(user):
    client = APIClient()
    client.force_authenticate(user)
    schema = client.get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    body = schema.json()
    assert "/api/v1/hosts/" in body["paths"] and "/api/v1/auth/token/" in body["paths"]
    assert "tokenAuth" in body["components"]["securitySchemes"]
    docs = client.get("/api/v1/docs/").content.decode()
    assert "drf_spectacular_sidecar" in docs and "cdn.jsdelivr" not in docs


# ---------------------------------------------------------------------------
# Token management and the WebSocket
# ---------------------------------------------------------------------------
def test_tokens_are_per_user_and_revocation_is_idempotent(user, django_user_model):
    other = django_user_model.objects.create_user("bob")
    theirs, _ = APIToken.issue(other, name="bobs")
    mine, raw = APIToken.issue(user, name="mine")
    client = _auth(raw)
    created = client.post("/api/v1/tokens/", {"name": "ci", "read_only": True, "expires_in_days": 7}, format="json")
    assert created.status_code == 201 and created.data["token"].startswith("dm_") and created.data["read_only"] is True
    names = {t["name"] for t in client.get("/api/v1/tokens/").data["results"]}
    assert names == {"mine", "ci"}
    assert client.get(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
    assert client.delete(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
    assert client.delete(f"/api/v1/tokens/{created.data['id']}/").status_code == 204
    assert client.delete(f"/api/v1/tokens/{created.data['id']}/").status_code == 204
    assert {t["name"] for t in client.get("/api/v1/tokens/", {"active": "true"}).data["results"]} == {"mine"}
    assert {t["name"] for t in client.get("/api/v1/tokens/", {"active": "false"}).data["results"]} == {"ci"}
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_read_only_tokens_cannot_create_tokens_or_change_anything(user):
    _, raw = APIToken.issue(user, read_only=True)
    client = _auth(raw)
    assert client.post("/api/v1/tokens/", {"name": "escalate"}, format="json").status_code == 403
    assert client.post("/api/v1/groups/", {"name": "g"}, format="json").status_code == 403
    assert client.get("/api/v1/audit/").status_code == 200


def _ws_url(daphne, query=""):
    return f"ws://127.0.0.1:{daphne.port}/ws/events/{query}"


@pytest.mark.slow
def test_websocket_accepts_the_token_in_the_query_or_the_header_and_refuses_dead_tokens(daphne, django_user_model):
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    from testkit.testing import WSClient

    owner = django_user_model.objects.create_user("wsowner")
    _, raw = APIToken.issue(owner, read_only=True)  # reading the stream is allowed to read-only tokens
    for scheme in ("Token", "Bearer"):
        client = WSClient(_ws_url(daphne), headers={"Authorization": f"{scheme} {raw}"})
        assert client.wait_for(lambda m: m["type"] == "hello", timeout=5)["data"]["user"] == "wsowner"
        client.close()
    client = WSClient(_ws_url(daphne, f"?token={raw}"))
    client.wait_for(lambda m: m["type"] == "hello", timeout=5)
    client.close()

    revoked, revoked_raw = APIToken.issue(owner)
    revoked.revoked_at = timezone.now()
    revoked.save()
    _, expired_raw = APIToken.issue(owner, expires_at=timezone.now() - timedelta(seconds=1))
    for headers, query in (({"Authorization": f"Token {revoked_raw}"}, ""), ({}, f"?token={expired_raw}"), ({}, "?token=dm_garbage_x")):
        with pytest.raises((InvalidStatus, ConnectionClosed)):
            client = WSClient(_ws_url(daphne, query), headers=headers)
            client.recv(timeout=5)
            client.recv(timeout=5)


def test_the_websocket_origin_check_stays_in_place():
    # The ASGI stack wraps the WebSocket router in the origin validator (tested live in
    # containers/tests/test_monitor_live.py); this guards against it being dropped.
    from dockmon_site.asgi import application
    from dockmon_site.origin import DockMonOriginValidator, origin_allowed

    layer = application.application_mapping["websocket"]
    while not isinstance(layer, DockMonOriginValidator):
        layer = layer.application  # the wrappers outside it (flow control, the failure guard)

    def scope(origin):
        headers = [(b"host", b"127.0.0.1:8000")] + ([(b"origin", origin.encode())] if origin else [])
        return {"type": "websocket", "headers": headers}

    assert origin_allowed(scope(None)) is True
    assert origin_allowed(scope("http://127.0.0.1:8000")) is True
    assert origin_allowed(scope("http://127.0.0.1:8001")) is False
    assert origin_allowed(scope("http://evil.example")) is False


@pytest.mark.django_db(transaction=True)
def test_revoking_a_token_closes_the_websocket_opened_with_it(django_user_model):
    """The socket was opened with the token; once revoked, nothing more flows and it closes."""
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from dockmon_site import realtime
    from dockmon_site.asgi import application

    owner = django_user_model.objects.create_superuser("wsowner", password="pw-wsowner-123")
    token, raw = APIToken.issue(owner, name="ws")

    async def scenario():
        from asgiref.sync import sync_to_async

        communicator = WebsocketCommunicator(application, f"/ws/events/?token={raw}")
        connected, _ = await communicator.connect()
        assert connected
        await communicator.receive_json_from(timeout=5)  # hello
        client = APIClient()
        client.force_authenticate(owner)
        response = await sync_to_async(client.delete)(f"/api/v1/tokens/{token.pk}/")
        assert response.status_code == 204
        await sync_to_async(realtime.flush)(5)
        output = await communicator.receive_output(timeout=10)
        while output["type"] == "websocket.send":
            output = await communicator.receive_output(timeout=10)
        assert output["type"] == "websocket.close" and output["code"] == 4403
        await communicator.disconnect(timeout=5)

    async_to_sync(scenario)()
