"""Logs over the API are read from the engine as a stream under a byte cap, JSON and download,
with a real container that writes far more than the cap (engine "alpha")."""

from __future__ import annotations

import time

import pytest
import requests
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from accounts.models import APIToken
from testkit import testing

pytestmark = pytest.mark.trust

CAP = 256 * 1024
LINES = 20_000  # about 2.4 MB of output: ten times the cap
PAD = "x" * 100
# stderr first (its own pipe: written now, it could otherwise land among the last stdout lines).
CHATTY = ["sh", "-c", f'echo oops >&2; sleep 1; i=0; while [ $i -lt {LINES} ]; do echo "line-$i-{PAD}"; i=$((i+1)); done; '
                      'echo LAST-LINE; trap "exit 0" TERM; while true; do sleep 1; done']


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _wait_for_last_line(client, key: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = client.get(f"/api/v1/containers/{key}/logs/?tail=1").data["lines"]
        if lines and lines[-1]["text"] == "LAST-LINE":
            return
        time.sleep(0.3)
    raise AssertionError("the container did not finish writing")


@pytest.fixture
def chatty(make_host, alpha, run_container, sync_container, unique, admin):
    host = make_host(alpha)
    row = sync_container(host, run_container(alpha, f"chatty-{unique}", *CHATTY))
    _wait_for_last_line(_client(admin), row.key)
    return host, row


@pytest.mark.django_db
def test_json_logs_keep_the_newest_lines_within_the_cap_and_say_they_were_truncated(settings, chatty, admin, django_user_model, unique):
    settings.DOCKMON_LOGS_MAX_BYTES = CAP
    host, row = chatty
    operator = django_user_model.objects.create_user(f"op{unique}", password="pw-operator-1")
    assign_perm("containers.operate_dockerhost", operator, host)
    assign_perm("containers.view_dockerhost", operator, host)
    viewer = django_user_model.objects.create_user(f"vw{unique}", password="pw-viewer-12")
    assign_perm("containers.view_dockerhost", viewer, host)
    outsider = django_user_model.objects.create_user(f"out{unique}", password="pw-outsider-1")

    for user in (admin, operator):
        data = _client(user).get(f"/api/v1/containers/{row.key}/logs/?tail=100000").data
        texts = [line["text"] for line in data["lines"]]
        assert data["truncated"] is True
        assert texts[-1] == "LAST-LINE" and texts[-2] == f"line-{LINES - 1}-{PAD}"  # the newest lines are the ones kept
        assert not any(text.startswith("line-0-") for text in texts)  # the oldest ones were dropped
        assert sum(len(text.encode()) + 1 for text in texts) <= CAP
        assert len(texts) > CAP // 200  # and the cap is used, not a few lines
        numbers = [int(text.split("-")[1]) for text in texts if text.startswith("line-")]
        assert numbers == list(range(numbers[0], LINES))  # contiguous, in order

    small = _client(admin).get(f"/api/v1/containers/{row.key}/logs/?tail=5").data
    assert small["truncated"] is False and [line["text"] for line in small["lines"]][-1] == "LAST-LINE"
    assert len(small["lines"]) == 5
    assert _client(viewer).get(f"/api/v1/containers/{row.key}/logs/").status_code == 403
    assert _client(outsider).get(f"/api/v1/containers/{row.key}/logs/").status_code == 404


@pytest.mark.django_db
def test_a_download_streams_up_to_its_cap_and_ends_with_a_marker_line(settings, chatty, admin):
    settings.DOCKMON_LOGS_DOWNLOAD_MAX_BYTES = CAP
    _, row = chatty
    response = _client(admin).get(f"/api/v1/containers/{row.key}/logs/?tail=100000&download=true")
    assert response.status_code == 200 and response.streaming
    assert "attachment" in response["Content-Disposition"] and not response.has_header("Content-Length")
    body = b"".join(response.streaming_content)
    lines = body.decode().splitlines()
    assert lines[-1].startswith(f"[DockMon: the log was cut here at {CAP} bytes")
    assert len(body) - len(lines[-1]) - 1 <= CAP
    assert lines[0].endswith("stderr oops") and lines[1].endswith(f"stdout line-0-{PAD}")  # from the oldest line on
    assert len(body) > CAP - 1000

    settings.DOCKMON_LOGS_DOWNLOAD_MAX_BYTES = 64 * 1024 * 1024
    whole = b"".join(_client(admin).get(f"/api/v1/containers/{row.key}/logs/?tail=100000&download=true").streaming_content)
    text = whole.decode()
    assert "[DockMon:" not in text and text.endswith("stdout LAST-LINE\n") and "stderr oops" in text
    assert text.count("\n") == LINES + 2


@pytest.fixture
def capped_daphne(monkeypatch, transactional_db):
    monkeypatch.setenv("DOCKMON_LOGS_DOWNLOAD_MAX_BYTES", str(CAP))
    monkeypatch.setenv("DOCKMON_LOGS_MAX_BYTES", str(CAP))
    port = testing.free_port()
    process = testing.start_daphne(port)
    process.port = port
    yield process
    process.stop()


@pytest.mark.django_db(transaction=True)
def test_the_running_app_streams_the_download_and_caps_both_answers(capped_daphne, chatty, admin):
    """Through daphne (ASGI): the download arrives in chunks (no Content-Length), stops at the cap
    with the marker, and the server never falls back to reading the whole iterator first."""
    _, row = chatty
    _, token = APIToken.issue(admin)
    base = f"http://127.0.0.1:{capped_daphne.port}/api/v1/containers/{row.key}/logs/"
    headers = {"Authorization": f"Token {token}", "Host": "127.0.0.1"}
    with requests.get(base, params={"tail": 100000, "download": "true"}, headers=headers, stream=True, timeout=60) as response:
        assert response.status_code == 200, response.text
        assert "Content-Length" not in response.headers
        chunks = [chunk for chunk in response.iter_content(chunk_size=None) if chunk]
    body = b"".join(chunks)
    assert len(chunks) > 1
    assert body.decode().splitlines()[-1].startswith(f"[DockMon: the log was cut here at {CAP} bytes")
    data = requests.get(base, params={"tail": 100000}, headers=headers, timeout=60).json()
    assert data["truncated"] is True and data["lines"][-1]["text"] == "LAST-LINE"
    assert "must consume synchronous iterators" not in capped_daphne.log()
