"""The default AML rule parameters, and the old per-asset withdrawal review thresholds
moved into the threshold rule (one threshold per currency: the lowest of its assets')."""

from django.db import migrations

# rule, kind, window in minutes, count, note
DEFAULTS = (
    ("velocity", "deposit", 1440, 50, "More than 50 deposits credited in a day."),
    ("velocity", "withdrawal", 1440, 10, "More than 10 withdrawals requested in a day."),
    ("velocity", "transfer", 60, 100, "More than 100 transfers sent in an hour."),
    ("fresh_deposit", "withdrawal", 1440, None, "A deposit withdrawn within a day to a new address."),
    ("blocklist", "", None, None, "Every kind: counterparties and users on the block-list file."),
)


def seed(apps, schema_editor):
    RuleParameter = apps.get_model("aml", "RuleParameter")
    Asset = apps.get_model("blockchain", "Asset")
    for rule, kind, window, count, note in DEFAULTS:
        RuleParameter.objects.create(rule=rule, kind=kind, window_minutes=window, count=count, note=note)
    thresholds = {}
    for currency_id, threshold in Asset.objects.filter(review_threshold__isnull=False).values_list(
        "currency_id", "review_threshold"
    ):
        thresholds[currency_id] = min(threshold, thresholds.get(currency_id, threshold))
    for currency_id, threshold in sorted(thresholds.items()):
        RuleParameter.objects.create(
            rule="threshold",
            kind="withdrawal",
            currency_id=currency_id,
            amount=threshold,
            note="The asset's former review threshold.",
        )


def unseed(apps, schema_editor):
    apps.get_model("aml", "RuleParameter").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("aml", "0001_initial"),
        ("blockchain", "0001_initial"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
