"""/api/v1/hosts/: adding engines over unix, TCP and TLS, and every way that can go wrong."""

from __future__ import annotations

import os
import socket
import time

import pytest
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from containers.models import DockerHost, Event

pytestmark = pytest.mark.django_db


def _pem(path):
    with open(path) as fh:
        return fh.read()


def _tls_body(engine, tls=None, **extra):
    tls = tls or engine.tls
    body = {"url": engine.tcp_url, "tls_ca": _pem(tls["ca"]), "tls_cert": _pem(tls["cert"]), "tls_key": _pem(tls["key"])}
    body.update(extra)
    return body


def test_it_adds_a_host_over_the_unix_socket(admin_client, alpha, unique):
    response = admin_client.post("/api/v1/hosts/", {"name": f"a-{unique}", "url": alpha.unix_url}, format="json")
    assert response.status_code == 201, response.data
    assert response.data["status"] == "online"
    assert response.data["engine_version"].startswith("20.10")
    assert response.data["last_seen_at"].endswith("Z")
    host = DockerHost.objects.get(pk=response.data["id"])
    assert Event.objects.filter(type="host.added", host=host).exists()


def test_it_adds_a_host_over_plain_tcp(admin_client, alpha, unique):
    response = admin_client.post("/api/v1/hosts/", {"name": f"t-{unique}", "url": alpha.tcp_url}, format="json")
    assert response.status_code == 201, response.data
    assert response.data["status"] == "online"


def test_it_adds_a_host_over_tls_even_with_requests_ca_bundle_set(admin_client, beta, unique, monkeypatch):
    # The machine's (and many users') REQUESTS_CA_BUNDLE must not replace the engine's own CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    response = admin_client.post("/api/v1/hosts/", _tls_body(beta, name=f"tls-{unique}"), format="json")
    assert response.status_code == 201, response.data
    assert response.data["status"] == "online", response.data["last_error"]
    assert response.data["uses_tls"] is True
    for secret in ("tls_key", "tls_cert", "tls_ca"):
        assert secret not in response.data
    detail = admin_client.get(f"/api/v1/hosts/{response.data['id']}/")
    assert "tls_key" not in detail.data
    # Stored encrypted: the raw column is not the PEM.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT tls_key FROM containers_dockerhost WHERE id = %s", [DockerHost.objects.get(pk=response.data["id"]).pk.hex if connection.vendor == "sqlite" else response.data["id"]])
        raw = cursor.fetchone()[0]
    assert "PRIVATE KEY" not in raw and raw.startswith("fernet:")


def test_a_client_certificate_from_another_ca_is_a_clear_error(admin_client, beta, unique):
    body = _tls_body(beta, name=f"bad-{unique}")
    body["tls_cert"] = _pem(beta.wrong_tls["cert"])
    body["tls_key"] = _pem(beta.wrong_tls["key"])
    response = admin_client.post("/api/v1/hosts/", body, format="json")
    assert response.status_code == 201
    assert response.data["status"] in ("error", "offline")
    assert response.data["last_error"]


def test_an_untrusted_server_certificate_is_reported_as_a_tls_error(admin_client, beta, unique):
    body = _tls_body(beta, name=f"ca-{unique}")
    # A CA that did not sign the engine's certificate (the testbed's second, unrelated CA).
    body["tls_ca"] = _pem(os.path.join(os.path.dirname(beta.tls["ca"]), "wrong-ca.pem"))
    response = admin_client.post("/api/v1/hosts/", body, format="json")
    assert response.status_code == 201
    assert response.data["status"] == "error"
    assert "TLS" in response.data["last_error"]


def test_a_refused_port_gives_offline_with_a_reason(admin_client, unique):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    response = admin_client.post("/api/v1/hosts/", {"name": f"r-{unique}", "url": f"tcp://127.0.0.1:{port}"}, format="json")
    assert response.status_code == 201
    assert response.data["status"] == "offline"
    assert "refused" in response.data["last_error"].lower()


def test_an_engine_that_never_answers_times_out(admin_client, unique, settings):
    settings.DOCKMON_PROBE_TIMEOUT = 1.0
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)  # accepts the TCP handshake, then never says a word
    port = listener.getsockname()[1]
    try:
        started = time.monotonic()
        response = admin_client.post("/api/v1/hosts/", {"name": f"h-{unique}", "url": f"tcp://127.0.0.1:{port}"}, format="json")
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert response.status_code == 201
    assert response.data["status"] == "offline"
    assert "did not answer in time" in response.data["last_error"]
    assert elapsed < 10


