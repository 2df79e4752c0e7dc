from django.urls import path
from rest_framework.routers import SimpleRouter

from accounts.api.views import APITokenViewSet, TokenObtainView

app_name = "accounts-api"

router = SimpleRouter()
router.register("tokens", APITokenViewSet, basename="token")

urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="token-obtain"),
    *router.urls,
]
