"""Demo AML thresholds for the demo currencies (the velocity, fresh-deposit and
block-list defaults come with migration 0002). Idempotent."""

from __future__ import annotations

from decimal import Decimal

from aml.models import ItemKind, RuleName, RuleParameter
from wallets.models import Currency

# currency -> the amount from which deposits, withdrawals and transfers wait for review
THRESHOLDS = {"ETH": Decimal("100"), "USDT": Decimal("100000"), "BTC": Decimal("5"), "USD": Decimal("50000")}


def seed() -> list[str]:
    currencies = Currency.objects.in_bulk(list(THRESHOLDS), field_name="code")
    for code, amount in THRESHOLDS.items():
        if code not in currencies:
            continue
        for kind in ItemKind.values:
            RuleParameter.objects.get_or_create(
                rule=RuleName.THRESHOLD,
                kind=kind,
                currency=currencies[code],
                defaults={"amount": amount, "note": "Demo threshold."},
            )
    listed = ", ".join(f"{code} {THRESHOLDS[code]:f}" for code in THRESHOLDS if code in currencies)
    return [f"aml     review thresholds: {listed or 'none (no demo currencies)'}"]
