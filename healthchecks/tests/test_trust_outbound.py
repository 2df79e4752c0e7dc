"""Trust boundaries of health checks (issue 13), against the real engine "alpha" reached over
plain TCP: a check is never a way to reach a Docker engine, to send what only an administrator
may send, to carry a secret to a new destination, or to read a response body.

People: the owner (superuser), `granted` (view + change on one container of alpha), the
outsider (no grant at all). Local HTTP receivers on 127.0.0.1 stand in for the services."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import pytest
import requests
from django.test import override_settings
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from accounts.models import AuditEntry
from healthchecks import services
from healthchecks.models import HealthCheck

pytestmark = [pytest.mark.trust, pytest.mark.django_db]
URL = "/api/v1/health-checks/"


class World:
    def __init__(self, django_user_model, make_host, alpha, run_container, sync_container, unique):
        self.alpha = alpha
        self.host = make_host(alpha, via="tcp")  # the engine as DockMon reaches it: tcp://127.0.0.1:PORT
        parts = urlsplit(alpha.tcp_url)
        self.engine_host, self.engine_port = parts.hostname, parts.port
        self.mine_name, self.other_name = f"tr-mine-{unique}", f"tr-other-{unique}"
        mine_id = run_container(alpha, self.mine_name, "sleep", "3600")
        self.other_id = run_container(alpha, self.other_name, "sh", "-c", "export SECRET_ENV=s3cr3t-env; sleep 3600",
                                      extra=("-e", "DB_PASSWORD=hunter2-env"))
        self.mine = sync_container(self.host, mine_id)
        self.other = sync_container(self.host, self.other_id)
        self.owner = django_user_model.objects.create_superuser(f"own{unique}", password=None)
        self.granted = django_user_model.objects.create_user(f"grt{unique}")
        self.outsider = django_user_model.objects.create_user(f"out{unique}")
        for perm in ("view", "operate", "change"):
            assign_perm(f"containers.{perm}_container", self.granted, self.mine)

    def client(self, who: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(getattr(self, who))
        return client

    def engine_url(self, path: str) -> str:
        return f"http://{self.engine_host}:{self.engine_port}{path}"

    def other_running(self) -> bool:
        return self.alpha.docker("inspect", "-f", "{{.State.Running}}", self.other_name).stdout.strip() == "true"

    def body(self, **extra) -> dict:
        return {"container": self.mine.key, "interval_seconds": 30, "timeout_seconds": 3, **extra}


@pytest.fixture
def world(django_user_model, make_host, alpha, run_container, sync_container, unique):
    return World(django_user_model, make_host, alpha, run_container, sync_container, unique)


def _engine_connections(spy, port) -> list:
    return [address for address in spy if isinstance(address, tuple) and len(address) >= 2 and address[1] == port]


# ---------------------------------------------------------------------------
# The attack of the issue: kill and environment read through a check
# ---------------------------------------------------------------------------
def test_the_engine_answers_without_the_policy(world):
    """The control: the plain-TCP engine does answer a bare HTTP request, so each refusal below
    is the policy's doing, not an engine that was not there."""
    answer = requests.get(world.engine_url(f"/containers/{world.other_id}/json"), timeout=5)
    assert answer.status_code == 200 and "hunter2-env" in answer.text


def test_a_granted_user_cannot_kill_another_container_through_a_check(world, connect_spy):
    """GIVEN a user granted `change` on one container WHEN they create a check POSTing to the
    engine's /containers/<other>/kill and ask for /test/ THEN the create is a 400 with field
    errors on url and method, nothing reaches the engine, and the other container still runs."""
    client = world.client("granted")
    for path in (f"/containers/{world.other_id}/kill", f"/v1.41/containers/{world.other_id}/kill?signal=KILL"):
        response = client.post(URL, world.body(url=world.engine_url(path), method="POST", expected_status="200-599"),
                               format="json")
        assert response.status_code == 400, response.content
        errors = response.json()
        assert "registered Docker engine" in " ".join(errors["url"]), errors
        assert "administrator" in " ".join(errors["method"]), errors
    assert not HealthCheck.objects.exists()
    # The same engine by another name or address of this machine.
    for url in (f"http://localhost:{world.engine_port}/containers/{world.other_id}/kill",
                f"http://127.0.0.2:{world.engine_port}/containers/{world.other_id}/kill",
                f"http://[::ffff:127.0.0.1]:{world.engine_port}/containers/{world.other_id}/kill"):
        response = client.post(URL, world.body(url=url), format="json")
        assert response.status_code == 400 and "url" in response.json(), (url, response.content)
    # Not even the owner may point a check at an engine.
    response = world.client("owner").post(URL, world.body(url=world.engine_url(f"/containers/{world.other_id}/kill"),
                                                          method="POST"), format="json")
    assert response.status_code == 400 and "registered Docker engine" in " ".join(response.json()["url"])
    assert _engine_connections(connect_spy, world.engine_port) == []
    assert world.other_running()


