"""Secrets at rest: a model field that stores Fernet-encrypted text, with rotating keys.

Keys come from DOCKMON_ENCRYPTION_KEYS (comma-separated, newest first), else the single
DOCKMON_ENCRYPTION_KEY, else SECRET_KEY. Each key is any string: the Fernet key is derived from
it with HKDF, so values written before key lists existed stay readable. Values are encrypted
with the first key and decrypted with whichever key fits (MultiFernet); `manage.py rotate_keys`
re-encrypts every stored value with the first key, after which older keys can be dropped.

A value that no configured key decrypts never raises on load: the field hands out an
`Undecryptable` (an empty string that remembers the stored text), so lists, pages and the
monitor keep working; every place that needs the secret checks `is_undecryptable()` and fails
that one task with UNDECRYPTABLE_MESSAGE-like text. Saving the row again keeps the stored text.
"""

from __future__ import annotations

import base64
import logging
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

logger = logging.getLogger(__name__)

PREFIX = "fernet:"
UNDECRYPTABLE_TLS_MESSAGE = "stored TLS material cannot be decrypted: the encryption key changed; re-enter it"
_warned: set[tuple[str, int]] = set()


def undecryptable_message(what: str, *, plural: bool = False) -> str:
    """The error for a task that needs a secret the keys no longer open, e.g. what="the stored password"."""
    return f"{what} cannot be decrypted: the encryption key changed; re-enter {'them' if plural else 'it'}"


class Undecryptable(str):
    """Loaded in place of a secret that no configured key decrypts.

    It is the empty string (so nothing that formats or sends it can leak or crash on it) with a
    flag, and it keeps the stored ciphertext: saving the row unchanged writes that text back, so
    restoring the old key later brings the secret back."""

    stored: str

    def __new__(cls, stored: str):
        obj = super().__new__(cls, "")
        obj.stored = stored
        return obj

    def __getnewargs__(self):
        return (self.stored,)

    def __repr__(self) -> str:
        return "<undecryptable secret>"


def is_undecryptable(value) -> bool:
    return isinstance(value, Undecryptable)


def key_materials() -> tuple[str, ...]:
    """The configured keys, newest first."""
    keys = tuple(getattr(settings, "DOCKMON_ENCRYPTION_KEYS", None) or ())
    if keys:
        return keys
    return (getattr(settings, "DOCKMON_ENCRYPTION_KEY", "") or settings.SECRET_KEY,)


@lru_cache(maxsize=16)
def _fernet(material: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"dockmon-secrets", info=b"v1").derive(material.encode())
    return Fernet(base64.urlsafe_b64encode(key))


@lru_cache(maxsize=4)
def _multi(materials: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(material) for material in materials])


def _keys() -> MultiFernet:
    return _multi(key_materials())


def _primary() -> Fernet:
    return _fernet(key_materials()[0])


def encrypt(plain: str) -> str:
    return PREFIX + _keys().encrypt(plain.encode()).decode()


def decrypt(stored: str) -> str:
    """The plain text of a stored value (values without the prefix predate encryption).
    Raises ValueError when no configured key decrypts it."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        return _keys().decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken as exc:
        raise ValueError("a stored secret cannot be decrypted: the encryption key changed") from exc


def is_current(stored: str) -> bool:
    """Whether a stored value is encrypted with the newest key already."""
    if not stored.startswith(PREFIX):
        return False
    try:
        _primary().decrypt(stored[len(PREFIX):].encode())
    except InvalidToken:
        return False
    return True


def load(stored: str, *, label: str = "a secret") -> str:
    """decrypt(), but a value no key opens comes back as Undecryptable instead of raising."""
    try:
        return decrypt(stored)
    except ValueError:
        marker = (label, hash(stored))
        if marker not in _warned and len(_warned) < 10_000:
            _warned.add(marker)
            logger.warning("%s cannot be decrypted with any configured key (DOCKMON_ENCRYPTION_KEYS)", label)
        return Undecryptable(stored)


class EncryptedTextField(models.TextField):
    """Text that is encrypted before it reaches the database and decrypted on load."""

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return load(value, label=f"{self.model._meta.label}.{self.name}")

    def get_prep_value(self, value):
        if isinstance(value, Undecryptable):
            return value.stored  # unchanged: keep what was stored
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt(value)


class RemembersDestination:
    """Model mixin for secrets that follow their destination: `_remember_destination()` runs
    whenever the row is loaded or reloaded, so that save() can tell whether the place its
    secrets go to has moved since (and drop them unless the same change gives them again)."""

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._remember_destination()
        return instance

    def refresh_from_db(self, *args, **kwargs):
        super().refresh_from_db(*args, **kwargs)
        self._remember_destination()

    def _remember_destination(self) -> None:
        raise NotImplementedError
