from rest_framework.routers import SimpleRouter

from containers.api.views import ContainerViewSet, EventViewSet, HostViewSet, ProfileSessionViewSet

app_name = "containers-api"

router = SimpleRouter()
router.register("hosts", HostViewSet, basename="host")
router.register("containers", ContainerViewSet, basename="container")
router.register("events", EventViewSet, basename="event")
router.register("profiles", ProfileSessionViewSet, basename="profile")

urlpatterns = router.urls
