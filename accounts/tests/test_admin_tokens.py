"""API tokens made in the admin: the full token is shown once, on the page after saving, and
only its hash is stored."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import APIToken, hash_secret

pytestmark = pytest.mark.django_db


def test_a_token_created_in_the_admin_is_shown_once_and_stored_hashed(admin, django_user_model):
    owner = django_user_model.objects.create_user("tokenowner", password=None)
    browser = Client()
    browser.force_login(admin)
    response = browser.post("/admin/accounts/apitoken/add/", {"user": owner.pk, "name": "ci-robot", "expires_at_0": "", "expires_at_1": ""},
                            follow=True)
    assert response.status_code == 200
    shown = re.findall(r"dm_[0-9a-f]{10}_[A-Za-z0-9_-]{20,}", response.content.decode())
    assert len(set(shown)) == 1, shown
    raw = shown[0]
    token = APIToken.objects.get(user=owner, name="ci-robot")
    _, lookup, secret = raw.split("_", 2)
    assert token.lookup == lookup and token.secret_hash == hash_secret(secret) and secret not in token.secret_hash
    # Nothing stored holds the secret itself.
    assert all(secret not in str(value) for value in APIToken.objects.filter(pk=token.pk).values().first().values())

    # It works, for its owner.
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    me = api.get("/api/v1/tokens/")
    assert me.status_code == 200 and [t["name"] for t in me.json()["results"]] == ["ci-robot"]

    # Shown once: neither the list, the token's page nor the next page shows it again.
    for url in ("/admin/accounts/apitoken/", f"/admin/accounts/apitoken/{token.pk}/change/"):
        page = browser.get(url).content.decode()
        assert secret not in page, url
        assert token.prefix in page, url
