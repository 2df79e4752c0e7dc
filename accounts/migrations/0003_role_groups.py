from django.db import migrations


def create_roles(apps, schema_editor):
    from accounts.roles import sync_roles

    # On a fresh database the permissions of later apps do not exist yet: the groups are made
    # here and filled by the post_migrate handler (accounts.roles.sync_roles_after_migrate).
    sync_roles(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_audit_entry"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(create_roles, migrations.RunPython.noop),
    ]
