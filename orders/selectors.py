"""Order and trade reads."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import User
from kootabase.errors import ServiceError
from orders.models import FINAL_STATUSES, LIVE_STATUSES, Order, OrderStatus, Trade

OPEN = "open"
HISTORY = "history"


def orders_of_user(
    *, user: User, market: str | None = None, status: str | None = None, side: str | None = None
) -> QuerySet[Order]:
    """The user's orders, newest first. ``status``: ``open`` (every live order: pending,
    untriggered, open, partially filled), ``history`` (final ones) or one status value."""
    qs = Order.objects.filter(user=user).select_related("market", "market__quote")
    if market:
        qs = qs.filter(market__symbol=market.strip().upper())
    if status == OPEN:
        qs = qs.filter(status__in=LIVE_STATUSES)
    elif status == HISTORY:
        qs = qs.filter(status__in=FINAL_STATUSES)
    elif status:
        if status not in OrderStatus.values:
            raise ServiceError("status_invalid", f"Unknown status {status!r}.")
        qs = qs.filter(status=status)
    if side:
        qs = qs.filter(side=side)
    return qs.order_by("-id")


def trades_of_user(*, user: User, market: str | None = None) -> QuerySet[Trade]:
    """The trades the user took part in (as maker or taker), newest first."""
    qs = Trade.objects.filter(Q(maker_user=user) | Q(taker_user=user)).select_related("market", "market__quote")
    if market:
        qs = qs.filter(market__symbol=market.strip().upper())
    return qs.order_by("-id")
