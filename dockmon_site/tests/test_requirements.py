"""The compiled requirement files (pip-tools, README.md "Dependencies"): every package pinned with
its hashes, every direct requirement compiled in, one version per package across the files, the
apprise extra kept out of the runtime set, and the dev set complete."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(name: str) -> dict[str, tuple[str, int]]:
    """package → (version, number of hashes) of a compiled file."""
    pins: dict[str, tuple[str, int]] = {}
    current = None
    for line in (ROOT / name).read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = _norm(match.group(1))
            assert current not in pins, f"{name}: {current} pinned twice"
            pins[current] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"{name}: unexpected line {line!r}")
    return pins


def _direct(name: str) -> set[str]:
    names = set()
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(_norm(re.split(r"[\[<>=!~;\s]", line, maxsplit=1)[0]))
    return names


def test_every_package_is_pinned_with_its_hashes_and_every_direct_requirement_is_compiled_in():
    for source, compiled in (("requirements.in", "requirements.txt"), ("requirements-apprise.in", "requirements-apprise.txt"),
                             ("requirements-dev.in", "requirements-dev.txt")):
        pins = _pins(compiled)
        assert len(pins) > 5, compiled
        unhashed = sorted(name for name, (_, hashes) in pins.items() if hashes == 0)
        assert not unhashed, f"{compiled}: no hashes for {unhashed}"
        missing = sorted(_direct(source) - set(pins))
        assert not missing, f"{compiled} lacks {missing}: run make lock-deps"


def test_one_version_per_package_the_apprise_extra_apart_and_the_dev_set_complete():
    runtime, extra, dev = _pins("requirements.txt"), _pins("requirements-apprise.txt"), _pins("requirements-dev.txt")
    for name in set(runtime) & set(extra):
        assert runtime[name][0] == extra[name][0], name
    for name, (version, _) in {**runtime, **extra}.items():
        assert dev.get(name, (None,))[0] == version, f"requirements-dev.txt: {name} is not {version}"
    assert "apprise" not in runtime and "apprise" in extra
    assert "pip-tools" in dev and "pip-tools" not in runtime
    # Debian 12's Python (3.11.2) needs it for redis; a hash-checked install fails without its pin.
    assert "async-timeout" in runtime
    # The runtime's transitive needs are pinned too (daphne's twisted[tls]).
    assert {"pyopenssl", "service-identity"} <= set(runtime)


def test_the_installers_take_the_compiled_files():
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "files=(requirements.txt requirements-apprise.txt)" in bootstrap and "files=(requirements-dev.txt)" in bootstrap
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.txt requirements-apprise.txt wheel[s] /tmp/build/" in dockerfile
    assert "--build-arg APPRISE=0" in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    assert "upgrade-deps:\n\tscripts/compile-requirements.sh --upgrade" in makefile
