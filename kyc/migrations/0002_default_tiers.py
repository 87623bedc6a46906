"""Seed the default KYC tiers 0-3 (``kyc.tiers.DEFAULT_TIERS``); staff edit them afterwards."""

from django.db import migrations


def create_tiers(apps, schema_editor):
    from kyc.tiers import tiers_ensure

    tiers_ensure(apps.get_model("kyc", "KycTier"), using=schema_editor.connection.alias)


def remove_tiers(apps, schema_editor):
    apps.get_model("kyc", "KycTier").objects.using(schema_editor.connection.alias).all().delete()


class Migration(migrations.Migration):
    dependencies = [("kyc", "0001_initial")]

    operations = [migrations.RunPython(create_tiers, remove_tiers)]
