"""Trust boundaries of registry credentials: the password follows its destination (registry,
`insecure`, CA) through the API, the admin and a config import; audit rows and exports never
hold it; who may touch a credential.

The registry is real (`docker-registry` with htpasswd, updates/testing.py); the "other
registry" a credential is moved to is a loopback recorder that asks for Basic auth and keeps
every Authorization header it is sent."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import AuditEntry
from dockmon_site import config_io
from updates import services
from updates.models import RegistryCredential
from updates.registry import ManifestNotFound, RegistryAuthError, RegistryClient, parse_reference

pytestmark = [pytest.mark.trust, pytest.mark.django_db]

PASSWORD = "RegSECRETpassword-9911"


class Recorder:
    """A registry stand-in that always answers 401 (Basic) and records what it was sent."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                seen.append({"method": self.command, "path": self.path, "authorization": self.headers.get("Authorization", "")})
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="recorder"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.addr = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def passwords_seen(self) -> list[str]:
        found = []
        for request in self.seen:
            scheme, _, value = request["authorization"].partition(" ")
            if scheme.lower() == "basic" and value:
                found.append(base64.b64decode(value).decode(errors="replace"))
            elif value:
                found.append(value)
        return found

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.stop()


class People:
    def __init__(self, django_user_model, unique):
        from django.contrib.auth.models import Permission

        self.admin = django_user_model.objects.create_superuser(f"adm{unique}", password=None)
        self.viewer = django_user_model.objects.create_user(f"vw{unique}")
        self.viewer.user_permissions.add(Permission.objects.get(codename="view_registrycredential"))
        self.outsider = django_user_model.objects.create_user(f"out{unique}")

    def client(self, who) -> APIClient:
        client = APIClient()
        client.force_authenticate(getattr(self, who))
        return client


@pytest.fixture
def people(django_user_model, unique):
    return People(django_user_model, unique)


def _ask(registry: str):
    """What an update check asks the registry, with the credentials as stored now."""
    client = RegistryClient(services.registry_credentials(), timeout=5)
    return client.head_manifest(parse_reference(f"{registry}/trust/probe:1"))


# ---------------------------------------------------------------------------
# The password follows its destination
# ---------------------------------------------------------------------------
def test_moving_a_credential_through_the_api_needs_the_password_again(people, recorder):
    cred = RegistryCredential.objects.create(registry="127.0.0.1:5999", username="me", password=PASSWORD)
    client = people.client("admin")
    url = f"/api/v1/registry-credentials/{cred.pk}/"
    for change in ({"registry": recorder.addr}, {"insecure": True}, {"registry": recorder.addr, "password": ""}):
        response = client.patch(url, change, format="json")
        assert response.status_code == 400 and "enter the password again" in json.dumps(response.json()), change
    cred.refresh_from_db()
    assert cred.registry == "127.0.0.1:5999" and cred.password == PASSWORD and not cred.insecure
    # Moved without a user name: anonymous from now on, the password gone.
    response = client.patch(url, {"registry": recorder.addr, "username": ""}, format="json")
    assert response.status_code == 200 and response.json()["has_password"] is False
    assert RegistryCredential.objects.get(pk=cred.pk).password == ""
    with pytest.raises(RegistryAuthError):
        _ask(recorder.addr)
    assert recorder.seen and recorder.passwords_seen() == []


def test_moving_with_the_password_given_again_keeps_it(people, recorder):
    cred = RegistryCredential.objects.create(registry="127.0.0.1:5998", username="me", password=PASSWORD)
    response = people.client("admin").patch(f"/api/v1/registry-credentials/{cred.pk}/",
                                            {"registry": recorder.addr, "password": PASSWORD}, format="json")
    assert response.status_code == 200 and response.json()["has_password"] is True
    with pytest.raises(RegistryAuthError):
        _ask(recorder.addr)
    assert recorder.passwords_seen() == [f"me:{PASSWORD}"]  # chosen for this registry by the request


