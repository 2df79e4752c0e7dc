from rest_framework.routers import SimpleRouter

from containers.api.grants import GrantViewSet
from containers.api.views import BulkJobViewSet, ContainerViewSet, EventViewSet, HostViewSet, ProfileSessionViewSet

app_name = "containers-api"

router = SimpleRouter()
router.register("hosts", HostViewSet, basename="host")
router.register("containers", ContainerViewSet, basename="container")
router.register("events", EventViewSet, basename="event")
router.register("profiles", ProfileSessionViewSet, basename="profile")
router.register("bulk-jobs", BulkJobViewSet, basename="bulk-job")
# Grants on hosts and containers, for users and groups (administrators only).
router.register("permissions", GrantViewSet, basename="grant")

urlpatterns = router.urls
