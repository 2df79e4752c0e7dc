app_name = "healthchecks-api"

urlpatterns: list = []
