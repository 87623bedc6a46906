"""The default KYC tiers, and the one function that puts them in the database.

Tiers are data: staff with ``kyc.change_kyctier`` edit names, requirements, limits and the
fiat switch in the back office. These defaults are what a new installation starts with
(migration ``0002_default_tiers``) and what a flushed database gets back (the post-migrate
hook in ``kyc.apps``); an existing tier is never overwritten. Limits are in the reference
currency (``KYC_REFERENCE_CURRENCY``); ``None`` is no limit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

MAX_LEVEL = 3

DEFAULT_TIERS: tuple[dict[str, Any], ...] = (
    {
        "level": 0,
        "name": "Unverified",
        "requirements": "Nothing: every account starts here.",
        "required_documents": [],
        "withdrawal_limit_24h": Decimal("1000"),
        "transfer_limit_24h": Decimal("1000"),
        "fiat_allowed": False,
    },
    {
        "level": 1,
        "name": "Basic",
        "requirements": "An identity document (passport, national ID card or driving licence) and a selfie holding it.",
        "required_documents": ["id_document", "selfie"],
        "withdrawal_limit_24h": Decimal("10000"),
        "transfer_limit_24h": Decimal("10000"),
        "fiat_allowed": True,
    },
    {
        "level": 2,
        "name": "Verified",
        "requirements": "The identity document, the selfie and a proof of address (a utility bill or bank "
        "statement of the last three months).",
        "required_documents": ["id_document", "selfie", "proof_of_address"],
        "withdrawal_limit_24h": Decimal("100000"),
        "transfer_limit_24h": Decimal("100000"),
        "fiat_allowed": True,
    },
    {
        "level": 3,
        "name": "Enhanced",
        "requirements": "Everything of tier 2 and evidence of the source of funds (payslips, a tax return, "
        "a sale contract).",
        "required_documents": ["id_document", "selfie", "proof_of_address", "source_of_funds"],
        "withdrawal_limit_24h": None,
        "transfer_limit_24h": None,
        "fiat_allowed": True,
    },
)


def tiers_ensure(tier_model: Any, *, using: str = "default") -> int:
    """Create every default tier missing from the database; returns how many were created.

    ``tier_model`` is ``KycTier`` or, in a migration, its historical model."""
    existing = set(tier_model.objects.using(using).values_list("level", flat=True))
    missing = [tier_model(**tier) for tier in DEFAULT_TIERS if tier["level"] not in existing]
    tier_model.objects.using(using).bulk_create(missing, ignore_conflicts=True)
    return len(missing)
