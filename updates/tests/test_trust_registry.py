"""Trust boundaries of registry credentials: the password follows its destination (registry,
`insecure`, CA) through the API, the admin and a config import; audit rows and exports never
hold it; who may touch a credential.

The registry is real (`docker-registry` with htpasswd, testkit/registry.py); the "other
registry" a credential is moved to is a loopback recorder that asks for Basic auth and keeps
every Authorization header it is sent."""

from __future__ import annotations

import base64
import json

import pytest
from django.test import Client

from accounts.models import AuditEntry
from containers import config_io
from testkit.receivers import LoopbackServer
from updates import lookups
from updates.models import RegistryCredential
from updates.registry import (
    Credential,
    ManifestNotFound,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryRefused,
    parse_reference,
)

pytestmark = [pytest.mark.trust, pytest.mark.django_db]

PASSWORD = "RegSECRETpassword-9911"


class Scripted(LoopbackServer):
    """A loopback registry stand-in: answer(method, path, headers) -> (code, headers, body);
    `seen` holds each request's method, path and Authorization header."""

    def __init__(self, answer):
        self._registry_answer = answer
        super().__init__()

    def answer(self, handler, request: dict):
        return self._registry_answer(handler.command, handler.path, handler.headers)

    @property
    def seen(self) -> list[dict]:
        return [{"method": r["method"], "path": r["path"] + (f"?{r['query']}" if r["query"] else ""),
                 "authorization": next((v for k, v in r["headers"].items() if k.lower() == "authorization"), "")}
                for r in self.requests]


class Recorder(Scripted):
    """A registry stand-in that always answers 401 (Basic) and records what it was sent."""

    def __init__(self):
        super().__init__(lambda method, path, headers: (401, {"WWW-Authenticate": 'Basic realm="recorder"'}, b""))

    def passwords_seen(self) -> list[str]:
        found = []
        for request in self.seen:
            scheme, _, value = request["authorization"].partition(" ")
            if scheme.lower() == "basic" and value:
                found.append(base64.b64decode(value).decode(errors="replace"))
            elif value:
                found.append(value)
        return found


@pytest.fixture
def recorder():
    with Recorder() as server:
        yield server


@pytest.fixture
def people(people):
    """The administrator, a `viewer` who may view registry credentials, and an outsider."""
    from django.contrib.auth.models import Permission

    people.add("viewer").user_permissions.add(Permission.objects.get(codename="view_registrycredential"))
    return people


def _ask(registry: str):
    """What an update check asks the registry, with the credentials as stored now."""
    client = RegistryClient(lookups.registry_credentials(), timeout=5)
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


