"""The process's copy of the markets and fee tiers, for the order placement path.

Markets, their currencies and the fee tiers are small tables read by every order; the
web processes keep them in memory instead of querying them per request. The copy is
checked against a version number in the shared cache (Redis in production; one GET,
at most every ``CHECK_INTERVAL`` seconds) and reloaded when it moved: every save or
delete of a market, currency or fee tier bumps the version (``catalog_changed``: once
at once, once more after the commit, so a reader that reloaded in between does not keep
the old rows). The process that made a change sees it at once; the others within
``CHECK_INTERVAL`` (an order that slips into a market just halted waits, pending, for
the market to resume: a halted market's matcher does nothing). A copy is also never
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
CHECK_INTERVAL = 0.25  # seconds between reads of the shared version
MAX_AGE = 5.0  # seconds


@dataclass(frozen=True, slots=True)
class _Catalog:
    version: str
    loaded_at: float
    markets: dict[str, Market] = field(default_factory=dict)
    fee_tiers: tuple[FeeTier, ...] = ()


_current: _Catalog | None = None
_checked: tuple[float, str] = (float("-inf"), "")  # when the shared version was last read, and its value
_lock = threading.Lock()


def _bump() -> None:
    global _checked
    cache.set(VERSION_KEY, uuid.uuid4().hex, None)
    _checked = (float("-inf"), "")  # this process reads the new version at its next lookup


def catalog_changed() -> None:
    """Make every process reload its copy: now, and again once the change is committed."""
    _bump()
    transaction.on_commit(_bump)


def _load(version: str) -> _Catalog:
    markets = {m.symbol: m for m in Market.objects.select_related("base", "quote")}
    return _Catalog(
        version=version, loaded_at=time.monotonic(), markets=markets, fee_tiers=tuple(FeeTier.objects.all())
    )


def forget() -> None:
    """Drop the process's copy: the next lookup loads the catalog again (for tests,
    whose database starts over under a running process)."""
    global _current, _checked
    _current, _checked = None, (float("-inf"), "")


def _shared_version() -> str:
    global _checked
    now = time.monotonic()
    checked_at, version = _checked
    if now - checked_at < CHECK_INTERVAL:
        return version
    version = cache.get(VERSION_KEY)
    if version is None:
        version = uuid.uuid4().hex
        if not cache.add(VERSION_KEY, version, None):
            version = cache.get(VERSION_KEY) or version
    _checked = (now, version)
    return version


def _catalog() -> _Catalog:
    global _current
    version = _shared_version()
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
