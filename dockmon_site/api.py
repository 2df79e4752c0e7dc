"""Base pieces shared by every app's API."""

from __future__ import annotations

import logging
from datetime import UTC

import django_filters
from cryptography import x509
from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, DataError
from rest_framework import serializers, status
from rest_framework.metadata import SimpleMetadata
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (OverflowError, DataError)):
        # A value the database cannot hold (a number beyond its integer range: SQLite raises
        # OverflowError, PostgreSQL a DataError) is the client's mistake, not an outage.
        logger.info("value out of the database's range in %s: %s", context.get("view"), exc)
        return Response({"detail": "A value in the request is out of range."}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DatabaseError):
        # The database went away (restart, network): say so instead of a bare 500 page.
        logger.exception("database error while serving %s", context.get("view"))
        return Response({"detail": "The database is unavailable; try again shortly."}, status=503)
    return None


# ---------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------
class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time filter that queries in UTC.

    PostgreSQL refuses offsets beyond ±15:59 and some far-off dates that Python accepts; a
    value it cannot store is a 400, not a database error.
    """

    def filter(self, qs, value):
        if value is not None:
            try:
                value = value.astimezone(UTC)
            except (OverflowError, ValueError):
                raise serializers.ValidationError({self.field_name: ["Enter a date and time within years 1-9999."]}) from None
        return super().filter(qs, value)


# The widest integer every supported database stores (SQLite INTEGER, PostgreSQL bigint).
DB_INT_MIN, DB_INT_MAX = -(2**63), 2**63 - 1


class IntegerFilter(django_filters.NumberFilter):
    """A whole-number filter (ids, status codes) bounded to what the database can compare: a
    value outside is a 400 naming the parameter, never a query (django-filter's NumberFilter
    takes any decimal, and a huge one reached SQLite as an OverflowError)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", DB_INT_MIN)
        kwargs.setdefault("max_value", DB_INT_MAX)
        super().__init__(*args, **kwargs)


# ---------------------------------------------------------------------------
# Secrets: write-only fields
# ---------------------------------------------------------------------------
class SecretField(serializers.CharField):
    """A secret (password, key, token) the API accepts but never returns.

    `keep_when_blank=True`: on update, an empty value keeps what is stored instead of clearing
    it, so that a client which re-sends what it read (never the secret) does not wipe it.
    """

    def __init__(self, *, keep_when_blank: bool = False, **kwargs):
        kwargs["write_only"] = True
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("style", {"input_type": "password"})
        self.keep_when_blank = keep_when_blank
        super().__init__(**kwargs)

    def run_validation(self, data=serializers.empty):
        if self.keep_when_blank and data in ("", None) and self.parent is not None and self.parent.instance is not None:
            raise serializers.SkipField()
        return super().run_validation(data)


def pem_certificates(value: str, label: str) -> str:
    """A serializer field's PEM certificate(s) (a CA bundle, a client certificate): stripped,
    ending in one newline; "" when blank; a 400 naming `label` when it is not PEM."""
    value = (value or "").strip()
    if not value:
        return ""
    try:
        certs = x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise serializers.ValidationError(f"This is not a PEM {label} certificate.") from None
    if not certs:
        raise serializers.ValidationError(f"This is not a PEM {label} certificate.")
    return value + "\n"


def secret_fields_of(serializer: serializers.Serializer) -> list[str]:
    """Names of the write-only secret fields of a serializer (for tests and audit redaction)."""
    return [name for name, field in serializer.fields.items() if isinstance(field, SecretField)]


# ---------------------------------------------------------------------------
# OPTIONS
# ---------------------------------------------------------------------------
class Metadata(SimpleMetadata):
    """OPTIONS answers: DRF's, except that a view whose object lookup fails for a reason other
    than 404/403 (one that finds its object by a rule of its own) is described without the
    form it would not have shown, instead of answering 500."""

    def determine_actions(self, request, view):
        try:
            return super().determine_actions(request, view)
        except DatabaseError:
            raise
        except Exception:
            logger.warning("OPTIONS %s: the actions could not be described", request.path, exc_info=True)
            return {}
