from rest_framework.routers import SimpleRouter

from alerts.api.views import AlertRuleViewSet, AlertViewSet, MaintenanceWindowViewSet, NotificationChannelViewSet

app_name = "alerts-api"

router = SimpleRouter()
router.register("notification-channels", NotificationChannelViewSet, basename="notification-channel")
router.register("alert-rules", AlertRuleViewSet, basename="alert-rule")
router.register("alerts", AlertViewSet, basename="alert")
router.register("maintenance-windows", MaintenanceWindowViewSet, basename="maintenance-window")

urlpatterns = router.urls
