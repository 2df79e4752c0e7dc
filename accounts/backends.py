from __future__ import annotations

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts import lockout


class ThrottledModelBackend(ModelBackend):
    """ModelBackend that refuses, without checking the password, a locked username or address.

    Raising PermissionDenied stops authenticate() from trying other backends and sends
    user_login_failed, so attempts during a lockout keep it going.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        name = username if username is not None else kwargs.get(self._username_field())
        if lockout.is_locked(name, getattr(request, "_request", request)):
            raise PermissionDenied("Too many failed logins; try again later.")
        return super().authenticate(request, username=username, password=password, **kwargs)

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD
