from rest_framework.routers import SimpleRouter

from healthchecks.api.views import AutoRestartViewSet, HealthCheckViewSet

app_name = "healthchecks-api"

router = SimpleRouter()
router.register("health-checks", HealthCheckViewSet, basename="health-check")
router.register("auto-restart", AutoRestartViewSet, basename="auto-restart")

urlpatterns = router.urls
