"""The process's copy of the KYC tiers, read by every withdrawal and transfer check.

A ``kootabase.catalog.Catalog``: a tier edited in the back office applies at once in the
process that saved it and within a quarter of a second in the others. Callers get their
own copy of a tier, never the shared instance.
"""

from __future__ import annotations

import copy

from kootabase.catalog import Catalog
from kyc.models import KycTier

tiers = Catalog("kyc.tiers", lambda: {t.level: t for t in KycTier.objects.all()}, watched=(KycTier,))


def tier_by_level(level: int) -> KycTier | None:
    """A copy of tier ``level``; None if there is none."""
    tier = tiers.get().get(level)
    return copy.copy(tier) if tier is not None else None
