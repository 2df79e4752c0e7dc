app_name = "updates-api"

urlpatterns: list = []
