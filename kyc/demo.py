"""Demo KYC: the demo traders at the top tier, so every demo withdrawal and transfer works
before any market has traded (a tier without limits values nothing). A newly registered
user starts at tier 0 and meets the limits. Idempotent."""

from __future__ import annotations

from accounts.demo import TRADERS
from accounts.selectors import user_get_by_email
from kyc import selectors
from kyc.services import kyc_level_set
from kyc.tiers import MAX_LEVEL


def seed() -> list[str]:
    lines = []
    for email, _, _ in TRADERS:
        user = user_get_by_email(email=email)
        if user is None:
            continue
        kyc_level_set(user=user, level=MAX_LEVEL, actor=None, reason="Demo data")
        tier = selectors.tier_of_user(user=user)
        lines.append(f"kyc     {email}: tier {tier.level} ({tier.name})")
    return lines
