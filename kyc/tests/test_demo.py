"""The demo traders are put at the top tier once; the tiers are seeded by migration."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from accounts.models import User
from audit.models import AuditEvent
from kyc import selectors
from kyc.models import KycTier
from kyc.tiers import DEFAULT_TIERS, tiers_ensure

pytestmark = pytest.mark.django_db


def test_demo_data_puts_the_demo_traders_at_the_top_tier_once(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("demo_data")
    call_command("demo_data")
    for email in ("alice@kootabase.local", "bob@kootabase.local"):
        assert selectors.tier_of_user(user=User.objects.get(email=email)).level == 3
    assert AuditEvent.objects.filter(action="kyc.level_set").count() == 2
    assert selectors.tier_of_user(user=User.objects.get(email="admin@kootabase.local")).level == 0


def test_the_default_tiers_are_seeded_and_never_overwritten():
    assert list(KycTier.objects.values_list("level", "name")) == [(t["level"], t["name"]) for t in DEFAULT_TIERS]
    KycTier.objects.filter(level=1).update(name="Edited")
    KycTier.objects.filter(level=3).delete()
    assert tiers_ensure(KycTier) == 1
    assert list(KycTier.objects.values_list("level", "name")) == [
        (0, "Unverified"),
        (1, "Edited"),
        (2, "Verified"),
        (3, "Enhanced"),
    ]
