"""TLS to Docker engines without a decrypted key on disk (used by connect.py).

requests hands urllib3 file paths, and urllib3 reads the client key from its file for every new
connection, so that file would have to stay on disk for the client's whole life. Instead each
engine's SSL context is built once, in memory: the CA from its text, the certificate and key
from anonymous memory files (memfd: no directory entry anywhere), or where those do not exist
from files in a fresh 0700 temporary directory that is removed as soon as the key is loaded.
The context then serves every connection of every client for that material, through an adapter
that neither requests nor the environment (REQUESTS_CA_BUNDLE, a CA bundle) can add trust to.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import tempfile
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import requests.adapters
from django.conf import settings

_contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
_contexts_lock = threading.Lock()
_legacy_checked = False
MAX_CONTEXTS = 64


class TLSMaterialError(Exception):
    """The CA, certificate or key cannot be used; the message says which."""


@contextmanager
def _pem_paths(*texts: str):
    """Paths from which OpenSSL can read `texts` once; nothing stays behind, whatever happens."""
    fds: list[int] = []
    folder = None
    try:
        paths = None
        if hasattr(os, "memfd_create"):
            try:
                for text in texts:
                    fd = os.memfd_create("dockmon-tls", os.MFD_CLOEXEC)
                    fds.append(fd)
                    _write_all(fd, text.encode())
                candidates = [f"/proc/self/fd/{fd}" for fd in fds]
                if all(os.path.exists(path) for path in candidates):
                    paths = candidates
            except OSError:
                paths = None
        if paths is None:
            folder = tempfile.mkdtemp(prefix="dockmon-tls-")  # mode 0700
            paths = []
            for index, text in enumerate(texts):
                path = os.path.join(folder, f"{index}.pem")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    _write_all(fd, text.encode())
                finally:
                    os.close(fd)
                paths.append(path)
        yield paths
    finally:
        for fd in fds:
            os.close(fd)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def forget_legacy_files() -> None:
    """Earlier versions kept decrypted TLS material under DATA_DIR/tls: remove it once."""
    global _legacy_checked
    if _legacy_checked:
        return
    _legacy_checked = True
    folder = Path(settings.DATA_DIR) / "tls"
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)


def _build(ca: str, cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca:
        try:
            context.load_verify_locations(cadata=ca)
        except (ssl.SSLError, ValueError) as exc:
            raise TLSMaterialError(f"The CA certificate cannot be used: {exc}") from exc
    else:
        # A client certificate without a CA: the engine is not verified (as with `docker --tls`).
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert:
        try:
            with _pem_paths(cert, key) as (cert_path, key_path):
                context.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, ValueError) as exc:
            raise TLSMaterialError(f"The client certificate or its key cannot be used: {exc}") from exc
        except OSError as exc:
            raise TLSMaterialError(f"The client certificate could not be loaded: {exc}") from exc
    return context


def ssl_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    """The (shared) SSL context for this material; TLSMaterialError when it cannot be used."""
    if bool(cert) != bool(key):
        raise TLSMaterialError("TLS needs both the client certificate and its key.")
    forget_legacy_files()
    digest = hashlib.sha256("\0".join((ca, cert, key)).encode()).hexdigest()
    with _contexts_lock:
        context = _contexts.get(digest)
        if context is not None:
            _contexts.move_to_end(digest)
            return context
    context = _build(ca, cert, key)
    with _contexts_lock:
        _contexts[digest] = context
        while len(_contexts) > MAX_CONTEXTS:
            _contexts.popitem(last=False)
    return context


class EngineTLSAdapter(requests.adapters.HTTPAdapter):
    """HTTPS to an engine through its own SSL context, never a CA bundle or key file."""

    def __init__(self, context: ssl.SSLContext, verify: bool, **kwargs):
        self._context = context
        self._verify = verify
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, self._verify, None)
        for name in ("ca_certs", "ca_cert_dir", "cert_file", "key_file"):
            pool_kwargs.pop(name, None)
        return host_params, pool_kwargs

    def cert_verify(self, conn, url, verify, cert) -> None:
        conn.cert_reqs = "CERT_REQUIRED" if self._verify else "CERT_NONE"
        conn.ca_certs = None
        conn.ca_cert_dir = None
        conn.cert_file = None
        conn.key_file = None