def test_a_missing_socket_is_reported(admin_client, unique):
    response = admin_client.post("/api/v1/hosts/", {"name": f"m-{unique}", "url": "unix:///nonexistent/docker.sock"}, format="json")
    assert response.status_code == 201
    assert response.data["status"] == "offline"
    assert "socket does not exist" in response.data["last_error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "url": "http://127.0.0.1:2375"}, "url"),
        ({"name": "x", "url": "tcp://127.0.0.1:70000"}, "url"),
        ({"name": "x", "url": 12}, "url"),
        ({"name": "", "url": "unix:///var/run/docker.sock"}, "name"),
        ({"url": "unix:///var/run/docker.sock"}, "name"),
        ({"name": "x", "url": "tcp://127.0.0.1:2376", "tls_ca": "not a certificate"}, "tls_ca"),
        ({"name": "x", "url": "tcp://127.0.0.1:2376", "tls_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}, "tls_key"),
        ({"name": "x", "url": "unix:///var/run/docker.sock", "enabled": "perhaps"}, "enabled"),
    ],
)
def test_garbage_input_is_a_400_with_field_errors(admin_client, body, field):
    response = admin_client.post("/api/v1/hosts/", body, format="json")
    assert response.status_code == 400
    assert field in response.data


def test_a_certificate_without_its_key_is_refused(admin_client, beta):
    body = _tls_body(beta, name="half")
    del body["tls_key"]
    response = admin_client.post("/api/v1/hosts/", body, format="json")
    assert response.status_code == 400
    assert "tls_key" in response.data


def test_duplicate_names_are_refused(admin_client, alpha, unique):
    admin_client.post("/api/v1/hosts/", {"name": f"d-{unique}", "url": alpha.unix_url}, format="json")
    response = admin_client.post("/api/v1/hosts/", {"name": f"d-{unique}", "url": alpha.tcp_url}, format="json")
    assert response.status_code == 400
    assert "name" in response.data


def test_the_test_endpoint_reports_and_records_status(admin_client, make_host, alpha):
    host = make_host(alpha)
    response = admin_client.post(f"/api/v1/hosts/{host.pk}/test/")
    assert response.status_code == 200
    assert response.data["ok"] is True
    assert response.data["engine_version"].startswith("20.10")
    host.refresh_from_db()
    assert host.status == "online"


def test_changing_the_url_tests_again(admin_client, make_host, alpha):
    host = make_host(alpha)
    admin_client.post(f"/api/v1/hosts/{host.pk}/test/")
    response = admin_client.patch(f"/api/v1/hosts/{host.pk}/", {"url": "unix:///nonexistent.sock"}, format="json")
    assert response.status_code == 200
    assert response.data["status"] == "offline"
    response = admin_client.patch(f"/api/v1/hosts/{host.pk}/", {"url": alpha.unix_url}, format="json")
    assert response.data["status"] == "online"


def test_tls_secrets_survive_an_update_that_does_not_send_them(admin_client, beta, unique):
    created = admin_client.post("/api/v1/hosts/", _tls_body(beta, name=f"keep-{unique}"), format="json").data
    response = admin_client.patch(f"/api/v1/hosts/{created['id']}/", {"name": f"keep2-{unique}"}, format="json")
    assert response.status_code == 200
    assert admin_client.post(f"/api/v1/hosts/{created['id']}/test/").data["ok"] is True


def test_deleting_a_host_removes_it_and_logs(admin_client, make_host, alpha):
    host = make_host(alpha)
    assert admin_client.delete(f"/api/v1/hosts/{host.pk}/").status_code == 204
    assert not DockerHost.objects.filter(pk=host.pk).exists()
    assert Event.objects.filter(type="host.removed", data__host=str(host.pk)).exists()


class TestHostPermissions:
    """Owner (superuser), a user granted the host, a user granted another host, anonymous."""

    @pytest.fixture
    def setup(self, django_user_model, make_host, alpha):
        mine = make_host(alpha)
        other = make_host(alpha)
        granted = django_user_model.objects.create_user("granted", password="pw-granted-1")
        outsider = django_user_model.objects.create_user("outsider", password="pw-outsider-1")
        assign_perm("containers.view_dockerhost", granted, mine)
        assign_perm("containers.view_dockerhost", outsider, other)
        return mine, other, granted, outsider

    def _client(self, user):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    def test_lists_show_only_permitted_hosts(self, setup, admin_client):
        mine, other, granted, outsider = setup
        ids = {h["id"] for h in admin_client.get("/api/v1/hosts/?page_size=500").data["results"]}
        assert {str(mine.pk), str(other.pk)} <= ids
        granted_view = self._client(granted).get("/api/v1/hosts/").data
        assert [h["id"] for h in granted_view["results"]] == [str(mine.pk)]
        assert granted_view["count"] == 1
        assert [h["id"] for h in self._client(outsider).get("/api/v1/hosts/").data["results"]] == [str(other.pk)]

    def test_unpermitted_detail_is_404_and_read_only_grant_is_403_on_change(self, setup):
        mine, other, granted, outsider = setup
        assert self._client(outsider).get(f"/api/v1/hosts/{mine.pk}/").status_code == 404
        assert self._client(outsider).post(f"/api/v1/hosts/{mine.pk}/test/").status_code == 404
        assert self._client(granted).get(f"/api/v1/hosts/{mine.pk}/").status_code == 200
        assert self._client(granted).patch(f"/api/v1/hosts/{mine.pk}/", {"name": "z"}, format="json").status_code == 403
        assert self._client(granted).delete(f"/api/v1/hosts/{mine.pk}/").status_code == 403

    def test_only_users_with_add_permission_create_hosts(self, setup, alpha):
        _, _, granted, _ = setup
        assert self._client(granted).post("/api/v1/hosts/", {"name": "n", "url": alpha.unix_url}, format="json").status_code == 403

    def test_anonymous_is_refused(self, setup):
        mine = setup[0]
        assert self._client(None).get("/api/v1/hosts/").status_code in (401, 403)
        assert self._client(None).get(f"/api/v1/hosts/{mine.pk}/").status_code in (401, 403)



# ---------------------------------------------------------------------------
# ssh:// hosts: the SDK runs the real `ssh` client; every failure is a status, never a 500 or a hang
# ---------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_ssh_host_on_a_closed_port_is_offline_with_what_ssh_said(admin_client, unique):
    port = _closed_port()
    response = admin_client.post("/api/v1/hosts/", {"name": f"ssh-{unique}", "url": f"ssh://nobody@127.0.0.1:{port}"}, format="json")
    assert response.status_code == 201, response.data
    assert response.data["url"] == f"ssh://nobody@127.0.0.1:{port}"
    assert response.data["status"] == "offline"
    assert response.data["last_error"] == f"ssh: connect to host 127.0.0.1 port {port}: Connection refused"
    tested = admin_client.post(f"/api/v1/hosts/{response.data['id']}/test/")
    assert tested.status_code == 200, tested.data
    assert tested.data["ok"] is False and tested.data["status"] == "offline"
    assert "Connection refused" in tested.data["error"]
    assert DockerHost.objects.get(pk=response.data["id"]).status == "offline"


def test_an_ssh_host_that_never_answers_gives_up_within_the_probe_timeout(admin_client, settings, unique):
    """A server that accepts and says nothing (no SSH banner): ssh is told to give up after the
    probe's timeout; before, the call waited for ever."""
    settings.DOCKMON_PROBE_TIMEOUT = 2
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        port = silent.getsockname()[1]
        response = admin_client.post("/api/v1/hosts/", {"name": f"sshq-{unique}", "url": f"ssh://nobody@127.0.0.1:{port}"}, format="json")
        assert response.status_code == 201, response.data
        assert response.data["status"] == "offline"
        assert response.data["last_error"] == f"ssh: Connection to 127.0.0.1 port {port} timed out"
        tested = admin_client.post(f"/api/v1/hosts/{response.data['id']}/test/")
        assert tested.status_code == 200 and tested.data["status"] == "offline" and "timed out" in tested.data["error"]


def test_an_ssh_url_without_a_host_is_a_400(admin_client, unique):
    for url in ("ssh://", "ssh://nobody@", "ssh://nobody@127.0.0.1:99999", "ssh://127.0.0.1/path"):
        response = admin_client.post("/api/v1/hosts/", {"name": f"sshbad-{unique}", "url": url}, format="json")
        assert response.status_code == 400 and "url" in response.data, (url, response.data)
