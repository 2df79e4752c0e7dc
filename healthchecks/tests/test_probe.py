"""The probe against real local HTTP servers: outcomes, timeouts, redirects, TLS, and the
metadata-address guard (checked before anything is sent)."""

from __future__ import annotations

import time

import pytest

from dockmon_site import outbound
from healthchecks import probe
from healthchecks.probe import ProbeSpec, parse_status_spec

# The outbound policy reads the registered engines from the database.
pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "text, expected",
    [("200", ((200, 200),)), ("200-299,301", ((200, 299), (301, 301))), (" 200 - 204 ".replace(" - ", "-"), ((200, 204),)),
     ("204, 301-302", ((204, 204), (301, 302)))],
)
def test_status_spec_accepts_codes_and_ranges(text, expected):
    assert parse_status_spec(text) == expected


@pytest.mark.parametrize("text", ["", "ok", "200-", "2xx", "99", "600", "299-200", "200,,201", "200;201", "1000", "200-299-300"])
def test_status_spec_is_strict(text):
    with pytest.raises(ValueError):
        parse_status_spec(text)


def test_healthy_endpoint_with_keyword(local_server):
    result = probe.probe(ProbeSpec(url=local_server.url("/"), body_keyword="all good"))
    assert result.ok and result.status_code == 200 and result.error == ""
    assert result.response_ms is not None and result.addresses == ["127.0.0.1"]


def test_wrong_status_and_missing_keyword_are_failures(local_server):
    result = probe.probe(ProbeSpec(url=local_server.url("/status?code=503")))
    assert not result.ok and result.status_code == 503 and "503" in result.error
    result = probe.probe(ProbeSpec(url=local_server.url("/"), body_keyword="absent-word"))
    assert not result.ok and "absent-word" in result.error
    # A list with a range: 418 is accepted when asked for.
    assert probe.probe(ProbeSpec(url=local_server.url("/status?code=418"), expected_status="200-299,418")).ok


def test_methods_headers_and_basic_auth_are_sent(local_server):
    spec = ProbeSpec(url=local_server.url("/"), method="POST", headers={"X-Probe": "yes"}, basic_auth_user="u", basic_auth_password="p")
    assert probe.probe(spec).ok
    sent = local_server.requests[-1]
    assert sent["method"] == "POST" and sent["headers"]["X-Probe"] == "yes"
    assert sent["headers"]["Authorization"].startswith("Basic ")
    assert probe.probe(ProbeSpec(url=local_server.url("/"), method="HEAD")).ok
    assert local_server.requests[-1]["method"] == "HEAD"


def test_connection_refused_is_reported(local_server):
    port = local_server.port
    local_server.close()
    result = probe.probe(ProbeSpec(url=f"http://127.0.0.1:{port}/", timeout=2))
    assert not result.ok and result.error == "Connection refused."


def test_hanging_endpoint_times_out_and_is_reported(hanging_server):
    started = time.monotonic()
    result = probe.probe(ProbeSpec(url=hanging_server.url(), timeout=1.0))
    assert not result.ok and result.status_code is None
    assert result.error.startswith("Timed out")
    assert time.monotonic() - started < 5  # cut off, not left hanging


def test_slow_drip_body_cannot_outlast_the_timeout(local_server):
    """GIVEN a server that sends headers and then one byte every 0.2 s (each read is quick)
    WHEN the check's timeout is 1 s THEN the probe stops at its total deadline."""
    started = time.monotonic()
    result = probe.probe(ProbeSpec(url=local_server.url("/drip"), timeout=1.0))
    assert not result.ok and result.error.startswith("Timed out")
    assert time.monotonic() - started < 5


def test_metadata_address_is_refused_without_connecting(connect_spy):
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://metadata.google.internal/",
                "http://[::ffff:169.254.169.254]/", "http://169.254.1.1:8080/"):
        result = probe.probe(ProbeSpec(url=url))
        assert not result.ok and "may not reach" in result.error, (url, result.error)
    assert connect_spy == []


def test_a_name_resolving_to_metadata_is_refused_before_connecting(monkeypatch, connect_spy):
    """DNS cannot be made to lie here, so the resolver answer is injected: a name that resolves
    to the metadata address (the DNS-rebinding case) is refused before any connection."""
    monkeypatch.setattr(outbound, "_getaddrinfo", lambda host, port: ["169.254.169.254"])
    result = probe.probe(ProbeSpec(url="http://innocent.example/health"))
    assert not result.ok
    assert "innocent.example resolves to 169.254.169.254" in result.error and "nothing was sent" in result.error
    assert connect_spy == []


def test_the_connection_goes_to_the_checked_address(monkeypatch, local_server, connect_spy):
    """The name is resolved once, checked, and the socket connects to that very address."""
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])  # a rebinding resolver's second answer
    monkeypatch.setattr(outbound, "_getaddrinfo", lambda host, port: next(answers))
    result = probe.probe(ProbeSpec(url=local_server.url("/", host="service.test")))
    assert result.ok, result.error
    assert [a[0] for a in connect_spy] == ["127.0.0.1"]
    assert local_server.requests[-1]["headers"]["Host"] == f"service.test:{local_server.port}"


def test_every_redirect_hop_is_checked(local_server, connect_spy):
    result = probe.probe(ProbeSpec(url=local_server.url("/redirect?to=http://169.254.169.254/latest/")))
    assert not result.ok and "Refused redirect" in result.error and result.status_code == 302
    assert {a[0] for a in connect_spy} == {"127.0.0.1"}


def test_redirects_are_followed_bounded_or_not_at_all(local_server):
    target = local_server.url("/status?code=200")
    result = probe.probe(ProbeSpec(url=local_server.url(f"/redirect?to={target}")))
    assert result.ok and result.redirects == 1
    loop = probe.probe(ProbeSpec(url=local_server.url("/loop")))
    assert not loop.ok and "redirects" in loop.error and loop.redirects == probe.MAX_REDIRECTS
    unfollowed = probe.probe(ProbeSpec(url=local_server.url(f"/redirect?to={target}"), follow_redirects=False, expected_status="302"))
    assert unfollowed.ok and unfollowed.status_code == 302


def test_credentials_do_not_follow_a_redirect_to_another_origin(local_server):
    other = type(local_server)()
    try:
        spec = ProbeSpec(url=local_server.url(f"/redirect?to={other.url('/')}"), headers={"X-Token": "secret"},
                         basic_auth_user="u", basic_auth_password="p")
        assert probe.probe(spec).ok
        assert local_server.requests[-1]["headers"].get("X-Token") == "secret"
        landed = other.requests[-1]["headers"]
        assert "X-Token" not in landed and "Authorization" not in landed
    finally:
        other.close()


def test_tls_verification_with_a_custom_ca(tls_server, testbed, monkeypatch):
    # The machine's REQUESTS_CA_BUNDLE must not decide what a check trusts.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", testbed.tls["ca"])
    url = tls_server.url("/")
    untrusted = probe.probe(ProbeSpec(url=url))
    assert not untrusted.ok and untrusted.error.startswith("TLS error"), untrusted.error
    with open(testbed.tls["ca"]) as handle:
        ca = handle.read()
    assert probe.probe(ProbeSpec(url=url, tls_ca=ca)).ok
    assert probe.probe(ProbeSpec(url=url, verify_tls=False)).ok
