"""The outbound policy (dockmon_site/outbound.py) on its own: the strict parser of the deny and
allow lists, IPv4 hidden in IPv6, the engine addresses, the method rule, and requests against
real HTTP servers on 127.0.0.1 (body cap, total deadline, redirects, credentials, proxies)."""

from __future__ import annotations

import socket
import time

import pytest
from django.test import override_settings

from dockmon_site import outbound, outbound_engines
from dockmon_site.outbound_rules import blocked_reason, candidates, ip_of, parse_rules
from dockmon_site.tests.test_env import _refused, _settings
from testkit.receivers import WebService

# The policy reads the registered engines from the database.
pytestmark = pytest.mark.django_db


@pytest.fixture
def server(local_server):
    """A small HTTP server on 127.0.0.1 (testkit/receivers.py)."""
    return local_server


@pytest.fixture
def engines():
    """Stand-in engine list for the policy (the real provider reads DockerHost rows; those are
    covered by the health-check trust tests). Restored afterwards."""
    saved = outbound_engines._engine_provider
    items: list = []
    outbound_engines.register_engine_targets(lambda: list(items))
    yield items
    outbound_engines.register_engine_targets(saved or (lambda: []))


# ---------------------------------------------------------------------------
# Parsing the deny / allow lists
# ---------------------------------------------------------------------------
def test_rules_accept_every_documented_form():
    rules = parse_rules("10.0.0.0/8, 192.168.1.5:8080, 172.16.0.0/12:8000-8100, [fd00::/8]:443, ::1/128, ::1, :25, 127.0.0.1")
    by_text = {rule.text: rule for rule in rules}
    assert by_text["10.0.0.0/8"].ports == () and str(by_text["10.0.0.0/8"].network) == "10.0.0.0/8"
    assert by_text["192.168.1.5:8080"].ports == ((8080, 8080),) and str(by_text["192.168.1.5:8080"].network) == "192.168.1.5/32"
    assert by_text["172.16.0.0/12:8000-8100"].ports == ((8000, 8100),)
    assert str(by_text["[fd00::/8]:443"].network) == "fd00::/8" and by_text["[fd00::/8]:443"].ports == ((443, 443),)
    assert str(by_text["::1"].network) == "::1/128"
    assert by_text[":25"].network is None and by_text[":25"].ports == ((25, 25),)
    assert parse_rules("") == () and parse_rules(None) == () and parse_rules(["10.0.0.0/8"])[0].text == "10.0.0.0/8"


@pytest.mark.parametrize("text, words", [
    ("10.0.0.1/8", "host bits"),
    ("10.0.0.0/33", "10.0.0.0/33"),
    ("10.0.0.0/8,,127.0.0.1", "empty item"),
    ("10.0.0.0/8,", "empty item"),
    (":0", "1 to 65535"),
    (":70000", "1 to 65535"),
    (":9000-8000", "backwards"),
    (":http", "not a port"),
    ("10.0.0.0/8:", "not a port"),
    ("127.0.0.1:80:81", "127.0.0.1:80:81"),
    ("[::1", "[fd00::/8]:8080"),
    ("[::1]8080", "[fd00::/8]:8080"),
    ("example.com", "example.com"),
    ("example.com:80", "not an address with a port"),
    ("::ffff:10.0.0.0/104", "IPv4 form"),
])
def test_rules_refuse_anything_else_naming_the_item(text, words):
    with pytest.raises(ValueError) as caught:
        parse_rules(text, setting="DOCKMON_OUTBOUND_DENY")
    assert "DOCKMON_OUTBOUND_DENY" in str(caught.value) and words in str(caught.value), str(caught.value)


