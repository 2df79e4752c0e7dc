from django.urls import path
from rest_framework.routers import SimpleRouter

from updates.api.views import (
    ContainerUpdatePolicyView,
    ContainerUpdateRunView,
    ContainerUpdateViewSet,
    PolicyCategoryViewSet,
    RegistryCredentialViewSet,
    UpdatePolicyViewSet,
    UpdateRunViewSet,
)

app_name = "updates-api"

router = SimpleRouter()
router.register("updates", ContainerUpdateViewSet, basename="update")
router.register("update-policies", UpdatePolicyViewSet, basename="update-policy")
router.register("update-policy-categories", PolicyCategoryViewSet, basename="update-policy-category")
router.register("registry-credentials", RegistryCredentialViewSet, basename="registry-credential")
router.register("update-runs", UpdateRunViewSet, basename="update-run")

urlpatterns = [
    path(
        "containers/<str:key>/update-policy/",
        ContainerUpdatePolicyView.as_view(),
        name="container-update-policy",
    ),
    path("containers/<str:key>/update/", ContainerUpdateRunView.as_view(), name="container-update"),
    *router.urls,
]
