"""Pure conversions in containers.engine: URLs, timestamps, list summaries."""

from datetime import UTC, datetime

import pytest

from containers import engine


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("tcp://127.0.0.1:2375", "tcp://127.0.0.1:2375"),
        ("tcp://example.internal", "tcp://example.internal:2375"),
        ("  ssh://deploy@box:2222 ", "ssh://deploy@box:2222"),
    ],
)
def test_it_normalizes_supported_urls(raw, expected):
    assert engine.normalize_url(raw) == expected


def test_it_defaults_tls_urls_to_2376():
    assert engine.normalize_url("tcp://10.0.0.5", tls=True) == "tcp://10.0.0.5:2376"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "Enter the engine URL"),
        ("http://127.0.0.1:2375", "Unsupported scheme"),
        ("docker.sock", "Unsupported scheme"),
        ("unix://relative/path", "absolute socket path"),
        ("tcp://127.0.0.1:99999", "port"),
        ("tcp://127.0.0.1:2375/v1.41", "path"),
        ("tcp://:2375", "host name"),
    ],
)
def test_it_rejects_bad_urls_with_a_reason(raw, fragment):
    with pytest.raises(ValueError, match=fragment):
        engine.normalize_url(raw)


def test_engine_timestamps_with_offsets_are_converted_not_relabelled():
    assert engine.parse_time("2026-11-22T12:00:00.123456789+02:00") == datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
    assert engine.parse_time("2026-11-22T10:00:00Z") == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert engine.parse_time("0001-01-01T00:00:00Z") is None
    assert engine.parse_time(1_700_000_000) == datetime.fromtimestamp(1_700_000_000, tz=UTC)


def test_list_summary_yields_health_and_exit_code():
    facts = engine.facts_from_summary(
        {
            "Id": "a" * 64,
            "Names": ["/web"],
            "Image": "nginx:1.25",
            "ImageID": "sha256:" + "b" * 64,
            "State": "running",
            "Status": "Up 3 minutes (unhealthy)",
            "Labels": {"com.docker.compose.project": "shop"},
            "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp", "IP": "127.0.0.1"}],
            "Created": 1_700_000_000,
        }
    )
    assert (facts.name, facts.health, facts.state, facts.complete) == ("web", "unhealthy", "running", False)
    assert facts.ports == [{"private_port": 80, "type": "tcp", "public_port": 8080, "ip": "127.0.0.1"}]
    exited = engine.facts_from_summary({"Id": "c" * 64, "Names": ["/job"], "State": "exited", "Status": "Exited (137) 2 hours ago"})
    assert exited.exit_code == 137
