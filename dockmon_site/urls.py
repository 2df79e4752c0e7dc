from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from dockmon_site import views
from dockmon_site.metrics import metrics_view

api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("containers.api.urls")),
    path("", include("updates.api.urls")),
    path("", include("healthchecks.api.urls")),
    path("", include("alerts.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
