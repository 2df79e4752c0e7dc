"""Failed logins are throttled per username and per client address, on the admin login and on
the API token endpoint alike (one counter, accounts/lockout.py)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

# Each test uses its own loopback address, so counters of other tests (or runs) do not mix.


@pytest.fixture
def person(django_user_model, unique, fresh_lockout):
    user = django_user_model.objects.create_user(f"p{unique}", password="pw-person-12345")
    fresh_lockout(username=user.username)
    return user


def _admin_login(username, password, address):
    return Client(REMOTE_ADDR=address).post("/admin/login/?next=/admin/", {"username": username, "password": password})


def _api_login(username, password, address):
    return APIClient(REMOTE_ADDR=address).post("/api/v1/auth/token/", {"username": username, "password": password}, format="json")


def test_admin_login_locks_a_username_after_repeated_failures(person, settings, fresh_lockout):
    settings.DOCKMON_LOGIN_MAX_FAILURES = 3
    person.is_staff = True
    person.save()
    fresh_lockout(address="127.0.0.31")
    fresh_lockout(address="127.0.0.32")
    for _ in range(3):
        response = _admin_login(person.username, "wrong-password", "127.0.0.31")
        assert response.status_code == 200 and "correct username and password" in response.content.decode()
    # Now even the right password is refused, from any address, with a clear message.
    response = _admin_login(person.username, "pw-person-12345", "127.0.0.32")
    assert response.status_code == 200 and "Too many failed logins" in response.content.decode()
    # ...and through the API as well (same counter), as a 429.
    assert _api_login(person.username, "pw-person-12345", "127.0.0.32").status_code == 429
    # The lock lifts when the window ends (here: reset by hand, as an administrator may).
    from accounts import lockout

    lockout.reset(username=person.username)
    assert _admin_login(person.username, "pw-person-12345", "127.0.0.32").status_code == 302


def test_api_token_login_locks_after_failures_and_success_resets_the_count(person, settings, fresh_lockout):
    settings.DOCKMON_LOGIN_MAX_FAILURES = 3
    fresh_lockout(address="127.0.0.33")
    assert [_api_login(person.username, "nope", "127.0.0.33").status_code for _ in range(2)] == [400, 400]
    # A success before the limit clears the username's count...
    assert _api_login(person.username, "pw-person-12345", "127.0.0.33").status_code == 201
    assert Client(REMOTE_ADDR="127.0.0.33").login(username=person.username, password="pw-person-12345")
    assert [_api_login(person.username, "nope", "127.0.0.33").status_code for _ in range(3)] == [400, 400, 400]
    response = _api_login(person.username, "pw-person-12345", "127.0.0.33")
    assert response.status_code == 429 and "Retry-After" in response


def test_one_address_guessing_many_usernames_is_locked_out(django_user_model, person, settings, fresh_lockout):
    settings.DOCKMON_LOGIN_MAX_FAILURES_PER_ADDRESS = 4
    fresh_lockout(address="127.0.0.34")
    fresh_lockout(address="127.0.0.35")
    for name in ("a-guess", "b-guess", "c-guess", "d-guess"):
        fresh_lockout(username=name)
        assert _api_login(name, "whatever", "127.0.0.34").status_code == 400
    # The address is locked, even for a right password of an account it never tried...
    assert _api_login(person.username, "pw-person-12345", "127.0.0.34").status_code == 429
    assert "Too many failed logins" in _admin_login(person.username, "pw-person-12345", "127.0.0.34").content.decode()
    # ...while the same account logs in fine from elsewhere.
    assert _api_login(person.username, "pw-person-12345", "127.0.0.35").status_code == 201
