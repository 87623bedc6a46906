"""Order and trade reads."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import User
from orders.models import FINAL_STATUSES, LIVE_STATUSES, Market, Order, OrderStatus, Trade

OPEN = "open"
HISTORY = "history"
# The values of ``orders_of_user``'s ``status``: the two groups, then every other status
# (``open`` is the group of live orders, the open ones among them).
STATUS_FILTERS = (
    (OPEN, "Every live order"),
    (HISTORY, "Every final order"),
    *((value, label) for value, label in OrderStatus.choices if value != OPEN),
)


def orders_of_user(
    *, user: User, market: Market | None = None, status: str | None = None, side: str | None = None
) -> QuerySet[Order]:
    """The user's orders, newest first. ``status``: ``open`` (every live order: pending,
    untriggered, open, partially filled), ``history`` (final ones) or one status value; the
    API checks the values (``STATUS_FILTERS``, ``Side``) before it asks."""
    qs = Order.objects.filter(user=user).select_related("market", "market__quote")
    if market is not None:
        qs = qs.filter(market=market)
    if status == OPEN:
        qs = qs.filter(status__in=LIVE_STATUSES)
    elif status == HISTORY:
        qs = qs.filter(status__in=FINAL_STATUSES)
    elif status is not None:
        qs = qs.filter(status=status)
    if side is not None:
        qs = qs.filter(side=side)
    return qs.order_by("-id")


def trades_of_user(*, user: User, market: Market | None = None) -> QuerySet[Trade]:
    """The trades the user took part in (as maker or taker), newest first."""
    qs = Trade.objects.filter(Q(maker_user=user) | Q(taker_user=user)).select_related("market", "market__quote")
    if market is not None:
        qs = qs.filter(market=market)
    return qs.order_by("-id")
