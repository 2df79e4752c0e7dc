"""Seed the built-in policy categories (issue 6). Patterns are substrings of the container name
or image, matched case-insensitively. Databases and critical services are enabled out of the box:
updating them unattended is what loses data or locks people out."""

from django.db import migrations

CATEGORIES = [
    {
        "name": "databases",
        "label": "Databases",
        "policy": "warn",
        "enabled": True,
        "patterns": ["postgres", "mysql", "mariadb", "mongo", "redis", "influxdb", "elasticsearch",
                     "opensearch", "clickhouse", "cassandra", "couchdb", "timescale", "memcached", "mssql"],
    },
    {
        "name": "proxies",
        "label": "Reverse proxies",
        "policy": "warn",
        "enabled": False,
        "patterns": ["traefik", "nginx", "caddy", "haproxy", "envoy"],
    },
    {
        "name": "monitoring",
        "label": "Monitoring",
        "policy": "warn",
        "enabled": False,
        "patterns": ["grafana", "prometheus", "alertmanager", "uptime-kuma"],
    },
    {
        "name": "critical",
        "label": "Critical infrastructure",
        "policy": "block",
        "enabled": True,
        "patterns": ["portainer", "watchtower", "dockmon"],
    },
    {
        "name": "custom",
        "label": "Custom patterns",
        "policy": "warn",
        "enabled": False,
        "patterns": [],
    },
]


def seed(apps, schema_editor):
    PolicyCategory = apps.get_model("updates", "PolicyCategory")
    for item in CATEGORIES:
        PolicyCategory.objects.update_or_create(name=item["name"], defaults={**item, "builtin": True})


def unseed(apps, schema_editor):
    apps.get_model("updates", "PolicyCategory").objects.filter(builtin=True).delete()


class Migration(migrations.Migration):
    dependencies = [("updates", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
