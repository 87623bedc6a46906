"""The process's copy of the markets and fee tiers, for the order placement path.

Markets, their currencies and the fee tiers are small tables read by every order; the
web processes keep them in memory instead of querying them per request. The copy is
checked against a version number in the shared cache (Redis in production, one GET per
lookup) and reloaded when it moved: every save or delete of a market, currency or fee
tier bumps the version (``catalog_changed``: once at once, once more after the commit,
so a reader that reloaded in between does not keep the old rows). A copy is also never
older than ``MAX_AGE`` seconds, which bounds staleness where the cache is not shared
(the embedded setup's per-process memory cache) or a change bypassed the signals
(``QuerySet.update``).

Callers get their own copy of a market (``copy.copy``), never the shared instance.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from orders.models import FeeTier, Market
from wallets.models import Currency

VERSION_KEY = "orders:catalog:version"
MAX_AGE = 5.0  # seconds


@dataclass(frozen=True, slots=True)
class _Catalog:
    version: str
    loaded_at: float
    markets: dict[str, Market] = field(default_factory=dict)
    fee_tiers: tuple[FeeTier, ...] = ()


_current: _Catalog | None = None
_lock = threading.Lock()


def _bump() -> None:
    cache.set(VERSION_KEY, uuid.uuid4().hex, None)


def catalog_changed() -> None:
    """Make every process reload its copy: now, and again once the change is committed."""
    _bump()
    transaction.on_commit(_bump)


def _load(version: str) -> _Catalog:
    markets = {m.symbol: m for m in Market.objects.select_related("base", "quote")}
    return _Catalog(
        version=version, loaded_at=time.monotonic(), markets=markets, fee_tiers=tuple(FeeTier.objects.all())
    )


def _catalog() -> _Catalog:
    global _current
    version = cache.get(VERSION_KEY)
    if version is None:
        version = uuid.uuid4().hex
        if not cache.add(VERSION_KEY, version, None):
            version = cache.get(VERSION_KEY) or version
    current = _current
    if current is not None and current.version == version and time.monotonic() - current.loaded_at < MAX_AGE:
        return current
    with _lock:
        current = _current
        if current is None or current.version != version or time.monotonic() - current.loaded_at >= MAX_AGE:
            current = _current = _load(version)
    return current


def market_by_symbol(symbol: str) -> Market | None:
    """A copy of the market ``symbol`` (upper case), with its base and quote; None if unknown."""
    market = _catalog().markets.get(symbol)
    return copy.copy(market) if market is not None else None


def fee_tiers_for(market: Market) -> tuple[FeeTier, ...]:
    """The fee tiers that can apply on ``market``: its own and the all-markets ones."""
    return tuple(t for t in _catalog().fee_tiers if t.market_id in (None, market.pk))


def _changed(sender: type, **kwargs: object) -> None:
    catalog_changed()


for _model in (Market, Currency, FeeTier):
    post_save.connect(_changed, sender=_model, dispatch_uid=f"orders.catalog.{_model.__name__}.save")
    post_delete.connect(_changed, sender=_model, dispatch_uid=f"orders.catalog.{_model.__name__}.delete")
