"""Demo markets: ETH-USDT and BTC-USDT. Idempotent.

The currencies are created here if no earlier app's demo data created them.
"""

from __future__ import annotations

from decimal import Decimal

from orders.models import Market
from orders.pricing import market_check
from wallets.models import Currency

CURRENCIES = (
    ("USDT", "Tether USD", Currency.Kind.CRYPTO, 6),
    ("ETH", "Ether", Currency.Kind.CRYPTO, 18),
    ("BTC", "Bitcoin", Currency.Kind.CRYPTO, 8),
)
MARKETS = (
    ("ETH-USDT", "ETH", "USDT", Decimal("0.01"), Decimal("0.0001"), Decimal("10")),
    ("BTC-USDT", "BTC", "USDT", Decimal("0.1"), Decimal("0.00001"), Decimal("10")),
)
MAKER_FEE_RATE, TAKER_FEE_RATE = Decimal("0.001"), Decimal("0.002")


def seed() -> list[str]:
    currencies = {}
    for code, name, kind, precision in CURRENCIES:
        currencies[code], _ = Currency.objects.get_or_create(
            code=code, defaults={"name": name, "kind": kind, "precision": precision}
        )
    lines = []
    for symbol, base, quote, tick, lot, min_notional in MARKETS:
        market = Market.objects.filter(symbol=symbol).first()
        if market is None:
            market = Market(
                symbol=symbol,
                base=currencies[base],
                quote=currencies[quote],
                tick_size=tick,
                lot_size=lot,
                min_notional=min_notional,
                maker_fee_rate=MAKER_FEE_RATE,
                taker_fee_rate=TAKER_FEE_RATE,
            )
            market_check(market)
            market.save()
        lines.append(f"market  {symbol} tick {market.tick_size.normalize():f} lot {market.lot_size.normalize():f}")
    return lines
