"""Secrets at rest: a model field that stores Fernet-encrypted text."""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

_PREFIX = "fernet:"


@lru_cache(maxsize=4)
def _fernet(material: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"dockmon-secrets", info=b"v1").derive(material.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _current() -> Fernet:
    return _fernet(settings.DOCKMON_ENCRYPTION_KEY or settings.SECRET_KEY)


def encrypt(plain: str) -> str:
    return _PREFIX + _current().encrypt(plain.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(_PREFIX):
        return stored
    try:
        return _current().decrypt(stored[len(_PREFIX):].encode()).decode()
    except InvalidToken as exc:
        raise ValueError("a stored secret cannot be decrypted: the encryption key has changed") from exc


class EncryptedTextField(models.TextField):
    """Text that is encrypted before it reaches the database and decrypted on load."""

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt(value)
