"""Trust boundary: where a host connects (URL, TLS material) is for administrators only, and no
second host may be registered on an engine that already has one. Through the API and the admin;
the browser UI has no host form (hosts are added and changed in the admin or over the API).

People: the superuser (owner), a non-superuser member of the Administrators role, a user granted
`change` on one host (the grant covers the host's containers), and an outsider granted nothing
on it."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from containers.host_rules import endpoint_identity
from containers.models import DockerHost

pytestmark = [pytest.mark.django_db, pytest.mark.trust]


def _pem(path):
    with open(path) as fh:
        return fh.read()


@pytest.fixture
def people(people):
    """The owner, a member of the Administrators role, `granted` and `outsider`; all staff."""
    people.add("owner", superuser=True)
    people.add("administrator", groups=("Administrators",), is_staff=True)
    for user in (people.granted, people.outsider):
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return people


@pytest.fixture
def host(make_host, alpha, people):
    """A host on alpha's TCP port, on which `granted` holds view and change."""
    host = make_host(alpha, via="tcp")
    for action in ("view", "change"):
        assign_perm(f"containers.{action}_dockerhost", people["granted"], host)
    return host


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _admin(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# ---------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------
def test_a_host_grant_cannot_repoint_the_host_but_may_rename_it(host, people, alpha, beta):
    """GIVEN a user granted `change` on a host
    WHEN they PATCH its URL to another engine (unix socket, another TCP port) or send TLS material
    THEN 403, nothing stored changes; a rename (what the grant is for) still works."""
    client = _api(people["granted"])
    for body in ({"url": alpha.unix_url}, {"url": beta.tcp_url}, {"url": "unix:///var/run/docker.sock"},
                 {"url": "garbage"}, {"tls_ca": _pem(beta.tls["ca"])},
                 {"name": "renamed-too", "url": beta.unix_url}):
        response = client.patch(f"/api/v1/hosts/{host.pk}/", body, format="json")
        assert response.status_code == 403, (body, response.status_code, response.data)
        assert "administrators" in str(response.data["detail"])
    response = client.put(f"/api/v1/hosts/{host.pk}/", {"name": host.name, "url": beta.tcp_url}, format="json")
    assert response.status_code == 403
    host.refresh_from_db()
    assert host.url == alpha.tcp_url and not host.uses_tls and not host.name.startswith("renamed")
    # Sending the stored URL (in a spelling that normalises to it) is no change.
    same = f" {alpha.tcp_url}/ "
    response = client.patch(f"/api/v1/hosts/{host.pk}/", {"name": f"renamed-{host.name}", "url": same}, format="json")
    assert response.status_code == 200, response.data
    host.refresh_from_db()
    assert host.name.startswith("renamed-") and host.url == alpha.tcp_url


def test_a_host_grant_cannot_swap_or_clear_tls_material(make_host, beta, people):
    host = make_host(beta, via="tls")
    for action in ("view", "change"):
        assign_perm(f"containers.{action}_dockerhost", people["granted"], host)
    client = _api(people["granted"])
    for body in ({"tls_cert": "", "tls_key": ""}, {"tls_ca": ""}, {"tls_ca": _pem(beta.tls["cert"])}):
        assert client.patch(f"/api/v1/hosts/{host.pk}/", body, format="json").status_code == 403, body
    stored = DockerHost.objects.get(pk=host.pk)
    assert (stored.tls_ca, stored.tls_cert, stored.tls_key) == (host.tls_ca, host.tls_cert, host.tls_key)
    # Re-sending what is stored is no change.
    response = client.patch(f"/api/v1/hosts/{host.pk}/", {"tls_ca": host.tls_ca, "enabled": False}, format="json")
    assert response.status_code == 200, response.data


def test_an_outsider_cannot_even_find_the_host(host, people, beta):
    response = _api(people["outsider"]).patch(f"/api/v1/hosts/{host.pk}/", {"url": beta.tcp_url}, format="json")
    assert response.status_code == 404


@pytest.mark.parametrize("who", ["owner", "administrator"])
def test_administrators_repoint_a_host(host, people, who, alpha):
    client = _api(people[who])
    response = client.patch(f"/api/v1/hosts/{host.pk}/", {"url": alpha.unix_url}, format="json")
    assert response.status_code == 200, response.data
    assert response.data["url"] == alpha.unix_url and response.data["status"] == "online"


def test_a_url_of_a_registered_engine_is_refused_in_any_spelling(host, people, alpha, make_host, unique):
    """GIVEN hosts on alpha's TCP port and on alpha's socket
    WHEN an administrator adds (or re-points) a host to the same engine, spelled differently
    THEN 400 on `url` naming the host that has it; nothing is created."""
    socket_host = make_host(alpha)
    port = alpha.tcp_url.rsplit(":", 1)[1]
    folder, name = alpha.unix_url[len("unix://"):].rsplit("/", 1)
    spellings = {
        f"tcp://127.0.0.1:{port}": host, f"tcp://LOCALHOST.:{port}": host, f"tcp://[::1]:{port}": host,
        f"tcp://127.1:{port}": host, f"tcp://0x7f000001:{port}": host, f"tcp://127.0.0.2:{port}": host,
        f"tcp://[::ffff:127.0.0.1]:{port}": host, f"tcp://0.0.0.0:{port}": host,
        f"unix://{folder}/../{folder.rsplit('/', 1)[1]}//./{name}": socket_host,
    }
    client = _api(people["administrator"])
    for url, holder in spellings.items():
        response = client.post("/api/v1/hosts/", {"name": f"dup-{unique}", "url": url}, format="json")
        assert response.status_code == 400, (url, response.data)
        assert response.data["url"] == [f"This engine is already registered as host {holder.name!r}."], url
    assert not DockerHost.objects.filter(name=f"dup-{unique}").exists()
    # Re-pointing one registered host at the other's engine: refused the same way, for the owner too.
    response = _api(people["owner"]).patch(f"/api/v1/hosts/{socket_host.pk}/", {"url": f"tcp://localhost:{port}"}, format="json")
    assert response.status_code == 400 and host.name in response.data["url"][0]
    socket_host.refresh_from_db()
    assert socket_host.url == alpha.unix_url
    # Another port of the loopback interface is another engine.
    response = client.post("/api/v1/hosts/", {"name": f"other-{unique}", "url": "tcp://127.0.0.1:9"}, format="json")
    assert response.status_code == 201, response.data


def test_the_refusal_names_the_host_only_to_who_may_see_it(host, people, alpha, unique):
    # Someone given the right to add hosts but no view of the registered one learns only that
    # the engine is taken (and, as creator, gets no grant on its containers).
    adder = people["outsider"]
    adder.user_permissions.add(Permission.objects.get(codename="add_dockerhost"))
    response = _api(adder).post("/api/v1/hosts/", {"name": f"mine-{unique}", "url": alpha.tcp_url.replace("127.0.0.1", "localhost")},
                                format="json")
    assert response.status_code == 400
    assert response.data["url"] == ["This engine is already registered as another host."]
    assert host.name not in str(response.data)


def test_endpoint_identity_rules(alpha):
    assert endpoint_identity("tcp://example.com") == endpoint_identity("tcp://EXAMPLE.com.:2375")
    assert endpoint_identity("tcp://example.com:2376") != endpoint_identity("tcp://example.com:2375")
    assert endpoint_identity("tcp://192.0.2.1:2375") == endpoint_identity("tcp://[::ffff:192.0.2.1]:2375")
    assert endpoint_identity("tcp://192.0.2.1:2375") != endpoint_identity("tcp://192.0.2.2:2375")
    assert endpoint_identity("ssh://deploy@example.com") == endpoint_identity("ssh://deploy@example.com:22")
    assert endpoint_identity("ssh://deploy@example.com") != endpoint_identity("ssh://other@example.com")
    assert endpoint_identity("ssh://deploy@localhost") == endpoint_identity("ssh://deploy@127.0.0.1:22")
    if os.path.realpath("/var/run") == "/run":
        assert endpoint_identity("unix:///var/run/docker.sock") == endpoint_identity("unix:///run/docker.sock")
    assert endpoint_identity(alpha.unix_url) != endpoint_identity(alpha.tcp_url)


# ---------------------------------------------------------------------------
# Admin
# ---------------------------------------------------------------------------
def _change_form(host, **changes) -> dict:
    form = {"name": host.name, "url": host.url, "enabled": "on" if host.enabled else "", "tls_ca": "", "tls_cert": "",
            "tls_key": "", "_save": "Save"}
    form.update(changes)
    return form


def test_admin_change_form_of_a_grant_holder_has_no_connection_fields(host, people, beta):
    client = _admin(people["granted"])
    page = client.get(f"/admin/containers/dockerhost/{host.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'name="name"' in text and host.url in text
    for field in ("url", "tls_ca", "tls_cert", "tls_key", "clear_tls"):
        assert f'name="{field}"' not in text, field
    # Posting them anyway changes nothing of the connection; the rename goes through.
    response = client.post(f"/admin/containers/dockerhost/{host.pk}/change/",
                           _change_form(host, name=f"r-{host.name}", url=beta.tcp_url, tls_ca=_pem(beta.tls["ca"]),
                                        tls_cert=_pem(beta.tls["cert"]), tls_key=_pem(beta.tls["key"]), clear_tls="on"))
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = DockerHost.objects.get(pk=host.pk)
    assert stored.name == f"r-{host.name}" and stored.url == host.url and stored.tls_key == "" and stored.tls_ca == ""


def test_admin_change_form_is_404_for_an_outsider(host, people):
    assert _admin(people["outsider"]).get(f"/admin/containers/dockerhost/{host.pk}/change/").status_code == 404
    response = _admin(people["outsider"]).post(f"/admin/containers/dockerhost/{host.pk}/change/", _change_form(host, url="tcp://127.0.0.1:9"))
    assert response.status_code == 404
    assert DockerHost.objects.get(pk=host.pk).url == host.url


@pytest.mark.parametrize("who", ["owner", "administrator"])
def test_admin_repoints_a_host_but_not_onto_a_registered_engine(host, people, who, alpha, make_host):
    other = make_host(alpha)
    client = _admin(people[who])
    response = client.post(f"/admin/containers/dockerhost/{host.pk}/change/", _change_form(host, url=other.url.replace("/docker.sock", "/./docker.sock")))
    text = response.content.decode()
    assert response.status_code == 200 and f"This engine is already registered as host {other.name!r}".replace("'", "&#x27;") in text
    assert DockerHost.objects.get(pk=host.pk).url == host.url
    response = client.post(f"/admin/containers/dockerhost/{host.pk}/change/", _change_form(host, url="unix:///nonexistent/docker.sock"))
    assert response.status_code == 302
    stored = DockerHost.objects.get(pk=host.pk)
    assert stored.url == "unix:///nonexistent/docker.sock" and stored.status == "offline"


def test_admin_add_form_refuses_a_registered_engine(host, people, alpha):
    response = _admin(people["administrator"]).post(
        "/admin/containers/dockerhost/add/", {"name": "again", "url": alpha.tcp_url.replace("127.0.0.1", "[::1]"), "enabled": "on"})
    assert response.status_code == 200 and "already registered as host" in response.content.decode()
    assert not DockerHost.objects.filter(name="again").exists()
    # A grant holder may not add hosts at all.
    assert _admin(people["granted"]).get("/admin/containers/dockerhost/add/").status_code == 403
