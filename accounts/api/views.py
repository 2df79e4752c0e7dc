from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from accounts.api.serializers import APITokenSerializer, TokenObtainSerializer
from accounts.authentication import TokenWritePermission
from accounts.models import APIToken
from containers.choices import EventCategory
from dockmon_site import bus


class TokenObtainView(APIView):
    """Exchange a username and password for a new API token (shown once)."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=TokenObtainSerializer, responses={201: APITokenSerializer})
    def post(self, request):
        serializer = TokenObtainSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        token = serializer.save()
        bus.emit(
            "token.created",
            category=EventCategory.USER,
            actor=token.user,
            message=f"{token.user} obtained API token {token.name!r}",
            data={"token_id": token.pk, "name": token.name, "read_only": token.read_only},
        )
        return Response(APITokenSerializer(token).data, status=status.HTTP_201_CREATED)


class APITokenViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The caller's own API tokens. DELETE revokes (the row is kept for the record)."""

    serializer_class = APITokenSerializer
    permission_classes = [IsAuthenticated, TokenWritePermission]
    filter_backends = []

    queryset = APIToken.objects.none()  # for the schema; get_queryset narrows to the caller's tokens

    def get_queryset(self):
        return APIToken.objects.filter(user=self.request.user)

    def perform_destroy(self, instance):
        instance.revoked_at = timezone.now()
        instance.save(update_fields=["revoked_at"])
