"""Demo currencies and funds: USDT, ETH, BTC and USD; the demo traders funded through
the adjustment service, each grant once (idempotency keys). Idempotent."""

from __future__ import annotations

from decimal import Decimal

from accounts.demo import TRADERS
from accounts.selectors import user_get_by_email
from wallets import selectors, services
from wallets.models import Currency

CURRENCIES = (
    ("USDT", "Tether USD", Currency.Kind.CRYPTO, 6),
    ("ETH", "Ether", Currency.Kind.CRYPTO, 18),
    ("BTC", "Bitcoin", Currency.Kind.CRYPTO, 8),
    ("USD", "US Dollar", Currency.Kind.FIAT, 2),
)
FUNDS = {"USDT": Decimal("100000"), "ETH": Decimal("50"), "BTC": Decimal("2"), "USD": Decimal("10000")}


def seed() -> list[str]:
    for code, name, kind, precision in CURRENCIES:
        if selectors.currency_get(code=code) is None:
            services.currency_create(code=code, name=name, kind=kind, precision=precision)
    lines = []
    for email, _, _ in TRADERS:
        user = user_get_by_email(email=email)
        if user is None:
            continue
        for code, amount in FUNDS.items():
            services.adjustment_post(
                user=user,
                currency=services.currency_get_enabled(code=code),
                amount=amount,
                direction="credit",
                reason="Demo funds",
                actor="demo_data",
                idempotency_key=f"demo-funds:{email}:{code}",
            )
        lines.append(f"funds   {email}: " + ", ".join(f"{amount:f} {code}" for code, amount in FUNDS.items()))
    return lines
