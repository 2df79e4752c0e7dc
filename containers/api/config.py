"""GET /api/v1/config/export/ and POST /api/v1/config/import/ (administrators only).

The rule is the one /api/v1/users/ follows: a superuser or a member of the Administrators role
(containers.permissions.is_administrator); anyone else signed in gets 403, like there. The
file names every host and holds every setting, so nothing less than administration will do.
Both calls are in the audit log: the import through AuditMiddleware (one row with the
outcome's counts instead of the uploaded document), the export by its own row.
"""

from __future__ import annotations

import json

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import audit
from accounts.authentication import TokenWritePermission
from accounts.roles import is_administrator
from containers import config_io

_SECTION_HELP = "Objects of this kind (see the README's 'Configuration export and import')"


# Django refuses request bodies over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default) when they
# are read whole; a configuration with thousands of containers is bigger, so this endpoint reads
# its body from the stream, bounded here instead.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


class DocumentTooLarge(APIException):
    status_code = 413
    default_detail = "The document is too large for the API; import it with manage.py import_config."
    default_code = "too_large"


class ConfigDocumentParser(BaseParser):
    """JSON from the request stream, up to MAX_DOCUMENT_BYTES (not a JSONParser subclass: DRF
    reads the whole body through Django's size check for those)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read(MAX_DOCUMENT_BYTES + 1)
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise DocumentTooLarge(f"The document is larger than {MAX_DOCUMENT_BYTES // 2**20} MiB; "
                                   "import it with manage.py import_config.")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class IsAdministrator(BasePermission):
    message = "Only administrators may export or import the configuration."

    def has_permission(self, request, view):
        return is_administrator(request.user)


class ConfigDocumentSerializer(serializers.Serializer):
    """The shape of the file (for the schema; the importer checks every item in detail)."""

    dockmon_config = serializers.IntegerField(min_value=1, max_value=1, help_text="Format version")
    exported_at = serializers.DateTimeField(required=False, read_only=True)
    not_included = serializers.ListField(child=serializers.CharField(), required=False, read_only=True,
                                         help_text="What the file leaves out (informational)")
    hosts = serializers.ListField(child=serializers.DictField(), required=False, help_text=_SECTION_HELP)
    tags = serializers.ListField(child=serializers.DictField(), required=False, help_text=_SECTION_HELP)
    containers = serializers.ListField(child=serializers.DictField(), required=False,
                                       help_text="Per-container settings; a container is named by {host, name}")
    registry_credentials = serializers.ListField(child=serializers.DictField(), required=False, help_text=_SECTION_HELP)
    policy_categories = serializers.ListField(child=serializers.DictField(), required=False, help_text=_SECTION_HELP)
    health_checks = serializers.ListField(child=serializers.DictField(), required=False, help_text=_SECTION_HELP)
    notification_channels = serializers.ListField(child=serializers.DictField(), required=False, help_text=_SECTION_HELP)
    alert_rules = serializers.ListField(child=serializers.DictField(), required=False, help_text=_SECTION_HELP)
    maintenance_windows = serializers.ListField(child=serializers.DictField(), required=False, help_text=_SECTION_HELP)


class ImportCountsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    skipped = serializers.IntegerField()


class ImportItemSerializer(serializers.Serializer):
    kind = serializers.CharField()
    ref = serializers.CharField(help_text="The object's name (containers: host/name)")
    result = serializers.ChoiceField(choices=[(r, r) for r in config_io.RESULTS])
    reason = serializers.CharField(required=False, help_text="Why it was skipped")
    notes = serializers.ListField(child=serializers.CharField(), required=False, help_text="What needs attention")


class EngineSyncSerializer(serializers.Serializer):
    host = serializers.CharField()
    ok = serializers.BooleanField()
    detail = serializers.CharField()


class ImportReportSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    summary = serializers.DictField(child=ImportCountsSerializer(), help_text="Counts per kind")
    items = ImportItemSerializer(many=True, help_text="Every object that was not unchanged, or needs attention")
    engine_sync = EngineSyncSerializer(many=True, help_text="Hosts read from their engine to find the containers the file names")


_PERMISSIONS = [IsAuthenticated, TokenWritePermission, IsAdministrator]


class ConfigExportView(APIView):
    permission_classes = _PERMISSIONS

    @extend_schema(
        operation_id="config_export",
        summary="Export the configuration",
        description="Hosts (without TLS material), tags, per-container settings, update policies and categories, registry "
                    "credentials (without passwords), health checks, notification channels (without secrets), alert rules "
                    "and maintenance windows as one JSON document. Administrators only.",
        responses={200: ConfigDocumentSerializer, 403: OpenApiResponse(description="Not an administrator")},
    )
    def get(self, request):
        document = config_io.export_config()
        audit.record(request, "config.export", changes={"counts": config_io.counts(document)}, status=200,
                     object_type="dockmon.config")
        return Response(document)


class ConfigImportView(APIView):
    permission_classes = _PERMISSIONS
    parser_classes = [ConfigDocumentParser]

    @extend_schema(
        operation_id="config_import",
        summary="Import a configuration document",
        description="Creates and updates what the document names (nothing else is deleted; stored secrets are kept), in one "
                    "transaction. Idempotent. `dry_run=true` reports without writing. An invalid document is a 400 with "
                    "field errors by section and item. Administrators only.",
        parameters=[OpenApiParameter("dry_run", OpenApiTypes.BOOL, description="Report what would change, write nothing")],
        request=ConfigDocumentSerializer,
        responses={200: ImportReportSerializer, 400: OpenApiResponse(description="Invalid document (field errors)"),
                   403: OpenApiResponse(description="Not an administrator"),
                   413: OpenApiResponse(description=f"Larger than {MAX_DOCUMENT_BYTES // 2**20} MiB")},
    )
    def post(self, request):
        raw = request.query_params.get("dry_run")
        try:
            dry_run = False if raw in (None, "") else serializers.BooleanField().to_internal_value(raw)
        except serializers.ValidationError as exc:
            raise ValidationError({"dry_run": exc.detail}) from None
        try:
            report = config_io.import_config(request.data, dry_run=dry_run, user=request.user)
        except config_io.ConfigError as exc:
            audit.note(request, action="config.import", changes={"dry_run": dry_run, "valid": False})
            raise ValidationError(exc.errors) from None
        audit.note(request, action="config.import", changes={"dry_run": dry_run, "summary": report["summary"]})
        return Response(report)


# Included under /api/v1/config/ by dockmon_site/urls.py.
urlpatterns = [
    path("export/", ConfigExportView.as_view(), name="config-export"),
    path("import/", ConfigImportView.as_view(), name="config-import"),
]
