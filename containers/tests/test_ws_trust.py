"""Trust boundaries of /ws/events/, live: daphne, a real engine, real Redis.

An owner (superuser), a user granted one container and an outsider on every stream (events,
logs.follow, stats, profiles); an open follow that stops within 5 s of each kind of revocation;
read-only tokens; the profile limits.
"""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from accounts.models import APIToken
from containers import stats
from containers.models import Container, DockerHost, ProfileSession
from testkit.testing import WSClient, wait_for

pytestmark = [pytest.mark.trust, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TICKER = ["sh", "-c", 'trap "exit 0" TERM; i=0; while true; do echo "tick-$i"; i=$((i+1)); sleep 0.5; done']
REVOCATION_DEADLINE = 5.0


def _ws(daphne, *, token: str | None = None, session: str | None = None) -> WSClient:
    headers = {"Authorization": f"Token {token}"} if token else {"Cookie": f"sessionid={session}"}
    client = WSClient(f"ws://127.0.0.1:{daphne.port}/ws/events/", headers=headers)
    client.wait_for(lambda m: m["type"] == "hello", timeout=10)
    return client


def _close_code(client: WSClient, timeout: float) -> int | None:
    """Reads until the server closes the socket; its close code (fails if it stays open)."""
    from websockets.exceptions import ConnectionClosed

    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            raw = client.ws.recv(timeout=left)
        except TimeoutError:
            break
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        client.messages.append(json.loads(raw))
    raise AssertionError(f"the socket stayed open for {timeout}s; got {[m['type'] for m in client.messages][-20:]}")


def _log_of(key):
    return lambda m: m["type"] == "container.log" and m["data"]["key"] == key


def _error_about(key):
    return lambda m: m["type"] == "error" and m["data"].get("key") == key


@pytest.fixture
def ticking(make_host, alpha, run_container, sync_container, unique):
    """A host and one container writing a line every half second."""
    host = make_host(alpha)
    host.status = "online"
    host.save(update_fields=["status"])
    return host, sync_container(host, run_container(alpha, f"tick-{unique}", *TICKER))


def test_owner_granted_and_outsider_on_every_stream(django_user_model, admin, ticking, alpha, monitor, daphne, run_container,
                                                   sync_container, unique):
    """GIVEN an owner, a user granted `view` + `operate` on one container, and an outsider
    THEN on /ws/events/ the owner and the granted user follow its logs, profile it, get its
    stats and its events; the outsider is told "No such container." for logs and profiles and
    receives nothing about it; the granted user gets nothing about a second container."""
    host, row = ticking
    other = sync_container(host, run_container(alpha, f"other-{unique}", *TICKER))
    granted = django_user_model.objects.create_user(f"g{unique}", password="pw-granted-123")
    outsider = django_user_model.objects.create_user(f"o{unique}", password="pw-outsider-12")
    for perm in ("containers.view_container", "containers.operate_container"):
        assign_perm(perm, granted, row)
    monitor()
    wait_for(lambda: DockerHost.objects.get(pk=host.pk).status == "online", 15, message="host online")
    sockets = {name: _ws(daphne, token=APIToken.issue(user)[1]) for name, user in
               (("owner", admin), ("granted", granted), ("outsider", outsider))}

    for ws in sockets.values():
        ws.send({"action": "logs.follow", "key": row.key})
        ws.send({"action": "profile.start", "key": row.key})
        ws.send({"action": "stats.subscribe", "keys": [row.key, other.key]})
    for name in ("owner", "granted"):
        ws = sockets[name]
        ws.wait_for(_log_of(row.key), timeout=10)
        started = ws.wait_for(lambda m: m["type"] == "profile.started", timeout=10)
        ws.send({"action": "profile.stop", "session": started["data"]["session"]})
        ws.wait_for(lambda m: m["type"] == "profile.stopped", timeout=10)
    assert sockets["owner"].wait_for(lambda m: m["type"] == "stats.subscribed")["data"]["keys"] == sorted([row.key, other.key])
    assert sockets["granted"].wait_for(lambda m: m["type"] == "stats.subscribed")["data"]["keys"] == [row.key]
    outsider_ws = sockets["outsider"]
    outsider_ws.wait_for(lambda m: m["type"] == "stats.subscribed")
    refusals = [m["data"]["message"] for m in outsider_ws.drain(1.0) if m["type"] == "error"]
    assert refusals == ["No such container.", "No such container."]  # logs.follow, profile.start
    assert not ProfileSession.objects.filter(user=outsider).exists()

    stats.collect_host(host.pk)
    for name in ("owner", "granted"):
        sample = sockets[name].wait_for(lambda m: m["type"] == "stats.sample", timeout=10)
        assert row.key in {s["key"] for s in sample["data"]["samples"]}
    assert [s["key"] for s in sockets["granted"].wait_for(lambda m: m["type"] == "stats.sample")["data"]["samples"]] == [row.key]

    alpha.docker("stop", "-t", "0", other.name)
    alpha.docker("stop", "-t", "0", row.name)
    for name in ("owner", "granted"):
        sockets[name].wait_for(lambda m: m["type"] == "container.state" and m["data"]["key"] == row.key
                               and m["data"]["state"] == "exited", timeout=15)
    sockets["owner"].wait_for(lambda m: m["type"] == "container.state" and m["data"]["key"] == other.key, timeout=15)
    outsider_ws.drain(1.0)
    assert not [m for m in outsider_ws.messages if m["data"].get("key") in (row.key, other.key) and m["type"] != "error"]
    assert not [m for m in sockets["granted"].messages if m["data"].get("key") == other.key]
    for ws in sockets.values():
        ws.close()


REVOCATIONS = {
    # name: (socket opened with a session?, the reason the server gives, or "permission" for a follow that ends)
    "grant removed": (False, "permission"),
    "group removed": (False, "permission"),
    "deactivated": (False, "deactivated"),
    "token revoked": (False, "token_revoked"),
    "logged out": (True, "logged_out"),
    "password changed": (True, "password_changed"),
    # No signal is sent for these: the periodic re-check (DOCKMON_WS_RECHECK_SECONDS) finds them.
    "token expired": (False, "token_revoked"),
    "session deleted": (True, "logged_out"),
}


@pytest.mark.parametrize("revocation", list(REVOCATIONS))
def test_an_open_follow_stops_within_5_s_of_revocation(revocation, django_user_model, ticking, daphne, unique):
    """GIVEN a user allowed to follow one container's logs (a grant of their own, or one of a
    group) following it on an open socket (token or session)
    WHEN the grant or the group membership is removed, the user deactivated, the token revoked
    or expired, the session logged out or deleted, or the password changed
    THEN within 5 s the server sends an `error` naming why, and no log line follows it: the
    follow ends (socket still open) when only that container's access went, the socket closes
    with 4403 when the user, token or session is no longer valid."""
    host, row = ticking
    with_session, reason = REVOCATIONS[revocation]
    user = django_user_model.objects.create_user(f"r{unique}", password="pw-revoke-1234")
    group = Group.objects.create(name=f"ops-{unique}")
    holder = group if revocation == "group removed" else user
    for perm in ("containers.view_container", "containers.operate_container"):
        assign_perm(perm, holder, row)
    user.groups.add(group)
    web = token = None
    if with_session:
        web = Client()
        web.force_login(user)
        ws = _ws(daphne, session=web.cookies["sessionid"].value)
    else:
        token, raw = APIToken.issue(user, name="ws")
        ws = _ws(daphne, token=raw)
    ws.send({"action": "logs.follow", "key": row.key})
    ws.wait_for(_log_of(row.key), timeout=10)

    started = time.monotonic()
    if revocation == "grant removed":
        remove_perm("containers.operate_container", user, row)
    elif revocation == "group removed":
        user.groups.remove(group)
    elif revocation == "deactivated":
        user.is_active = False
        user.save()
    elif revocation == "token revoked":
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    elif revocation == "token expired":
        APIToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    elif revocation == "logged out":
        web.logout()
    elif revocation == "password changed":
        user.set_password("pw-changed-elsewhere-1")
        user.save()
    elif revocation == "session deleted":
        from django.contrib.sessions.models import Session

        Session.objects.filter(pk=web.session.session_key).delete()

    if reason == "permission":
        error = ws.wait_for(_error_about(row.key), timeout=REVOCATION_DEADLINE + 3)
        elapsed = time.monotonic() - started
        assert error["data"]["reason"] == "permission"
        after = len(ws.messages)
        ws.drain(1.5)  # three more ticks would have come
        assert not [m for m in ws.messages[after:] if _log_of(row.key)(m)]
        ws.send({"action": "ping"})
        ws.wait_for(lambda m: m["type"] == "pong")  # the socket itself is still fine
        ws.send({"action": "logs.follow", "key": row.key})
        ws.wait_for(lambda m: _error_about(row.key)(m) and m["data"]["message"] == "No such container.", timeout=5)
        ws.close()
    else:
        code = _close_code(ws, REVOCATION_DEADLINE + 3)
        elapsed = time.monotonic() - started
        assert code == 4403
        errors = [m for m in ws.messages if m["type"] == "error"]
        assert errors and errors[-1]["data"]["reason"] == reason, errors
        last_error = ws.messages.index(errors[-1])
        assert not [m for m in ws.messages[last_error:] if _log_of(row.key)(m)]
    print(f"{revocation}: stopped {elapsed:.2f} s after the change")
    assert elapsed < REVOCATION_DEADLINE, f"{revocation}: stopped after {elapsed:.1f}s"


def test_a_profile_and_stats_stop_when_the_grant_behind_them_goes(django_user_model, ticking, daphne, unique):
    """GIVEN a user with `view` on one container, profiling it and subscribed to its stats
    WHEN the grant is removed
    THEN the profile stops ("access revoked", saved so), the stats subscription is dropped, each
    with an `error`, and the next stats cycle sends this user nothing."""
    host, row = ticking
    user = django_user_model.objects.create_user(f"p{unique}", password="pw-profile-123")
    assign_perm("containers.view_container", user, row)
    ws = _ws(daphne, token=APIToken.issue(user)[1])
    ws.send({"action": "stats.subscribe", "keys": [row.key]})
    ws.wait_for(lambda m: m["type"] == "stats.subscribed")
    ws.send({"action": "profile.start", "key": row.key})
    session_id = ws.wait_for(lambda m: m["type"] == "profile.started")["data"]["session"]
    ws.wait_for(lambda m: m["type"] == "profile.sample", timeout=15)

    started = time.monotonic()
    remove_perm("containers.view_container", user, row)
    stopped = ws.wait_for(lambda m: m["type"] == "profile.stopped", timeout=REVOCATION_DEADLINE + 3)
    assert time.monotonic() - started < REVOCATION_DEADLINE
    assert stopped["data"]["reason"] == "access revoked"
    ws.wait_for(lambda m: m["type"] == "error" and m["data"].get("session") == session_id and m["data"]["reason"] == "permission")
    dropped = ws.wait_for(lambda m: m["type"] == "error" and m["data"].get("keys") == [row.key])
    assert dropped["data"]["reason"] == "permission"
    assert wait_for(lambda: ProfileSession.objects.get(pk=session_id).end_reason, 5, message="session saved") == "access revoked"

    after = len(ws.messages)
    stats.collect_host(host.pk)
    ws.drain(1.5)
    assert not [m for m in ws.messages[after:] if m["type"] in ("stats.sample", "profile.sample")]
    ws.close()


def test_read_only_tokens_cannot_start_a_profile_but_may_read(django_user_model, admin, ticking, daphne, unique):
    host, row = ticking
    granted = django_user_model.objects.create_user(f"ro{unique}", password="pw-readonly-12")
    for perm in ("containers.view_container", "containers.operate_container"):
        assign_perm(perm, granted, row)
    for user in (admin, granted):  # a read-only token of a superuser is read-only too
        _, raw = APIToken.issue(user, name="ro", read_only=True)
        ws = _ws(daphne, token=raw)
        assert ws.messages[0]["data"]["read_only"] is True
        ws.send({"action": "profile.start", "key": row.key})
        refused = ws.wait_for(lambda m: m["type"] == "error")
        assert refused["data"]["reason"] == "read_only" and "read-only" in refused["data"]["message"]
        ws.send({"action": "logs.follow", "key": row.key})  # reading is fine
        ws.wait_for(_log_of(row.key), timeout=10)
        assert not [m for m in ws.messages if m["type"] == "profile.started"]
        ws.close()
    assert not ProfileSession.objects.filter(container_key=row.key).exists()


def test_profiles_are_capped_per_user_across_sockets_and_stop_at_the_maximum_duration(django_user_model, ticking, settings, unique):
    """In-process consumers (WebsocketCommunicator), so the limits can be set small:
    at most 2 open profiles per user, whatever socket (or web process: rows in the database)
    they run on; a row left open by a dead process stops counting once older than the maximum
    duration; a profile stops by itself with reason "max duration"."""
    from datetime import timedelta

    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from dockmon_site.asgi import application

    settings.DOCKMON_PROFILE_MAX_PER_USER = 2
    settings.DOCKMON_PROFILE_MAX_SECONDS = 6
    host, row = ticking
    user = django_user_model.objects.create_user(f"cap{unique}", password="pw-cap-123456")
    assign_perm("containers.view_container", user, row)
    _, raw = APIToken.issue(user)
    # Open for another web process: counts. Open but older than the maximum duration: does not.
    ProfileSession.objects.create(container_key=row.key, host=host, user=user)
    stale = ProfileSession.objects.create(container_key=row.key, host=host, user=user)
    ProfileSession.objects.filter(pk=stale.pk).update(started_at=timezone.now() - timedelta(seconds=60))

    async def receive(communicator, predicate, timeout=15.0):
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = json.loads(await communicator.receive_from(timeout=left))
            if predicate(message):
                return message
        raise AssertionError("no matching message")

    async def scenario():
        first, second = (WebsocketCommunicator(application, f"/ws/events/?token={raw}") for _ in range(2))
        for communicator in (first, second):
            assert (await communicator.connect())[0]
        await first.send_json_to({"action": "profile.start", "key": row.key})
        started = await receive(first, lambda m: m["type"] in ("profile.started", "error"))
        assert started["type"] == "profile.started" and started["data"]["max_seconds"] == 6
        await second.send_json_to({"action": "profile.start", "key": row.key})
        refused = await receive(second, lambda m: m["type"] in ("profile.started", "error"))
        assert refused["type"] == "error" and refused["data"]["reason"] == "limit" and "2 profiles" in refused["data"]["message"]
        t0 = time.monotonic()
        stopped = await receive(first, lambda m: m["type"] == "profile.stopped", timeout=20)
        assert stopped["data"]["reason"] == "max duration" and time.monotonic() - t0 < 10
        # The slot is free again.
        await second.send_json_to({"action": "profile.start", "key": row.key})
        assert (await receive(second, lambda m: m["type"] in ("profile.started", "error")))["type"] == "profile.started"
        for communicator in (first, second):
            await communicator.disconnect(timeout=10)
        return started["data"]["session"]

    session_id = async_to_sync(scenario)()
    session = ProfileSession.objects.get(pk=session_id)
    assert session.end_reason == "max duration" and session.sample_count >= 1
    assert Container.objects.filter(pk=row.key).exists()
