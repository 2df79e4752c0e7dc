"""Trust boundary: what only a superuser may do stays with superusers, through the API and the
Django admin. A non-superuser administrator (the Administrators role) manages ordinary accounts
and tokens, but cannot make anyone staff or superuser, cannot touch a superuser (password,
deactivation, deletion), and cannot mint or move a token for someone else.

People: the owner (superuser), a second superuser, a non-superuser administrator, and an
ordinary user (the outsider of the user administration)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import APIToken

pytestmark = [pytest.mark.django_db, pytest.mark.trust]


@pytest.fixture
def people(people):
    """The owner, a second superuser (`root`), a member of the Administrators role and a `plain`
    user; root, administrator and plain with passwords."""
    people.add("owner", superuser=True)
    people.add("root", superuser=True, password="pw-root-123456")
    people.add("administrator", groups=("Administrators",), password="pw-admin-123456", is_staff=True)
    people.add("plain", password="pw-plain-123456")
    return people


def _api(user) -> APIClient:
    client = APIClient()
    _, raw = APIToken.issue(user, name="trust")
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def _admin(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# ---------------------------------------------------------------------------
# API: users
# ---------------------------------------------------------------------------
def test_api_only_a_superuser_makes_someone_staff(people, unique, django_user_model):
    administrator = _api(people["administrator"])
    response = administrator.post("/api/v1/users/", {"username": f"new{unique}", "password": "Pw-new-user-123", "is_staff": True},
                                  format="json")
    assert response.status_code == 403 and not django_user_model.objects.filter(username=f"new{unique}").exists()
    plain = people["plain"]
    assert administrator.patch(f"/api/v1/users/{plain.pk}/", {"is_staff": True}, format="json").status_code == 403
    # is_superuser is read-only for everyone: sent, it is ignored.
    assert administrator.patch(f"/api/v1/users/{plain.pk}/", {"is_superuser": True, "first_name": "P"}, format="json").status_code == 200
    plain.refresh_from_db()
    assert (plain.is_staff, plain.is_superuser, plain.first_name) == (False, False, "P")
    # Ordinary accounts stay theirs to manage: a new user without staff, a password reset.
    response = administrator.post("/api/v1/users/", {"username": f"new{unique}", "password": "Pw-new-user-123"}, format="json")
    assert response.status_code == 201 and response.data["is_staff"] is False
    assert administrator.patch(f"/api/v1/users/{plain.pk}/", {"password": "Pw-reset-by-admin-1"}, format="json").status_code == 200
    plain.refresh_from_db()
    assert plain.check_password("Pw-reset-by-admin-1")
    # The owner may.
    assert _api(people["owner"]).patch(f"/api/v1/users/{plain.pk}/", {"is_staff": True}, format="json").status_code == 200
    plain.refresh_from_db()
    assert plain.is_staff
    # ...and only the owner takes it away again.
    assert administrator.patch(f"/api/v1/users/{plain.pk}/", {"is_staff": False}, format="json").status_code == 403


def test_api_a_non_superuser_administrator_cannot_touch_a_superuser(people):
    administrator = _api(people["administrator"])
    root = people["root"]
    for body in ({"password": "Pw-taken-over-123"}, {"is_active": False}, {"groups": []}, {"email": "x@example.com"}):
        response = administrator.patch(f"/api/v1/users/{root.pk}/", body, format="json")
        assert response.status_code == 403, body
    assert administrator.delete(f"/api/v1/users/{root.pk}/").status_code == 403
    root.refresh_from_db()
    assert root.check_password("pw-root-123456") and root.is_active and root.email == ""
    # A superuser may.
    assert _api(people["owner"]).patch(f"/api/v1/users/{root.pk}/", {"is_active": False}, format="json").status_code == 200


def test_api_users_are_refused_to_an_ordinary_user(people):
    plain = _api(people["plain"])
    assert plain.get("/api/v1/users/").status_code == 403
    assert plain.patch(f"/api/v1/users/{people['plain'].pk}/", {"is_staff": True}, format="json").status_code == 403


# ---------------------------------------------------------------------------
# API: tokens are always one's own
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["owner", "administrator", "plain"])
def test_api_tokens_cannot_be_minted_for_or_moved_to_another_user(people, who):
    me, other = people[who], people["root"]
    theirs, _ = APIToken.issue(other, name="theirs")
    client = _api(me)
    response = client.post("/api/v1/tokens/", {"name": "mine", "user": other.pk}, format="json")
    assert response.status_code == 201
    assert APIToken.objects.get(pk=response.data["id"]).user == me
    assert not APIToken.objects.filter(user=other, name="mine").exists()
    # Another's token: not listed, not found, not revoked.
    assert theirs.pk not in [t["id"] for t in client.get("/api/v1/tokens/").data["results"]]
    assert client.get(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
    assert client.delete(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
    assert client.patch(f"/api/v1/tokens/{response.data['id']}/", {"user": other.pk}, format="json").status_code == 405
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


# ---------------------------------------------------------------------------
# Admin: users
# ---------------------------------------------------------------------------
def _user_form(user, **changes) -> dict:
    form = {"username": user.username, "first_name": user.first_name, "last_name": user.last_name, "email": user.email,
            "is_active": "on" if user.is_active else "", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01", "initial-date_joined_1": "00:00:00", "_save": "Save"}
    form.update(changes)
    return {k: v for k, v in form.items() if v != ""}


def test_admin_a_non_superuser_administrator_cannot_make_anyone_staff_or_superuser(people):
    plain = people["plain"]
    client = _admin(people["administrator"])
    page = client.get(f"/admin/auth/user/{plain.pk}/change/").content.decode()
    assert 'name="is_staff"' not in page and 'name="is_superuser"' not in page and 'name="username"' in page
    response = client.post(f"/admin/auth/user/{plain.pk}/change/", _user_form(plain, first_name="Pat", is_staff="on", is_superuser="on"))
    assert response.status_code == 302, response.content.decode()[:3000]
    plain.refresh_from_db()
    assert (plain.first_name, plain.is_staff, plain.is_superuser) == ("Pat", False, False)
    # The owner's form has both, and saving them works.
    owner = _admin(people["owner"])
    assert 'name="is_staff"' in owner.get(f"/admin/auth/user/{plain.pk}/change/").content.decode()
    assert owner.post(f"/admin/auth/user/{plain.pk}/change/", _user_form(plain, is_staff="on")).status_code == 302
    plain.refresh_from_db()
    assert plain.is_staff and not plain.is_superuser


def test_admin_a_non_superuser_administrator_cannot_touch_a_superuser(people):
    root = people["root"]
    client = _admin(people["administrator"])
    # Viewable, read-only.
    page = client.get(f"/admin/auth/user/{root.pk}/change/")
    assert page.status_code == 200 and 'name="username"' not in page.content.decode()
    response = client.post(f"/admin/auth/user/{root.pk}/change/", _user_form(root, is_active="", first_name="Owned"))
    assert response.status_code == 403
    response = client.post(f"/admin/auth/user/{root.pk}/password/", {"password1": "Pw-taken-over-123", "password2": "Pw-taken-over-123"})
    assert response.status_code == 403
    assert client.post(f"/admin/auth/user/{root.pk}/delete/", {"post": "yes"}).status_code == 403
    # Nor through the bulk delete action.
    response = client.post("/admin/auth/user/", {"action": "delete_selected", "_selected_action": [root.pk], "post": "yes"})
    root.refresh_from_db()
    assert root.check_password("pw-root-123456") and root.is_active and root.first_name == ""
    # An ordinary account's password they may set.
    plain = people["plain"]
    response = client.post(f"/admin/auth/user/{plain.pk}/password/", {"password1": "Pw-reset-by-admin-1", "password2": "Pw-reset-by-admin-1"})
    assert response.status_code == 302
    plain.refresh_from_db()
    assert plain.check_password("Pw-reset-by-admin-1")


def test_admin_users_are_refused_to_an_ordinary_staff_user(people):
    plain = people["plain"]
    plain.is_staff = True
    plain.save()
    client = _admin(plain)
    assert client.get("/admin/auth/user/").status_code == 403
    assert client.post(f"/admin/auth/user/{plain.pk}/change/", _user_form(plain, is_superuser="on")).status_code == 403
    plain.refresh_from_db()
    assert not plain.is_superuser


# ---------------------------------------------------------------------------
# Admin: tokens
# ---------------------------------------------------------------------------
def _token_form(**fields) -> dict:
    return {"name": "t", "expires_at_0": "", "expires_at_1": "", **fields}


def test_admin_a_non_superuser_administrator_mints_tokens_only_for_themselves(people):
    administrator, root = people["administrator"], people["root"]
    client = _admin(administrator)
    page = client.get("/admin/accounts/apitoken/add/").content.decode()
    assert 'name="user"' not in page and 'name="name"' in page
    response = client.post("/admin/accounts/apitoken/add/", _token_form(name="sneaky", user=root.pk), follow=True)
    assert response.status_code == 200
    token = APIToken.objects.get(name="sneaky")
    assert token.user == administrator
    raw = re.findall(r"dm_[0-9a-f]{10}_[A-Za-z0-9_-]{20,}", response.content.decode())[0]
    me = APIClient()
    me.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert "sneaky" in [t["name"] for t in me.get("/api/v1/tokens/").data["results"]]  # it acts as the administrator
    assert not APIToken.objects.filter(user=root).exists()
    # The owner may mint one for another user (e.g. a service account).
    owner = _admin(people["owner"])
    assert owner.post("/admin/accounts/apitoken/add/", _token_form(name="for-plain", user=people["plain"].pk)).status_code == 302
    assert APIToken.objects.get(name="for-plain").user == people["plain"]


def test_admin_tokens_cannot_be_moved_and_others_tokens_are_only_revoked(people):
    administrator, root = people["administrator"], people["root"]
    mine, _ = APIToken.issue(administrator, name="mine")
    theirs, _ = APIToken.issue(root, name="theirs")
    client = _admin(administrator)
    # Their own: editable, but the user is shown, never a field.
    page = client.get(f"/admin/accounts/apitoken/{mine.pk}/change/").content.decode()
    assert 'name="user"' not in page and 'name="name"' in page
    assert client.post(f"/admin/accounts/apitoken/{mine.pk}/change/", _token_form(name="renamed", user=root.pk)).status_code == 302
    mine.refresh_from_db()
    assert (mine.name, mine.user) == ("renamed", administrator)
    # Someone else's: read-only (403 on save); the owner cannot move one either.
    assert 'name="name"' not in client.get(f"/admin/accounts/apitoken/{theirs.pk}/change/").content.decode()
    response = client.post(f"/admin/accounts/apitoken/{theirs.pk}/change/", _token_form(name="x", read_only="on", user=administrator.pk))
    assert response.status_code == 403
    owner = _admin(people["owner"])
    assert owner.post(f"/admin/accounts/apitoken/{theirs.pk}/change/", _token_form(name="theirs", user=administrator.pk)).status_code == 302
    theirs.refresh_from_db()
    assert (theirs.name, theirs.read_only, theirs.user) == ("theirs", False, root)
    # Revoking anyone's token (how a leaked one is stopped) is an administrator's action.
    listing = client.get("/admin/accounts/apitoken/").content.decode()
    assert 'value="revoke"' in listing
    client.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [theirs.pk]})
    theirs.refresh_from_db()
    assert theirs.revoked_at is not None


def test_admin_tokens_are_refused_to_an_ordinary_staff_user(people):
    plain = people["plain"]
    plain.is_staff = True
    plain.save()
    theirs, _ = APIToken.issue(people["root"], name="theirs")
    client = _admin(plain)
    assert client.get("/admin/accounts/apitoken/").status_code == 403
    assert client.post("/admin/accounts/apitoken/add/", _token_form(name="x", user=people["root"].pk)).status_code == 403
    assert client.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [theirs.pk]}).status_code == 403
    theirs.refresh_from_db()
    assert theirs.revoked_at is None and not APIToken.objects.filter(name="x").exists()