@pytest.mark.parametrize("name, value, text", [
    ("DOCKMON_OUTBOUND_DENY", "10.0.0.1/8", "DOCKMON_OUTBOUND_DENY"),
    ("DOCKMON_OUTBOUND_ALLOW", "127.0.0.0/8,,::1", "DOCKMON_OUTBOUND_ALLOW"),
    ("DOCKMON_OUTBOUND_ALLOW", "localhost", "DOCKMON_OUTBOUND_ALLOW"),
])
def test_a_bad_list_stops_the_start_up(tmp_path, name, value, text):
    _refused(_settings(tmp_path, **{name: value}), text)


def test_good_lists_start(tmp_path):
    result = _settings(tmp_path, names=("DOCKMON_OUTBOUND_ALLOW",), DOCKMON_OUTBOUND_ALLOW="127.0.0.0/8,::1/128")
    assert result.returncode == 0, result.stderr[-2000:]


# ---------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("address", [
    "169.254.169.254", "::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "2002:a9fe:a9fe::1", "64:ff9b::a9fe:a9fe",
    "::a9fe:a9fe", "fe80::1%eth0", "fd00:ec2::254", "100.100.100.200", "224.0.0.1", "ff02::1", "0.0.0.0", "::",
])
def test_metadata_link_local_multicast_and_unspecified_are_blocked_in_every_form(address):
    assert blocked_reason(address), address
    with pytest.raises(outbound.Refused, match="may not reach"):
        outbound.check_address(address, 80)


def test_ipv4_mapped_addresses_are_matched_as_ipv4():
    assert candidates(ip_of("::ffff:127.0.0.1"))[0] == ip_of("127.0.0.1")
    with override_settings(DOCKMON_OUTBOUND_ALLOW="127.0.0.0/8"):
        outbound.check_address("::ffff:127.0.0.1", 8080)  # the same host as 127.0.0.1: allowed
    with override_settings(DOCKMON_OUTBOUND_DENY="127.0.0.1/32"), pytest.raises(outbound.Refused, match="DENY"):
        outbound.check_address("::ffff:7f00:1", 8080)


def test_loopback_and_private_ranges_are_allowed_by_default():
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.10", "172.20.0.2", "::1", "fd12::1"):
        outbound.check_address(address, 8080)


def test_docker_api_ports_are_refused_everywhere_unless_an_allow_entry_names_them():
    for port in outbound.ENGINE_PORTS:
        with pytest.raises(outbound.Refused, match="Docker engine API port"):
            outbound.check_address("10.9.9.9", port)
        with pytest.raises(outbound.Refused, match="Docker engine API port"):
            outbound.validate_url(f"http://10.9.9.9:{port}/version")
    with override_settings(DOCKMON_OUTBOUND_ALLOW="10.9.0.0/16"), pytest.raises(outbound.Refused, match="2375"):
        outbound.check_address("10.9.9.9", 2375)  # a network without ports does not re-admit them
    with override_settings(DOCKMON_OUTBOUND_ALLOW="10.9.0.0/16:2375"):
        outbound.check_address("10.9.9.9", 2375)
        with pytest.raises(outbound.Refused, match="not in DOCKMON_OUTBOUND_ALLOW"):
            outbound.check_address("10.9.9.9", 2376)


def test_deny_narrows_and_allow_is_the_only_way_out():
    with override_settings(DOCKMON_OUTBOUND_DENY=":8080,192.168.0.0/16:9000-9100"):
        with pytest.raises(outbound.Refused, match=r"DENY \(:8080\)"):
            outbound.check_address("127.0.0.1", 8080)
        with pytest.raises(outbound.Refused, match="9000-9100"):
            outbound.validate_url("http://192.168.3.4:9050/")
        outbound.check_address("192.168.3.4", 9200)
        outbound.check_address("127.0.0.1", 8081)
    with override_settings(DOCKMON_OUTBOUND_ALLOW="127.0.0.0/8,::1/128"):  # loopback only (the fuzzer's setting)
        outbound.check_address("127.0.0.2", 80)
        outbound.check_address("::1", 80)
        for address in ("10.0.0.1", "192.168.1.1", "fd00::1", "8.8.8.8"):
            with pytest.raises(outbound.Refused, match="not in DOCKMON_OUTBOUND_ALLOW"):
                outbound.check_address(address, 80)
    with override_settings(DOCKMON_OUTBOUND_ALLOW="127.0.0.0/8", DOCKMON_OUTBOUND_DENY="127.0.0.5/32"), \
            pytest.raises(outbound.Refused, match="DENY"):
        outbound.check_address("127.0.0.5", 80)  # deny wins over allow


