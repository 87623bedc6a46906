"""Test helpers other apps' tests use: put users at a KYC tier through the service."""

from __future__ import annotations

from typing import Any

from kyc.services import kyc_level_set
from kyc.tiers import MAX_LEVEL


def kyc_verified(*users: Any, level: int = MAX_LEVEL) -> None:
    """Put ``users`` at tier ``level`` (the top tier, without limits, by default), as a
    compliance decision would."""
    for user in users:
        kyc_level_set(user=user, level=level, actor=None, reason="test fixture")
