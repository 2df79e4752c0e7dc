"""Failed-login throttling, in the cache, for every login path (admin, browser, API token).

Two counters, so that nobody can lock someone else out from elsewhere:

- per username AND client address: after DOCKMON_LOGIN_MAX_FAILURES failures of one username
  from one address, that pair waits DOCKMON_LOGIN_DELAY_SECONDS before its next attempt, and the
  wait doubles with every further failure up to DOCKMON_LOGIN_DELAY_MAX_SECONDS. A stranger
  hammering the administrator's name from their address slows down only themselves: the
  administrator logs in from their own address as usual.
- per address, whatever the username: after DOCKMON_LOGIN_MAX_FAILURES_PER_ADDRESS failures, the
  address is refused until DOCKMON_LOGIN_LOCKOUT_SECONDS have passed since its first failure
  (guessing across many usernames).

Failures are forgotten DOCKMON_LOGIN_LOCKOUT_SECONDS after the last one. Attempts refused
during a wait are not counted (no password was checked), and only one attempt per username and
address is checked at a time, so a burst of parallel guesses gets no more tries than a sequence.
A successful login clears its own username-and-address count (the address count stays).

accounts.backends.ThrottledModelBackend applies all of this inside authenticate(), which every
login path goes through. If the cache is down, logins are not throttled (and it is logged).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.core.cache import cache
from django.dispatch import receiver

from accounts.audit import client_ip

logger = logging.getLogger(__name__)

_PREFIX = "login-failures"
_IN_FLIGHT_SECONDS = 30  # an attempt's hold on its pair, should the process die mid-check


def _digest(*parts: str) -> str:
    # Hashed: usernames are user input of any length and characters; cache keys are not.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _name(username) -> str:
    return str(username or "").strip().lower()


def _generation_key(username) -> str:
    return f"{_PREFIX}:gen:{_digest(_name(username))}"


def _pair_key(username, address: str | None) -> str:
    # The username's generation is part of the key: reset(username=...) forgets every address's
    # count of that username at once by moving to the next one.
    generation = str(_get(_generation_key(username), 0))
    return f"{_PREFIX}:pair:{_digest(generation, _name(username), address or 'unknown')}"


def _address_key(address: str | None) -> str:
    return f"{_PREFIX}:ip:{address or 'unknown'}"


def _get(key: str, default=None):
    try:
        value = cache.get(key)
    except Exception:  # the cache being down must not lock everybody out: logged, not raised
        logger.warning("login failure counter unavailable", exc_info=True)
        return default
    return default if value is None else value


def _address(request) -> str | None:
    return client_ip(_raw(request)) if request is not None else None


def _raw(request):
    return getattr(request, "_request", request)


def delay_after(failures: int) -> int:
    """Seconds a username-and-address pair waits after its `failures`-th failure."""
    over = failures - settings.DOCKMON_LOGIN_MAX_FAILURES
    if over < 0:
        return 0
    cap = settings.DOCKMON_LOGIN_DELAY_MAX_SECONDS
    return int(min(cap, settings.DOCKMON_LOGIN_DELAY_SECONDS * 2 ** min(over, 40)))


def retry_after(username: str | None, request=None) -> int:
    """Seconds before `username` may try again from the caller's address (0: now)."""
    address = _address(request)
    wait = 0.0
    if username:
        until = _get(_pair_key(username, address) + ":until", 0)
        wait = max(wait, float(until) - time.time())
    if request is not None and int(_get(_address_key(address), 0)) >= settings.DOCKMON_LOGIN_MAX_FAILURES_PER_ADDRESS:
        wait = max(wait, float(settings.DOCKMON_LOGIN_LOCKOUT_SECONDS))  # at most this long
    return math.ceil(wait) if wait > 0 else 0


def is_locked(username: str | None, request=None) -> bool:
    """True when `username` from the caller's address, or the address itself, must wait."""
    return retry_after(username, request) > 0


def begin_attempt(username: str | None, request=None) -> bool:
    """Claim the right to check one password for this username and address; False while another
    check of the same pair runs. end_attempt() gives it back."""
    if not username:
        return True
    try:
        return bool(cache.add(_pair_key(username, _address(request)) + ":busy", 1, timeout=_IN_FLIGHT_SECONDS))
    except Exception:
        logger.warning("login attempt guard unavailable", exc_info=True)
        return True


def end_attempt(username: str | None, request=None) -> None:
    if not username:
        return
    try:
        cache.delete(_pair_key(username, _address(request)) + ":busy")
    except Exception:
        logger.warning("login attempt guard unavailable", exc_info=True)


def _increment(key: str, timeout: int, *, refresh: bool) -> int:
    if cache.add(key, 1, timeout=timeout):
        return 1
    try:
        value = cache.incr(key)
    except ValueError:  # expired between add() and incr()
        cache.add(key, 1, timeout=timeout)
        return 1
    if refresh:
        cache.touch(key, timeout)
    return int(value)


def register_failure(username: str | None, request=None) -> int:
    """Count a failed password check; returns the seconds the pair must now wait (0: none)."""
    address = _address(request)
    delay = 0
    try:
        if username:
            key = _pair_key(username, address)
            failures = _increment(key, settings.DOCKMON_LOGIN_LOCKOUT_SECONDS + settings.DOCKMON_LOGIN_DELAY_MAX_SECONDS, refresh=True)
            delay = delay_after(failures)
            if delay:
                cache.set(key + ":until", time.time() + delay, timeout=delay)
                logger.warning("login: %s failures for one username from %s; next attempt in %s s", failures, address, delay)
        if request is not None:
            # The address's window runs from its first failure (not refreshed).
            _increment(_address_key(address), settings.DOCKMON_LOGIN_LOCKOUT_SECONDS, refresh=False)
    except Exception:
        logger.warning("could not count a failed login", exc_info=True)
    return delay


def forget_pair(username: str | None, request=None) -> None:
    """After a successful login: this username from this address starts afresh."""
    if not username:
        return
    key = _pair_key(username, _address(request))
    try:
        cache.delete_many([key, key + ":until"])
    except Exception:
        logger.warning("could not reset failed-login counters", exc_info=True)


def reset(username: str | None = None, address: str | None = None) -> None:
    """Forget failures: of a username from every address, and/or of an address (an
    administrator's unlock, tests)."""
    if username:
        key = _generation_key(username)
        try:
            if not cache.add(key, 1, timeout=None):
                cache.incr(key)
        except Exception:
            logger.warning("could not reset failed-login counters", exc_info=True)
    if address:
        cache.delete(_address_key(address))


@receiver(user_logged_in, dispatch_uid="accounts.lockout_reset_user")
def _reset_on_success(sender, request, user, **kwargs):
    # Only this username-and-address pair: an address that guessed wrong many times stays
    # throttled even if one of its guesses was right for some other account.
    forget_pair(user.get_username(), request)
