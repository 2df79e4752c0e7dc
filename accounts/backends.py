from __future__ import annotations

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts import lockout


class ThrottledModelBackend(ModelBackend):
    """ModelBackend with the failed-login rules of accounts/lockout.py.

    A username that must wait from this address (or an address that must wait), or a second
    check of the same username and address while one runs, is refused without checking the
    password: PermissionDenied stops authenticate() from trying other backends. A wrong password
    is counted here, while the attempt still holds its pair, so that parallel guesses see it.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        name = username if username is not None else kwargs.get(self._username_field())
        raw = getattr(request, "_request", request)
        if lockout.is_locked(name, raw) or not lockout.begin_attempt(name, raw):
            raise PermissionDenied("Too many failed logins; try again later.")
        try:
            user = super().authenticate(request, username=username, password=password, **kwargs)
            if user is None:
                if name is not None and password is not None:
                    lockout.register_failure(name, raw)
            else:
                lockout.forget_pair(name, raw)
            return user
        finally:
            lockout.end_attempt(name, raw)

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD
