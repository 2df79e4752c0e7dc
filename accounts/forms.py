"""Login forms that say plainly when failed logins make this username (from this address), or
this address, wait (accounts/lockout.py), instead of "wrong password"."""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from accounts import lockout

LOCKED_OUT = "Too many failed logins for this account from this address, or from this address; try again in %(seconds)s seconds."


class LockoutAwareMixin:
    def clean(self):
        wait = lockout.retry_after(self.cleaned_data.get("username"), self.request)
        if wait:
            # Not counted (no password is checked), so waiting is enough to try again.
            raise forms.ValidationError(LOCKED_OUT, code="locked_out", params={"seconds": wait})
        return super().clean()


class LockoutAwareLoginForm(LockoutAwareMixin, AuthenticationForm):
    """The browser UI's login form (/login/)."""


class LockoutAwareAdminLoginForm(LockoutAwareMixin, AdminAuthenticationForm):
    """The admin's login form."""