# ---------------------------------------------------------------------------
# Registered engines
# ---------------------------------------------------------------------------
def test_engine_endpoints_of_each_url_kind():
    assert outbound_engines.engine_endpoint("tcp://10.0.0.5:12375") == ("10.0.0.5", 12375)
    assert outbound_engines.engine_endpoint("tcp://Docker.Example.") == ("docker.example", 2375)
    assert outbound_engines.engine_endpoint("ssh://me@10.0.0.6") == ("10.0.0.6", 22)
    assert outbound_engines.engine_endpoint("https://10.0.0.7") == ("10.0.0.7", 2376)
    assert outbound_engines.engine_endpoint("unix:///var/run/docker.sock") is None


def test_an_engine_address_is_refused_on_its_port_in_every_spelling(engines):
    engines.extend(["tcp://10.20.30.40:12375", "unix:///var/run/docker.sock", ("10.20.30.41", 15000)])
    outbound_engines.invalidate_engine_targets()
    for url in ("http://10.20.30.40:12375/containers/x/kill", "http://[::ffff:10.20.30.40]:12375/", "https://10.20.30.41:15000/"):
        with pytest.raises(outbound.Refused, match="registered Docker engine"):
            outbound.validate_url(url)
    outbound.validate_url("http://10.20.30.40:8080/")  # the same host on another port is a service


def test_an_engine_on_this_machine_is_refused_on_every_local_address(engines):
    """GIVEN an engine registered as tcp://127.0.0.1:P (a daemon bound to 0.0.0.0 answers on
    every local address) THEN P is refused on any loopback address and by the name localhost."""
    engines.append("tcp://127.0.0.1:23999")
    outbound_engines.invalidate_engine_targets()
    for url in ("http://127.0.0.1:23999/", "http://127.0.0.2:23999/", "http://[::1]:23999/", "http://localhost:23999/",
                "http://LOCALHOST.:23999/"):
        with pytest.raises(outbound.Refused, match="registered Docker engine"):
            outbound.validate_url(url)
    with pytest.raises(outbound.Refused, match="registered Docker engine"):
        outbound.check_host_port("localhost", 23999)


def test_an_engine_name_covers_every_address_it_resolves_to(engines, monkeypatch):
    engines.append("tcp://engine.test:23998")
    monkeypatch.setattr(outbound, "_getaddrinfo", lambda host, port: {"engine.test": ["10.7.7.7"]}.get(host, ["10.8.8.8"]))
    outbound_engines.invalidate_engine_targets()
    with pytest.raises(outbound.Refused, match="registered Docker engine"):
        outbound.validate_url("http://engine.test:23998/")  # the name itself, no lookup
    with pytest.raises(outbound.Refused, match="registered Docker engine"):
        outbound.validate_url("http://10.7.7.7:23998/")  # an address of that name
    # Another name for the same machine: refused when it resolves (at connection time).
    monkeypatch.setattr(outbound, "_getaddrinfo", lambda host, port: ["10.7.7.7"])
    with pytest.raises(outbound.Refused, match="alias.test resolves to 10.7.7.7.*registered Docker engine"):
        outbound.check_host_port("alias.test", 23998)


def test_host_changes_reach_the_policy_at_once(admin):
    from containers.models import DockerHost

    outbound.validate_url("http://10.44.0.1:14000/")
    host = DockerHost.objects.create(name="far-engine", url="tcp://10.44.0.1:14000")
    with pytest.raises(outbound.Refused, match="registered Docker engine"):
        outbound.validate_url("http://10.44.0.1:14000/")
    host.delete()
    outbound.validate_url("http://10.44.0.1:14000/")


# ---------------------------------------------------------------------------
# Form and method
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("url, words", [
    ("", "Give a URL"), ("ftp://127.0.0.1/", "http"), ("http://u:p@127.0.0.1/", "basic-auth"), ("http:///x", "no host"),
    ("http://127.0.0.1:99999/", "valid URL"), ("http://127.0.0.1/a b", "spaces"), ("http://metadata.google.internal/", "metadata"),
    ("http://127.0.0.1:0/", "Port 0"),
])
def test_malformed_or_refused_urls_are_value_errors_with_a_message(url, words):
    with pytest.raises(ValueError) as caught:
        outbound.validate_url(url)
    assert words in str(caught.value), str(caught.value)


def test_methods_other_than_get_and_head_need_an_administrator():
    assert outbound.validate_url("http://127.0.0.1:8080/", method="head") == "http://127.0.0.1:8080/"
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        with pytest.raises(outbound.Refused, match="administrator"):
            outbound.validate_url("http://127.0.0.1:8080/", method=method)
        assert outbound.check_method(method, admin=True) == method


def test_a_request_with_a_user_chosen_method_is_refused_before_sending(server):
    with pytest.raises(outbound.Refused, match="administrator"):
        outbound.request("POST", server.url("/"), admin=False)
    assert server.requests == []
    assert outbound.request("POST", server.url("/"), admin=True, json={"a": 1}).status_code == 200
    assert outbound.request("POST", server.url("/"), json={"a": 1}).status_code == 200  # DockMon's own choice
    assert server.requests[-1]["method"] == "POST" and server.requests[-1]["body"] == '{"a": 1}'


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------
def test_a_response_carries_status_headers_body_and_where_it_came_from(server):
    response = outbound.request("GET", server.url("/json"), params={"q": "1"})
    assert response.status == 200 and response.ok and response.json() == {"ok": True}
    assert response.headers["content-type"] == "application/json" and response.addresses == ["127.0.0.1"]
    assert response.url == server.url("/json") and not response.truncated and response.redirects == 0


def test_the_body_is_capped(server):
    response = outbound.request("GET", server.url("/big?size=500000"), max_bytes=1000)
    assert len(response.body) == 1000 and response.truncated
    whole = outbound.request("GET", server.url("/big?size=1000"), max_bytes=1000)
    assert len(whole.body) == 1000 and not whole.truncated


def test_a_dripping_server_cannot_outlast_the_total_deadline(server):
    started = time.monotonic()
    with pytest.raises(outbound.Timeout, match="Timed out"):
        outbound.request("GET", server.url("/drip"), timeout=1.0)
    assert time.monotonic() - started < 4


def test_a_redirect_to_a_refused_target_is_not_followed(server, engines):
    engines.append(f"tcp://127.0.0.1:{server.port + 1 if server.port < 65535 else 1}")
    outbound_engines.invalidate_engine_targets()
    target = f"http://127.0.0.1:{server.port + 1 if server.port < 65535 else 1}/containers/x/kill"
    with pytest.raises(outbound.Refused) as caught:
        outbound.request("GET", server.url(f"/redirect?to={target}"))
    assert "Refused redirect" in str(caught.value) and caught.value.status_code == 302
    for bad in ("http://169.254.169.254/latest/", "http://127.0.0.1:2375/containers/json"):
        with pytest.raises(outbound.Refused, match="Refused redirect"):
            outbound.request("GET", server.url(f"/redirect?to={bad}"))
    assert [seen["path"] for seen in server.requests] == ["/redirect"] * 3


