"""Decrypted TLS keys are never left on disk: the engine client builds its SSL context in memory
(the TLS engine "beta" of the testbed), after a good and after a failed connect alike."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from containers import engine
from containers.engine import tls as engine_tls

pytestmark = pytest.mark.trust


def _pem(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _key_marker(key_pem: str) -> bytes:
    """A line of the key's base64 body: present in any file that holds the key."""
    body = [line for line in key_pem.splitlines() if line and not line.startswith("-----")]
    return body[len(body) // 2].encode()


def _files_holding(marker: bytes, *roots: Path) -> list[str]:
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    with open(path, "rb") as fh:
                        if marker in fh.read():
                            found.append(path)
                except OSError:
                    continue
    return found


def _open_memory_files() -> list[str]:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return [link for link in links if "dockmon-tls" in link]


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The process's temporary directory, made private to this test so it can be searched whole."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    engine_tls._contexts.clear()
    yield folder
    engine_tls._contexts.clear()


@pytest.fixture
def tls_material(beta):
    return {"tls_ca": _pem(beta.tls["ca"]), "tls_cert": _pem(beta.tls["cert"]), "tls_key": _pem(beta.tls["key"])}


def _no_key_left(tls_material, private_tmp):
    marker = _key_marker(tls_material["tls_key"])
    assert _files_holding(marker, private_tmp, Path(django_settings.DATA_DIR)) == []
    assert _open_memory_files() == []


def test_connecting_over_tls_leaves_no_key_file_and_reuses_one_context(beta, tls_material, private_tmp):
    client = engine.connect(beta.tcp_url, **tls_material)
    try:
        info = engine.engine_info(client)
        assert info.version
        _no_key_left(tls_material, private_tmp)
        # Many connections later (new pools, new clients), still nothing on disk.
        for _ in range(3):
            other = engine.connect(beta.tcp_url, **tls_material)
            engine.ping(other)
            other.close()
        assert len(engine_tls._contexts) == 1
    finally:
        client.close()
    _no_key_left(tls_material, private_tmp)


def test_without_memory_files_the_key_lives_in_a_private_folder_only_while_it_is_loaded(beta, tls_material, private_tmp, monkeypatch):
    """GIVEN a system without memfd (fault injected) WHEN connecting over TLS, once with a good and
    once with a key that does not match the certificate THEN the connection works, the folder used
    was private (0700) while it existed, and no file with the key remains either way."""
    seen_modes = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        path = real_mkdtemp(*args, **kwargs)
        seen_modes.append(os.stat(path).st_mode & 0o777)
        return path

    def no_memfd(*args, **kwargs):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "memfd_create", no_memfd)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    client = engine.connect(beta.tcp_url, **tls_material)
    try:
        assert engine.engine_info(client).version
    finally:
        client.close()
    assert seen_modes == [0o700]
    assert list(private_tmp.iterdir()) == []
    _no_key_left(tls_material, private_tmp)

    wrong = dict(tls_material, tls_key=_pem(beta.wrong_tls["key"]))
    with pytest.raises(engine.EngineError, match="client certificate or its key cannot be used"):
        engine.connect(beta.tcp_url, **wrong)
    assert list(private_tmp.iterdir()) == []
    _no_key_left(wrong, private_tmp)


def test_a_failed_handshake_leaves_no_key_file(beta, tls_material, private_tmp):
    wrong_ca = dict(tls_material, tls_ca=_pem(os.path.join(os.path.dirname(beta.tls["ca"]), "wrong-ca.pem")))
    client = engine.connect(beta.tcp_url, **wrong_ca)
    try:
        with pytest.raises(engine.EngineError, match="TLS"):
            engine.engine_info(client)
    finally:
        client.close()
    _no_key_left(tls_material, private_tmp)


def test_files_left_by_earlier_versions_are_removed(beta, tls_material, private_tmp, monkeypatch):
    legacy = Path(django_settings.DATA_DIR) / "tls" / "0123abcd"
    legacy.mkdir(parents=True, exist_ok=True)
    (legacy / "key.pem").write_text(tls_material["tls_key"])
    monkeypatch.setattr(engine_tls, "_legacy_checked", False)
    client = engine.connect(beta.tcp_url, **tls_material)
    client.close()
    assert not (Path(django_settings.DATA_DIR) / "tls").exists()
    _no_key_left(tls_material, private_tmp)


def test_a_certificate_without_its_key_is_refused_before_any_connection(beta, tls_material):
    with pytest.raises(engine.EngineError, match="needs both"):
        engine.connect(beta.tcp_url, tls_ca=tls_material["tls_ca"], tls_cert=tls_material["tls_cert"], tls_key="")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_a_client_certificate_without_a_ca_connects_without_verifying_the_engine(beta, tls_material, private_tmp):
    client = engine.connect(beta.tcp_url, tls_cert=tls_material["tls_cert"], tls_key=tls_material["tls_key"])
    try:
        assert engine.engine_info(client).version
    finally:
        client.close()
    _no_key_left(tls_material, private_tmp)
