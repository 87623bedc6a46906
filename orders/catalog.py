"""The process's copy of the markets and fee tiers, for the order placement path.

Markets, their currencies and the fee tiers are read by every order; the web processes
keep them in a ``kootabase.catalog.Catalog`` instead of querying them per request (see
there for how changes reach every process: at once in the process that made them,
within a quarter of a second in the others). An order that slips into a market just
halted waits, pending, for the market to resume: a halted market's matcher does nothing.

Callers get their own copy of a market (``copy.copy``), never the shared instance.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from kootabase.catalog import Catalog
from orders.models import FeeTier, Market
from wallets.models import Currency


@dataclass(frozen=True, slots=True)
class _Markets:
    markets: dict[str, Market]
    fee_tiers: tuple[FeeTier, ...]


def _load() -> _Markets:
    return _Markets(
        markets={m.symbol: m for m in Market.objects.select_related("base", "quote")},
        fee_tiers=tuple(FeeTier.objects.all()),
    )


markets = Catalog("orders.markets", _load, watched=(Market, Currency, FeeTier))


def market_by_symbol(symbol: str) -> Market | None:
    """A copy of the market ``symbol`` (upper case), with its base and quote; None if unknown."""
    market = markets.get().markets.get(symbol)
    return copy.copy(market) if market is not None else None


def fee_tiers_for(market: Market) -> tuple[FeeTier, ...]:
    """The fee tiers that can apply on ``market``: its own and the all-markets ones."""
    return tuple(t for t in markets.get().fee_tiers if t.market_id in (None, market.pk))
