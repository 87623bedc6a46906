"""Create the role groups. Their permissions are kept equal to accounts.roles.ROLE_PERMISSIONS
by the post-migrate hook in accounts.apps, so that later apps' models join the table."""

from django.db import migrations

ROLES = ("admin", "compliance", "support", "accountant", "market-operator", "trader")


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
