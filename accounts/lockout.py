"""Failed-login counting, per username and per client address, in the cache.

Used by every login path: the admin/session login and the API token endpoint both go through
django.contrib.auth.authenticate(), whose backend (accounts.backends.ThrottledModelBackend)
refuses a locked username or address, and whose `user_login_failed` signal counts failures.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver

from accounts.audit import client_ip

logger = logging.getLogger(__name__)

_PREFIX = "login-failures"


def _user_key(username: str) -> str:
    # Hashed: usernames are user input of any length and characters; cache keys are not.
    digest = hashlib.sha256(str(username or "").strip().lower().encode()).hexdigest()[:32]
    return f"{_PREFIX}:user:{digest}"


def _address_key(address: str | None) -> str:
    return f"{_PREFIX}:ip:{address or 'unknown'}"


def _window() -> int:
    return settings.DOCKMON_LOGIN_LOCKOUT_SECONDS


def _count(key: str) -> int:
    try:
        return int(cache.get(key) or 0)
    except Exception:  # the cache being down must not lock everybody out (nor let them in unthrottled forever: logged)
        logger.warning("login failure counter unavailable", exc_info=True)
        return 0


def _bump(key: str) -> None:
    try:
        if not cache.add(key, 1, timeout=_window()):
            try:
                cache.incr(key)
            except ValueError:  # expired between add() and incr()
                cache.add(key, 1, timeout=_window())
    except Exception:
        logger.warning("could not count a failed login", exc_info=True)


def is_locked(username: str | None, request=None) -> bool:
    """True when the username or the caller's address has failed too often in the window."""
    if username and _count(_user_key(username)) >= settings.DOCKMON_LOGIN_MAX_FAILURES:
        return True
    if request is not None and _count(_address_key(client_ip(request))) >= settings.DOCKMON_LOGIN_MAX_FAILURES_PER_ADDRESS:
        return True
    return False


def register_failure(username: str | None, request=None) -> None:
    if username:
        _bump(_user_key(username))
    if request is not None:
        _bump(_address_key(client_ip(request)))


def reset(username: str | None = None, address: str | None = None) -> None:
    """Forget the failures of a username and/or an address (a successful login, an admin, tests)."""
    keys = []
    if username:
        keys.append(_user_key(username))
    if address:
        keys.append(_address_key(address))
    if keys:
        cache.delete_many(keys)


def _raw(request):
    return getattr(request, "_request", request)


@receiver(user_login_failed, dispatch_uid="accounts.lockout_count_failure")
def _count_failure(sender, credentials, request=None, **kwargs):
    register_failure(credentials.get("username"), _raw(request) if request is not None else None)


@receiver(user_logged_in, dispatch_uid="accounts.lockout_reset_user")
def _reset_on_success(sender, request, user, **kwargs):
    # Only the username's counter: an address that guessed wrong many times stays throttled
    # even if one of its guesses was right for some other account.
    reset(username=user.get_username())
