from rest_framework.routers import SimpleRouter

from stacks.api.views import StackRunViewSet, StackViewSet

app_name = "stacks-api"

router = SimpleRouter()
router.register("stacks", StackViewSet, basename="stack")
router.register("stack-runs", StackRunViewSet, basename="stack-run")

urlpatterns = router.urls
