from django.urls import path
from rest_framework.routers import SimpleRouter

from accounts.api.views import APITokenViewSet, AuditEntryViewSet, GroupViewSet, TokenObtainView, UserViewSet

app_name = "accounts-api"

router = SimpleRouter()
router.register("tokens", APITokenViewSet, basename="token")
router.register("users", UserViewSet, basename="user")
router.register("groups", GroupViewSet, basename="group")
router.register("audit", AuditEntryViewSet, basename="audit")

urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="token-obtain"),
    *router.urls,
]