def test_redirects_carry_credentials_only_to_the_same_origin_and_bodies_never_elsewhere(server):
    other = WebService()
    try:
        response = outbound.request("GET", server.url(f"/redirect?to={other.url('/landing')}"),
                                    headers={"X-Api-Key": "k-123"}, auth=("u", "p"))
        assert response.status_code == 200 and response.redirects == 1 and response.url == other.url("/landing")
        assert server.requests[-1]["headers"].get("X-Api-Key") == "k-123"
        assert "X-Api-Key" not in other.requests[-1]["headers"] and "Authorization" not in other.requests[-1]["headers"]
        # A 307 would re-send the JSON body to another origin: returned as it is, not followed.
        kept = outbound.request("POST", server.url(f"/redirect?code=307&to={other.url('/steal')}"), json={"secret": 1})
        assert kept.status_code == 307 and [s["path"] for s in other.requests] == ["/landing"]
        # 303 turns into a GET without the body.
        moved = outbound.request("POST", server.url(f"/redirect?code=303&to={other.url('/after')}"), json={"secret": 1})
        assert moved.status_code == 200 and other.requests[-1]["method"] == "GET" and other.requests[-1]["body"] == ""
    finally:
        other.close()


def test_too_many_redirects(server):
    with pytest.raises(outbound.TooManyRedirects) as caught:
        outbound.request("GET", server.url("/loop"), max_redirects=3)
    assert caught.value.redirects == 3 and caught.value.status_code == 302 and len(server.requests) == 4


def test_the_environment_is_ignored(server, monkeypatch):
    # A proxy from the environment would see every request; it must not be used.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    assert outbound.request("GET", server.url("/")).status_code == 200


def test_connection_failures_are_outbound_errors(server):
    port = server.port
    server.close()
    with pytest.raises(outbound.ConnectionFailed, match="Connection refused"):
        outbound.request("GET", f"http://127.0.0.1:{port}/", timeout=2)


def test_non_http_destinations_connect_only_to_a_checked_address(server):
    assert outbound.check_host_port("127.0.0.1", server.port) == ["127.0.0.1"]
    assert outbound.check_host_port("metadata.internal.example", 25, resolve=False) == []
    for host, port in (("169.254.169.254", 25), ("metadata.google.internal", 25), ("127.0.0.1", 2375)):
        with pytest.raises(outbound.Refused):
            outbound.check_host_port(host, port, resolve=False)
    sock = outbound.create_connection("127.0.0.1", server.port, timeout=2)
    try:
        assert sock.getpeername()[:2] == ("127.0.0.1", server.port)
    finally:
        sock.close()
    with override_settings(DOCKMON_OUTBOUND_DENY=f":{server.port}"), pytest.raises(outbound.Refused):
        outbound.create_connection("127.0.0.1", server.port, timeout=2)


def test_a_name_is_resolved_once_and_the_checked_address_is_connected(server, monkeypatch):
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])  # a rebinding resolver's second answer
    monkeypatch.setattr(outbound, "_getaddrinfo", lambda host, port: next(answers))
    response = outbound.request("GET", f"http://service.test:{server.port}/")
    assert response.status_code == 200 and response.addresses == ["127.0.0.1"]
    assert server.requests[-1]["headers"]["Host"] == f"service.test:{server.port}"


def test_a_name_with_any_refused_address_is_refused_as_a_whole(monkeypatch):
    monkeypatch.setattr(outbound, "_getaddrinfo", lambda host, port: ["127.0.0.1", "169.254.169.254"])
    connects: list = []
    original = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: connects.append(address) or original(self, address))
    with pytest.raises(outbound.Refused, match="resolves to 169.254.169.254.*nothing was sent"):
        outbound.request("GET", "http://mixed.test:8080/")
    assert connects == []


@pytest.mark.parametrize("host", ["2852039166", "0xa9.0xfe.0xa9.0xfe", "169.254.43518", "0251.0376.0251.0376"])
def test_numeric_spellings_of_an_address_are_read_as_the_address(host):
    with pytest.raises(outbound.Refused, match="link-local"):
        outbound.validate_url(f"http://{host}/latest/meta-data/")
