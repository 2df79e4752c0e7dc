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
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok"}


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
