from rest_framework.routers import SimpleRouter

from containers.api.engine_objects import HostObjectsViewSet, ImageViewSet, NetworkViewSet, VolumeViewSet
from containers.api.grants import GrantViewSet
from containers.api.views import BulkJobViewSet, ContainerViewSet, EventViewSet, HostViewSet, ProfileSessionViewSet

app_name = "containers-api"

router = SimpleRouter()
router.register("hosts", HostViewSet, basename="host")
router.register("containers", ContainerViewSet, basename="container")
# Host-wide actions on images and volumes (/hosts/{id}/images/pull/ ...) beside the hosts' own.
router.register("hosts", HostObjectsViewSet, basename="host-objects")
router.register("images", ImageViewSet, basename="image")
router.register("volumes", VolumeViewSet, basename="volume")
router.register("networks", NetworkViewSet, basename="network")
router.register("events", EventViewSet, basename="event")
router.register("profiles", ProfileSessionViewSet, basename="profile")
router.register("bulk-jobs", BulkJobViewSet, basename="bulk-job")
# Grants on hosts and containers, for users and groups (administrators only).
router.register("permissions", GrantViewSet, basename="grant")

urlpatterns = router.urls
