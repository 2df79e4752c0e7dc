"""API token authentication for DRF and for WebSockets."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from rest_framework import authentication, exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import APIToken

_SCHEMES = (b"token", b"bearer")


def _token_from_header(value: bytes | str | None) -> str | None:
    if not value:
        return None
    if isinstance(value, str):
        value = value.encode()
    parts = value.split()
    if len(parts) != 2 or parts[0].lower() not in _SCHEMES:
        return None
    return parts[1].decode(errors="replace")


class TokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <token>` (or `Bearer <token>`)."""

    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        parts = header.split()
        if not parts or parts[0].lower() not in _SCHEMES:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: use 'Token <token>'.")
        token = APIToken.authenticate(parts[1].decode(errors="replace"))
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        token.mark_used()
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


class TokenWritePermission(BasePermission):
    """A read-only token may only read."""

    message = "This token is read-only."

    def has_permission(self, request, view):
        token = request.auth
        if isinstance(token, APIToken) and token.read_only and request.method not in SAFE_METHODS:
            return False
        return True


@database_sync_to_async
def _token_for(raw: str):
    token = APIToken.authenticate(raw)
    if token is None:
        return None
    token.mark_used()
    return token


class TokenAuthMiddleware(BaseMiddleware):
    """WebSocket auth by `?token=` or an Authorization header; falls back to the session user."""

    async def __call__(self, scope, receive, send):
        raw = None
        query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
        if query.get("token"):
            raw = query["token"][0]
        else:
            for name, value in scope.get("headers", []):
                if name == b"authorization":
                    raw = _token_from_header(value)
                    break
        if raw is not None:
            token = await _token_for(raw)
            scope = dict(scope)
            if token is not None:
                scope["user"] = token.user
                # Consumers re-check the token while the socket is open: revoking it ends the stream.
                scope["token_id"] = token.pk
                # A read-only token may only read: the consumer refuses actions that write.
                scope["token_read_only"] = token.read_only
            else:
                from django.contrib.auth.models import AnonymousUser

                scope["user"] = AnonymousUser()
            scope["token_auth"] = True
        return await super().__call__(scope, receive, send)
