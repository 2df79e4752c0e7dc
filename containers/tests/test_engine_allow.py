"""DOCKMON_ENGINE_ALLOW: engines outside the allowed networks are never contacted.

Runs under the test network guard (dockmon_site/tests/netguard.py): a connection, DNS lookup
or ssh beyond loopback would be refused and recorded, so "nothing was sent" is asserted, not
assumed. Real engines answer on loopback.
"""

from __future__ import annotations

import pytest

from containers import engine
from dockmon_site.tests.netguard import NetGuard

LOOPBACK = "127.0.0.0/8,::1/128"


@pytest.fixture
def guard():
    with NetGuard() as g:
        yield g


def test_engine_urls_outside_the_allow_list_fail_before_anything_is_sent(settings, guard):
    settings.DOCKMON_ENGINE_ALLOW = LOOPBACK
    for url in ("tcp://10.11.12.13:2375", "ssh://root@10.11.12.13", "tcp://[fd00::1]:2376", "tcp://[::ffff:10.1.1.1]:2375"):
        with pytest.raises(engine.EngineError, match="not in DOCKMON_ENGINE_ALLOW"):
            engine.connect(url)
    # A name is resolved and its addresses checked: one that does not resolve here is refused too.
    with pytest.raises(engine.EngineError, match="Cannot resolve"):
        engine.connect("ssh://deploy@engine.example.com")
    assert guard.violations == [] and guard.ssh_spawns == []


def test_an_allowed_engine_works_and_unix_sockets_are_always_allowed(settings, guard, alpha):
    settings.DOCKMON_ENGINE_ALLOW = "127.0.0.1/32"
    for url in (alpha.tcp_url, alpha.tcp_url.replace("127.0.0.1", "localhost"), alpha.unix_url):
        client = engine.connect(url)
        try:
            assert engine.engine_info(client).version
        finally:
            client.close()
    assert guard.violations == []


def test_ports_in_the_allow_list_are_honoured(settings, alpha):
    port = int(alpha.tcp_url.rsplit(":", 1)[1])
    settings.DOCKMON_ENGINE_ALLOW = f"127.0.0.1:{port + 1}"
    with pytest.raises(engine.EngineError, match="not in DOCKMON_ENGINE_ALLOW"):
        engine.connect(alpha.tcp_url)
    settings.DOCKMON_ENGINE_ALLOW = f"127.0.0.1:{port}"
    engine.connect(alpha.tcp_url).close()


def test_without_the_setting_any_engine_url_is_accepted():
    # Only the check itself: no client is made, so nothing is contacted.
    engine.check_engine_allowed("tcp://10.11.12.13:2375")
    engine.check_engine_allowed("ssh://deploy@engine.example.com")


@pytest.mark.django_db
def test_adding_a_host_outside_the_allow_list_records_the_refusal(settings, guard, admin_client):
    """GIVEN DOCKMON_ENGINE_ALLOW=loopback WHEN a superuser adds hosts on a private address (tcp
    and ssh) THEN they are saved with status error and the refusal, and nothing left loopback."""
    settings.DOCKMON_ENGINE_ALLOW = LOOPBACK
    for name, url in (("private-tcp", "tcp://10.11.12.13:2375"), ("private-ssh", "ssh://root@10.11.12.13")):
        response = admin_client.post("/api/v1/hosts/", {"name": name, "url": url}, format="json")
        assert response.status_code == 201, response.content
        host = admin_client.get(f"/api/v1/hosts/{response.json()['id']}/").json()
        assert host["status"] == "error" and "DOCKMON_ENGINE_ALLOW" in host["last_error"], host
        tested = admin_client.post(f"/api/v1/hosts/{host['id']}/test/")
        assert tested.status_code == 200 and tested.json()["ok"] is False
    assert guard.violations == [] and guard.ssh_spawns == []