def test_a_granted_user_cannot_read_another_containers_environment_through_a_body_keyword(world, connect_spy):
    client = world.client("granted")
    response = client.post(URL, world.body(url=world.engine_url(f"/containers/{world.other_id}/json"),
                                           body_keyword="DB_PASSWORD=h"), format="json")
    assert response.status_code == 400 and "registered Docker engine" in " ".join(response.json()["url"])
    assert not HealthCheck.objects.exists()
    assert _engine_connections(connect_spy, world.engine_port) == []


def test_a_stored_check_aimed_at_the_engine_is_refused_at_run_time_and_sends_nothing(world, connect_spy):
    """A row written past the API (an older version, a restore) is refused by the probe, with a
    clear error, before any connection."""
    kill = HealthCheck(container=world.mine, url=world.engine_url(f"/containers/{world.other_id}/kill"), method="POST",
                       expected_status="200-599")
    kill.method_approver = world.owner
    kill.save()
    peek = HealthCheck.objects.create(container=world.mine, url=world.engine_url(f"/containers/{world.other_id}/json"),
                                      body_keyword="hunter2")
    for check in (kill, peek):
        data = world.client("owner").post(f"{URL}{check.pk}/test/").json()
        assert data["ok"] is False and data["status_code"] is None
        assert "registered Docker engine" in data["error"], data
        data = world.client("granted").post(f"{URL}{check.pk}/test/").json()
        assert data["ok"] is False and "registered Docker engine" in data["error"]
    assert _engine_connections(connect_spy, world.engine_port) == []
    assert world.other_running()


def test_a_redirect_to_the_engine_is_refused_at_run_time(world, local_server, connect_spy):
    target = world.engine_url(f"/containers/{world.other_id}/json")
    response = world.client("granted").post(URL, world.body(url=local_server.url(f"/redirect?to={target}"), body_keyword="hunter2"),
                                            format="json")
    assert response.status_code == 201, response.content
    check_id = response.json()["id"]
    granted = world.client("granted").post(f"{URL}{check_id}/test/").json()
    assert granted["ok"] is False and granted["status_code"] == 302
    # Non-administrators learn that a redirect was refused, not where the server pointed.
    assert granted["error"] == "Refused a redirect to a target DockMon may not reach."
    assert granted["url"] == local_server.url(f"/redirect?to={target}")  # the check's own URL, not the hop's
    owner = world.client("owner").post(f"{URL}{check_id}/test/").json()
    assert owner["error"].startswith(f"Refused redirect to {target}") and "registered Docker engine" in owner["error"]
    assert _engine_connections(connect_spy, world.engine_port) == []


def test_outsiders_cannot_attach_or_run_checks_on_containers_they_do_not_see(world, local_server):
    response = world.client("outsider").post(URL, world.body(url=local_server.url("/")), format="json")
    assert response.status_code == 400 and "container" in response.json()
    check = HealthCheck.objects.create(container=world.mine, url=local_server.url("/"))
    assert world.client("outsider").post(f"{URL}{check.pk}/test/").status_code == 404
    # Granted on one container only: another container's key is "no such container".
    response = world.client("granted").post(URL, world.body(url=local_server.url("/"), container=world.other.key), format="json")
    assert response.status_code == 400 and "container" in response.json()
    assert len(local_server.requests) == 0