def test_the_admin_moving_a_credential_with_the_password_typed_again_keeps_that_password(people, recorder):
    """An administrator who types the password again while moving a credential in the admin
    means it for the new registry: the same value is kept, not dropped as a moved secret."""
    cred = RegistryCredential.objects.create(registry="127.0.0.1:5996", username="me", password=PASSWORD)
    client = Client()
    client.force_login(people.admin)
    response = client.post(f"/admin/updates/registrycredential/{cred.pk}/change/", {
        "registry": recorder.addr, "username": "me", "password": PASSWORD, "ca_cert": "", "note": "",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    cred = RegistryCredential.objects.get(pk=cred.pk)
    assert cred.registry == recorder.addr and cred.password == PASSWORD


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
    assert lookups.registry_credentials()[cred.registry].username == "", "a user name without its password is not used"


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


# ---------------------------------------------------------------------------
# The outbound policy: token realms, redirects and pages chosen by a registry
# ---------------------------------------------------------------------------
@pytest.fixture
def scripted():
    servers = []

    def start(answer):
        servers.append(Scripted(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


MANIFEST = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": "sha256:" + "c" * 64},
            "layers": []}


def _as_engine(server, unique):
    """Register the server's address:port as a Docker engine (plain TCP), as an administrator would."""
    from containers.models import DockerHost

    return DockerHost.objects.create(name=f"engine-{server.port}-{unique}", url=f"tcp://127.0.0.1:{server.port}")


def test_a_token_realm_at_an_engine_or_the_metadata_service_is_never_asked(scripted, unique):
    """GIVEN registries whose bearer challenge names a realm on a registered engine, on the cloud
    metadata address, or on port 2375
    WHEN an update check asks them (with credentials)
    THEN the realm is refused before anything is sent: the engine stand-in sees no request and
    no password."""
    engine = scripted(lambda m, p, h: (200, {"Content-Type": "application/json"}, b'{"token": "t"}'))
    _as_engine(engine, unique)
    for realm in (f"http://127.0.0.1:{engine.port}/token", "http://169.254.169.254/latest/meta-data/iam/",
                  "http://127.0.0.1:2375/containers/json"):
        registry = scripted(lambda m, p, h, realm=realm: (401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'}, b""))
        client = RegistryClient({registry.addr: _cred()}, timeout=5)
        with pytest.raises(RegistryRefused, match="Refused"):
            client.head_manifest(parse_reference(f"{registry.addr}/trust/realm:1"))
    assert engine.seen == []


def _cred():
    return Credential("me", PASSWORD)


def test_a_redirect_to_an_engine_is_refused_and_credentials_never_follow_a_redirect(scripted, unique):
    """GIVEN a registry that redirects manifest requests to storage
    WHEN storage is another host: the Authorization header stays behind; when it is a registered
    engine: the redirect is refused and the engine sees nothing."""
    storage = scripted(lambda m, p, h: (200, {"Content-Type": MANIFEST["mediaType"],
                                              "Docker-Content-Digest": "sha256:" + "d" * 64}, json.dumps(MANIFEST).encode()))
    engine = scripted(lambda m, p, h: (200, {}, b"{}"))
    _as_engine(engine, unique)

    def registry_answer(target):
        def answer(method, path, headers):
            if not headers.get("Authorization"):
                return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
            return 307, {"Location": f"http://127.0.0.1:{target.port}/blob{path}"}, b""
        return answer

    to_storage = scripted(registry_answer(storage))
    head = RegistryClient({to_storage.addr: _cred()}, timeout=5).get_manifest(parse_reference(f"{to_storage.addr}/trust/redir:1"))
    assert head.digest == "sha256:" + "d" * 64
    assert storage.seen and all(r["authorization"] == "" for r in storage.seen)
    to_engine = scripted(registry_answer(engine))
    with pytest.raises(RegistryRefused, match="registered Docker engine"):
        RegistryClient({to_engine.addr: _cred()}, timeout=5).get_manifest(parse_reference(f"{to_engine.addr}/trust/redir:1"))
    assert engine.seen == []


def test_a_registry_on_an_engines_address_is_refused_at_save_and_when_asked(people, testbed, alpha, make_host):
    """An image named after a registered engine's address:port (anyone able to run a container
    can name one so) is never looked up there; credentials for it cannot be saved."""
    make_host(alpha, via="tcp")
    engine_addr = alpha.tcp_url.removeprefix("tcp://")
    with pytest.raises(RegistryRefused):
        RegistryClient(timeout=5).head_manifest(parse_reference(f"{engine_addr}/library/busybox:1"))
    client = people.client("admin")
    for registry in (engine_addr, "127.0.0.1:2375", "169.254.169.254"):
        response = client.post("/api/v1/registry-credentials/", {"registry": registry}, format="json")
        assert response.status_code == 400 and "Refused" in json.dumps(response.json()["registry"]), registry
    assert client.post("/api/v1/registry-credentials/", {"registry": "127.0.0.1:5000"}, format="json").status_code == 201


def test_a_tag_page_on_another_host_is_not_followed(scripted):
    other = scripted(lambda m, p, h: (200, {"Content-Type": "application/json"}, b'{"tags": ["9.9.9"]}'))
    registry = scripted(lambda m, p, h: (200, {"Content-Type": "application/json",
                                               "Link": f'<http://127.0.0.1:{other.port}/v2/x/y/tags/list?last=1>; rel="next"'},
                                         b'{"tags": ["1.0.0"]}'))
    assert RegistryClient(timeout=5).list_tags(parse_reference(f"{registry.addr}/x/y:1")) == ["1.0.0"]
    assert other.seen == []


def test_an_oversized_manifest_is_refused_not_read_whole(scripted):
    registry = scripted(lambda m, p, h: (200, {"Content-Type": MANIFEST["mediaType"]}, b"{" + b" " * (6 * 1024 * 1024) + b"}"))
    with pytest.raises(RegistryError, match="larger than"):
        RegistryClient(timeout=10).get_manifest(parse_reference(f"{registry.addr}/x/big:1"))


def test_the_admin_form_and_a_config_import_refuse_a_registry_on_an_engine_port(people):
    client = Client()
    client.force_login(people.admin)
    response = client.post("/admin/updates/registrycredential/add/", {"registry": "127.0.0.1:2376", "username": "", "password": "",
                                                                      "ca_cert": "", "note": ""})
    assert response.status_code == 200 and "2376" in response.content.decode()
    assert not RegistryCredential.objects.filter(registry="127.0.0.1:2376").exists()
    doc = config_io.export_config()
    doc["registry_credentials"] = [{"registry": "169.254.169.254", "username": "", "has_password": False, "ca_cert": "",
                                    "insecure": False, "note": ""}]
    with pytest.raises(config_io.ConfigError):
        config_io.import_config(doc)
    assert not RegistryCredential.objects.filter(registry="169.254.169.254").exists()
