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


@pytest.mark.trust
def test_admin_login_locks_a_username_from_one_address_only(person, settings, fresh_lockout):
    settings.DOCKMON_LOGIN_MAX_FAILURES = 3
    person.is_staff = True
    person.save()
    fresh_lockout(address="127.0.0.31")
    fresh_lockout(address="127.0.0.32")
    for _ in range(3):
        response = _admin_login(person.username, "wrong-password", "127.0.0.31")
        assert response.status_code == 200 and "correct username and password" in response.content.decode()
    # From that address even the right password is refused, with a clear message...
    response = _admin_login(person.username, "pw-person-12345", "127.0.0.31")
    assert response.status_code == 200 and "Too many failed logins" in response.content.decode()
    # ...and through the API as well (same counter), as a 429 saying how long to wait.
    response = _api_login(person.username, "pw-person-12345", "127.0.0.31")
    assert response.status_code == 429 and 0 < int(response["Retry-After"]) <= settings.DOCKMON_LOGIN_DELAY_SECONDS
    # The browser's login page says so too.
    response = Client(REMOTE_ADDR="127.0.0.31").post("/login/", {"username": person.username, "password": "pw-person-12345"})
    assert response.status_code == 200 and "Too many failed logins" in response.content.decode()
    # From another address the account works as usual.
    assert _admin_login(person.username, "pw-person-12345", "127.0.0.32").status_code == 302
    assert _api_login(person.username, "pw-person-12345", "127.0.0.32").status_code == 201
    # An administrator's unlock (reset of the username) lifts it everywhere.
    from accounts import lockout

    lockout.reset(username=person.username)
    assert _admin_login(person.username, "pw-person-12345", "127.0.0.31").status_code == 302


def test_api_token_login_locks_after_failures_and_success_resets_the_count(person, settings, fresh_lockout):
    settings.DOCKMON_LOGIN_MAX_FAILURES = 3
    fresh_lockout(address="127.0.0.33")
    assert [_api_login(person.username, "nope", "127.0.0.33").status_code for _ in range(2)] == [400, 400]
    # A success before the limit clears the username's count from that address...
    assert _api_login(person.username, "pw-person-12345", "127.0.0.33").status_code == 201
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


# ---------------------------------------------------------------------------
# Keyed on username AND address, with a growing wait
# ---------------------------------------------------------------------------
@pytest.mark.trust
def test_a_stranger_hammering_the_administrators_name_cannot_lock_them_out(django_user_model, unique, settings, fresh_lockout):
    """GIVEN a stranger at one address sending wrong passwords for the superuser's name, far past
    every limit (their own address ends up refused outright)
    WHEN the administrator logs in from their own address, in the admin, the browser and the API
    THEN each login works."""
    boss = django_user_model.objects.create_superuser(f"boss{unique}", password="pw-boss-123456")
    fresh_lockout(username=boss.username)
    for address in ("127.0.0.41", "127.0.0.42"):
        fresh_lockout(address=address)
    for _ in range(settings.DOCKMON_LOGIN_MAX_FAILURES_PER_ADDRESS + 5):
        assert _api_login(boss.username, "guess", "127.0.0.41").status_code in (400, 429)
        _admin_login(boss.username, "guess", "127.0.0.41")
    assert _api_login(boss.username, "pw-boss-123456", "127.0.0.41").status_code == 429  # the stranger's address waits
    assert _admin_login(boss.username, "pw-boss-123456", "127.0.0.42").status_code == 302
    assert _api_login(boss.username, "pw-boss-123456", "127.0.0.42").status_code == 201
    browser = Client(REMOTE_ADDR="127.0.0.42")
    assert browser.post("/login/", {"username": boss.username, "password": "pw-boss-123456"}).status_code == 302


@pytest.mark.trust
def test_the_wait_doubles_with_each_failure_up_to_the_cap_and_refused_attempts_do_not_count(person, settings, fresh_lockout):
    import time

    from accounts import lockout

    settings.DOCKMON_LOGIN_MAX_FAILURES = 2
    settings.DOCKMON_LOGIN_DELAY_SECONDS = 1
    settings.DOCKMON_LOGIN_DELAY_MAX_SECONDS = 2
    assert [lockout.delay_after(n) for n in range(1, 7)] == [0, 1, 2, 2, 2, 2]
    settings.DOCKMON_LOGIN_DELAY_MAX_SECONDS = 3600
    assert [lockout.delay_after(n) for n in range(2, 8)] == [1, 2, 4, 8, 16, 32] and lockout.delay_after(500) == 3600
    settings.DOCKMON_LOGIN_DELAY_MAX_SECONDS = 2
    address = "127.0.0.43"
    fresh_lockout(address=address)
    assert [_api_login(person.username, "nope", address).status_code for _ in range(2)] == [400, 400]
    # Waiting 1 s; hammering meanwhile is refused without a check and does not make it longer.
    for _ in range(10):
        assert _api_login(person.username, "pw-person-12345", address).status_code == 429
    time.sleep(1.1)
    assert _api_login(person.username, "nope", address).status_code == 400  # third failure: 2 s
    response = _api_login(person.username, "pw-person-12345", address)
    assert response.status_code == 429 and int(response["Retry-After"]) == 2
    time.sleep(2.1)
    assert _api_login(person.username, "nope", address).status_code == 400  # fourth: still 2 s, the cap
    assert int(_api_login(person.username, "x", address)["Retry-After"]) == 2
    time.sleep(2.1)
    assert _api_login(person.username, "pw-person-12345", address).status_code == 201


def test_only_one_check_per_username_and_address_runs_at_a_time(person, fresh_lockout, rf):
    """A burst of parallel guesses gets one check at a time: while one check of a username from
    an address runs, another is refused unchecked (even with the right password)."""
    from django.contrib.auth import authenticate

    from accounts import lockout

    address = "127.0.0.44"
    fresh_lockout(address=address)
    request = rf.post("/login/", REMOTE_ADDR=address)
    assert lockout.begin_attempt(person.username, request)
    try:
        assert authenticate(request, username=person.username, password="pw-person-12345") is None
        # Another address is not held up.
        assert authenticate(rf.post("/login/", REMOTE_ADDR="127.0.0.45"), username=person.username, password="pw-person-12345") == person
    finally:
        lockout.end_attempt(person.username, request)
    assert authenticate(request, username=person.username, password="pw-person-12345") == person


# ---------------------------------------------------------------------------
# Start-up
# ---------------------------------------------------------------------------
@pytest.mark.trust
def test_start_up_sets_the_administrators_password_only_when_creating_the_user(django_user_model, monkeypatch, unique):
    from django.core.management import call_command

    monkeypatch.setenv("DOCKMON_ADMIN_USER", f"chief{unique}")
    monkeypatch.setenv("DOCKMON_ADMIN_PASSWORD", "pw-first-123456")
    call_command("ensure_admin")
    chief = django_user_model.objects.get(username=f"chief{unique}")
    assert chief.is_superuser and chief.check_password("pw-first-123456")
    # Changed since (in the UI, the admin, changepassword): a restart keeps the new password,
    # whatever the environment says.
    chief.set_password("pw-changed-654321")
    chief.save()
    monkeypatch.setenv("DOCKMON_ADMIN_PASSWORD", "pw-other-999999")
    call_command("ensure_admin")
    chief.refresh_from_db()
    assert chief.check_password("pw-changed-654321") and not chief.check_password("pw-other-999999")
    assert django_user_model.objects.filter(username=f"chief{unique}").count() == 1