def test_the_admin_moving_a_real_registrys_credential_never_sends_its_password(people, basic_registry, recorder):
    """GIVEN a credential that works on a real password-protected registry
    WHEN an administrator changes its registry in the admin (the password field left empty, as
    the form always shows it)
    THEN the password is dropped and the new registry is asked anonymously."""
    RegistryCredential.objects.create(registry=basic_registry.addr, username=basic_registry.username, password=basic_registry.password)
    with pytest.raises(ManifestNotFound):  # logged in: the registry says the tag does not exist
        _ask(basic_registry.addr)
    cred = RegistryCredential.objects.get(registry=basic_registry.addr)
    client = Client()
    client.force_login(people.admin)
    response = client.post(f"/admin/updates/registrycredential/{cred.pk}/change/", {
        "registry": recorder.addr, "username": basic_registry.username, "password": "", "ca_cert": "", "note": "",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    cred = RegistryCredential.objects.get(pk=cred.pk)
    assert cred.registry == recorder.addr and cred.password == ""
    with pytest.raises(RegistryAuthError):
        _ask(recorder.addr)
    assert recorder.seen and recorder.passwords_seen() == []
    rows = json.dumps(list(AuditEntry.objects.values("changes", "object_repr", "path")))
    assert basic_registry.password not in rows


def test_turning_on_insecure_or_changing_the_ca_drops_the_password_in_the_model():
    cred = RegistryCredential.objects.create(registry="127.0.0.1:5997", username="me", password=PASSWORD)
    cred = RegistryCredential.objects.get(pk=cred.pk)
    cred.note = "renamed"
    cred.save()
    assert RegistryCredential.objects.get(pk=cred.pk).password == PASSWORD
    cred = RegistryCredential.objects.get(pk=cred.pk)
    cred.insecure = True
    cred.save(update_fields=["insecure"])
    assert RegistryCredential.objects.get(pk=cred.pk).password == ""
    other = RegistryCredential.objects.create(registry="127.0.0.1:5996", username="me", password=PASSWORD)
    other = RegistryCredential.objects.get(pk=other.pk)
    other.ca_cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    other.password_supplied = True  # the same change gave it again
    other.save()
    assert RegistryCredential.objects.get(pk=other.pk).password == PASSWORD
    assert services.registry_credentials()[cred.registry].username == "", "a user name without its password is not used"


def test_an_import_that_turns_on_insecure_drops_the_password():
    RegistryCredential.objects.create(registry="127.0.0.1:5995", username="me", password=PASSWORD)
    doc = config_io.export_config()
    assert PASSWORD not in json.dumps(doc)
    [item] = [c for c in doc["registry_credentials"] if c["registry"] == "127.0.0.1:5995"]
    item["insecure"] = True
    report = config_io.import_config(doc)
    assert RegistryCredential.objects.get(registry="127.0.0.1:5995").password == ""
    notes = [n for i in report["items"] if i.get("ref") == "127.0.0.1:5995" for n in i.get("notes", [])]
    assert any("password" in n for n in notes), report["items"]


# ---------------------------------------------------------------------------
# Audit rows and exports; who may touch a credential
# ---------------------------------------------------------------------------
def test_audit_rows_and_exports_hold_no_registry_password(people):
    client = people.client("admin")
    response = client.post("/api/v1/registry-credentials/", {"registry": "127.0.0.1:5994", "username": "me", "password": PASSWORD},
                           format="json")
    assert response.status_code == 201
    pk = response.json()["id"]
    assert client.patch(f"/api/v1/registry-credentials/{pk}/", {"password": PASSWORD + "2"}, format="json").status_code == 200
    assert client.post("/api/v1/registry-credentials/", {"registry": "bad host", "password": PASSWORD + "3"},
                       format="json").status_code == 400
    rows = list(AuditEntry.objects.filter(path__startswith="/api/v1/registry-credentials/").values("changes", "status_code"))
    assert len(rows) == 3 and PASSWORD not in json.dumps(rows)
    export = client.get("/api/v1/config/export/")
    assert export.status_code == 200 and "127.0.0.1:5994" in export.content.decode() and PASSWORD not in export.content.decode()


def test_only_administrators_change_credentials_and_outsiders_see_none(people):
    cred = RegistryCredential.objects.create(registry="127.0.0.1:5993", username="me", password=PASSWORD)
    url = f"/api/v1/registry-credentials/{cred.pk}/"
    outsider = people.client("outsider")
    assert outsider.get("/api/v1/registry-credentials/").json()["results"] == []
    assert outsider.get(url).status_code == 404
    assert outsider.patch(url, {"registry": "127.0.0.1:1"}, format="json").status_code == 404
    assert outsider.delete(url).status_code == 404
    assert outsider.post("/api/v1/registry-credentials/", {"registry": "127.0.0.1:2"}, format="json").status_code == 403
    viewer = people.client("viewer")
    listed = viewer.get(url)
    assert listed.status_code == 200 and "password" not in listed.json() and listed.json()["has_password"] is True
    assert viewer.patch(url, {"registry": "127.0.0.1:1", "password": "x"}, format="json").status_code == 403
    assert people.client("admin").patch(url, {"note": "ok"}, format="json").status_code == 200
    cred.refresh_from_db()
    assert cred.registry == "127.0.0.1:5993" and cred.password == PASSWORD