# ---------------------------------------------------------------------------
# Ports, metadata, the administrator's lists
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("url, words", [
    ("http://127.0.0.1:2375/containers/json", "Docker engine API port"),
    ("https://10.0.0.9:2376/version", "Docker engine API port"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
])
def test_docker_ports_and_metadata_are_refused_for_everyone(world, url, words):
    for who in ("owner", "granted"):
        response = world.client(who).post(URL, world.body(url=url), format="json")
        assert response.status_code == 400 and words in " ".join(response.json()["url"]), (who, response.content)


def test_the_administrators_deny_and_allow_lists_apply_at_save_and_at_run_time(world, local_server):
    client = world.client("granted")
    check = HealthCheck.objects.create(container=world.mine, url=local_server.url("/"))
    with override_settings(DOCKMON_OUTBOUND_DENY=f":{local_server.port}"):
        response = client.post(URL, world.body(url=local_server.url("/")), format="json")
        assert response.status_code == 400 and "DOCKMON_OUTBOUND_DENY" in " ".join(response.json()["url"])
        data = client.post(f"{URL}{check.pk}/test/").json()
        assert data["ok"] is False and "DOCKMON_OUTBOUND_DENY" in data["error"]
    with override_settings(DOCKMON_OUTBOUND_ALLOW="10.0.0.0/8"):
        response = client.post(URL, world.body(url=local_server.url("/")), format="json")
        assert response.status_code == 400 and "DOCKMON_OUTBOUND_ALLOW" in " ".join(response.json()["url"])
        assert client.post(f"{URL}{check.pk}/test/").json()["ok"] is False
    assert local_server.requests == []
    with override_settings(DOCKMON_OUTBOUND_ALLOW="127.0.0.0/8,::1/128"):  # loopback only
        assert client.post(f"{URL}{check.pk}/test/").json()["ok"] is True
        assert client.post(URL, world.body(url="http://10.1.2.3/"), format="json").status_code == 400


# ---------------------------------------------------------------------------
# Methods other than GET/HEAD
# ---------------------------------------------------------------------------
def test_post_needs_an_administrator_at_save_and_at_run_time(world, local_server):
    granted, owner = world.client("granted"), world.client("owner")
    response = granted.post(URL, world.body(url=local_server.url("/"), method="POST"), format="json")
    assert response.status_code == 400 and "administrator" in " ".join(response.json()["method"])
    response = owner.post(URL, world.body(url=local_server.url("/"), method="POST"), format="json")
    assert response.status_code == 201, response.content
    check_id = response.json()["id"]
    detail = f"{URL}{check_id}/"
    assert granted.post(f"{detail}test/").json()["ok"] is True and local_server.requests[-1]["method"] == "POST"
    # The granted user may change what does not retarget the POST, but not where it goes.
    assert granted.patch(detail, {"interval_seconds": 60}, format="json").status_code == 200
    response = granted.patch(detail, {"url": local_server.url("/elsewhere")}, format="json")
    assert response.status_code == 400 and "administrator" in " ".join(response.json()["method"])
    response = granted.patch(detail, {"headers": {"X-Extra": "1"}}, format="json")
    assert response.status_code == 400 and "method" in response.json()
    assert granted.patch(detail, {"method": "GET"}, format="json").status_code == 200
    response = granted.patch(detail, {"method": "POST"}, format="json")
    assert response.status_code == 400 and "method" in response.json()
    # An administrator's POST runs only while they still are one.
    assert owner.patch(detail, {"method": "POST"}, format="json").status_code == 200
    world.owner.is_superuser = False
    world.owner.save()
    sent = len(local_server.requests)
    _, result = services.test_now(HealthCheck.objects.get(pk=check_id))
    assert result.ok is False and "administrator" in result.error
    assert len(local_server.requests) == sent


# ---------------------------------------------------------------------------
# What /test/ tells a non-administrator; body cap and deadline
# ---------------------------------------------------------------------------
def test_test_answers_non_administrators_with_pass_fail_status_and_time_only(world, tls_server):
    check = HealthCheck.objects.create(container=world.mine, url=tls_server.url("/"))
    granted = world.client("granted").post(f"{URL}{check.pk}/test/").json()
    owner = world.client("owner").post(f"{URL}{check.pk}/test/").json()
    assert owner["error"].startswith("TLS error: ") and len(owner["error"]) > len("TLS error: ")
    assert granted["ok"] is False and granted["error"] == "TLS error." and granted["response_ms"] is not None
    assert world.client("granted").get(f"{URL}{check.pk}/").json()["last_error"] == "TLS error."
    points = world.client("granted").get(f"{URL}{check.pk}/results/").json()["points"]
    assert points and all(point["error"] == "TLS error." for point in points)
    assert world.client("owner").get(f"{URL}{check.pk}/").json()["last_error"].startswith("TLS error: ")


def test_the_body_is_read_up_to_the_cap_and_the_run_ends_at_its_deadline(world, local_server):
    with override_settings(DOCKMON_HEALTH_BODY_LIMIT=1024):
        beyond = HealthCheck.objects.create(container=world.mine, url=local_server.url("/big?size=5000&tail=needle"),
                                            body_keyword="needle")
        data = world.client("granted").post(f"{URL}{beyond.pk}/test/").json()
        assert data["ok"] is False and "was not found" in data["error"] and data["status_code"] == 200
        within = HealthCheck.objects.create(container=world.mine, url=local_server.url("/big?size=500&tail=needle"),
                                            body_keyword="needle")
        assert world.client("granted").post(f"{URL}{within.pk}/test/").json()["ok"] is True
    drip = HealthCheck.objects.create(container=world.mine, url=local_server.url("/drip"), timeout_seconds=1)
    data = world.client("granted").post(f"{URL}{drip.pk}/test/").json()
    assert data["ok"] is False and data["error"].startswith("Timed out") and data["response_ms"] < 3000


# ---------------------------------------------------------------------------
# Secrets follow their destination; audit and export keep none
# ---------------------------------------------------------------------------
def test_a_re_pointed_check_never_sends_its_old_secrets(world, local_server):
    """GIVEN a check with a header secret and a basic-auth password, run once against receiver A
    WHEN its URL is PATCHed to receiver B without the secrets THEN the response says they were
    cleared and B never receives them; given again in the same request, they are kept."""
    other = type(local_server)()
    try:
        client = world.client("granted")
        response = client.post(URL, world.body(url=local_server.url("/"), headers={"X-Api-Key": "k-old-123"},
                                               basic_auth_user="probe", basic_auth_password="pw-old-456"), format="json")
        assert response.status_code == 201, response.content
        detail = f"{URL}{response.json()['id']}/"
        assert client.post(f"{detail}test/").json()["ok"] is True
        assert local_server.requests[-1]["headers"]["X-Api-Key"] == "k-old-123"
        # A new path on the same origin keeps them.
        response = client.patch(detail, {"url": local_server.url("/status?code=200")}, format="json")
        assert response.json()["secrets_cleared"] == [] and response.json()["header_names"] == ["X-Api-Key"]
        # Another port is another destination.
        response = client.patch(detail, {"url": other.url("/"), "basic_auth_password": ""}, format="json")
        assert response.status_code == 200, response.content
        data = response.json()
        assert sorted(data["secrets_cleared"]) == ["basic_auth_password", "headers"]
        assert data["header_names"] == [] and data["has_basic_auth_password"] is False
        assert client.post(f"{detail}test/").json()["ok"] is True
        landed = other.requests[-1]["headers"]
        assert "X-Api-Key" not in landed
        # The user name stays (not a secret); the password went with the old destination.
        assert base64.b64decode(landed["Authorization"].split()[1]) == b"probe:"
        assert "k-old-123" not in json.dumps(other.requests) and "pw-old" not in json.dumps(other.requests)
        # Re-pointed with the secrets given again: they go to the new place.
        response = client.patch(detail, {"url": local_server.url("/"), "headers": {"X-Api-Key": "k-new-789"},
                                         "basic_auth_password": "pw-new-000"}, format="json")
        assert response.json()["secrets_cleared"] == [] and response.json()["has_basic_auth_password"] is True
        assert client.post(f"{detail}test/").json()["ok"] is True
        assert local_server.requests[-1]["headers"]["X-Api-Key"] == "k-new-789"
    finally:
        other.close()


def test_turning_tls_verification_off_drops_the_secrets(world, tls_server, testbed):
    with open(testbed.tls["ca"]) as handle:
        ca = handle.read()
    client = world.client("owner")
    response = client.post(URL, world.body(url=tls_server.url("/"), tls_ca=ca, headers={"Authorization": "Bearer t-1"}),
                           format="json")
    detail = f"{URL}{response.json()['id']}/"
    response = client.patch(detail, {"verify_tls": False}, format="json")
    assert response.json()["secrets_cleared"] == ["headers"] and response.json()["header_names"] == []


def test_audit_rows_csv_and_config_export_hold_no_secret(world, local_server):
    secrets = ("k-audit-123", "pw-audit-456", "c-cookie-789")
    client = world.client("granted")
    response = client.post(URL, world.body(url=local_server.url("/"), headers={"X-Api-Key": secrets[0], "Cookie": secrets[2]},
                                           basic_auth_user="probe", basic_auth_password=secrets[1]), format="json")
    assert response.status_code == 201
    detail = f"{URL}{response.json()['id']}/"
    assert client.patch(detail, {"headers": {"X-Api-Key": secrets[0]}, "basic_auth_password": secrets[1]},
                        format="json").status_code == 200
    rows = list(AuditEntry.objects.filter(object_type="healthchecks.healthcheck"))
    assert len(rows) == 2
    stored = json.dumps([row.changes for row in rows])
    assert "X-Api-Key" in stored and "Cookie" in stored  # the names stay: what changed is still known
    assert not any(secret in stored for secret in secrets), stored
    owner = world.client("owner")
    csv_text = owner.get("/api/v1/audit/export/").content.decode()
    assert "X-Api-Key" in csv_text and not any(secret in csv_text for secret in secrets)
    listed = owner.get("/api/v1/audit/", {"page_size": 500}).content.decode()
    assert not any(secret in listed for secret in secrets)
    export = owner.get("/api/v1/config/export/")
    assert export.status_code == 200
    text = export.content.decode()
    assert "X-Api-Key" in text and not any(secret in text for secret in secrets)
