from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts.forms import LockoutAwareLoginForm
from accounts.schema_views import SchemaView, login_required_page
from alerts import views as alert_views
from containers import dashboard, object_views
from containers import views as container_views
from containers.metrics import metrics_view
from dockmon_site import views
from dockmon_site.api_docs import ApiDocsView
from healthchecks import views as health_views
from stacks import views as stack_views
from updates import views as update_views

api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("containers.api.urls")),
    path("", include("updates.api.urls")),
    path("", include("healthchecks.api.urls")),
    path("", include("alerts.api.urls")),
    path("", include("stacks.api.urls")),
    path("config/", include("containers.api.config")),
    # Both need a login (401 for the schema, the login page for the docs).
    path("schema/", SchemaView.as_view(), name="schema"),
    # Swagger UI with its init script as a file of its own (Content-Security-Policy, dockmon_site/api_docs.py).
    path("docs/", login_required_page(ApiDocsView).as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=LockoutAwareLoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("", dashboard.dashboard, name="dashboard"),
    path("dashboard.json", dashboard.dashboard_json, name="dashboard-json"),
    path("containers/", container_views.container_list, name="ui-containers"),
    path("containers/sparklines.json", container_views.container_sparklines, name="ui-sparklines"),
    path("containers/<str:key>/", container_views.container_detail, name="ui-container"),
    path("hosts/", container_views.host_list, name="ui-hosts"),
    path("hosts/<uuid:pk>/", container_views.host_detail, name="ui-host"),
    path("events/", container_views.event_list, name="ui-events"),
    path("images/", object_views.images_page, name="ui-images"),
    path("volumes/", object_views.volumes_page, name="ui-volumes"),
    path("networks/", object_views.networks_page, name="ui-networks"),
    path("health/", health_views.check_list, name="ui-health"),
    path("updates/", update_views.update_list, name="ui-updates"),
    path("stacks/", stack_views.stack_list, name="ui-stacks"),
    path("stacks/<int:pk>/", stack_views.stack_detail, name="ui-stack"),
    path("alerts/", alert_views.alert_list, name="ui-alerts"),
    path("alerts/channels/", alert_views.channel_list, name="ui-channels"),
]

handler500 = "dockmon_site.views.server_error"
