"""Markets, fee tiers, orders, trades and the matcher's per-market state.

- ``Market``: a pair (``ETH-USDT``) with its tick, lot, minimum notional, fee rates and
  status. Every money column is a ``wallets.models.MoneyField`` (exact on SQLite too).
- ``FeeTier``: lower maker/taker rates for members of a group, on one market or all.
- ``Order``: what a user asked for, what the ledger holds for it, and what the
  matcher made of it. Placement writes it ``pending``; only the matcher changes it after
  that (a cancel request, the user's or staff's, only sets ``cancel_requested`` and,
  from staff, ``cancel_reason``).
- ``Trade``: one fill between a resting (maker) and an incoming (taker) order.
- ``MatcherState``: the single writer's fencing token and sequence counters.
- ``SwapQuote``, ``SwapExecution``: a priced conversion and its all-or-nothing execution
  (``orders.swap``).

See docs/orders.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from kootabase.db import model_from_db
from kootabase.fields import CaseSensitiveCharField
from wallets.models import Currency, MoneyField


class Market(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CANCEL_ONLY = "cancel-only", "Cancel only"
        HALTED = "halted", "Halted"

    symbol = models.CharField(max_length=32, unique=True, help_text="BASE-QUOTE, e.g. ETH-USDT.")
    base = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="base_markets")
    quote = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="quote_markets")
    tick_size = MoneyField(help_text="Prices are whole multiples of it.")
    lot_size = MoneyField(help_text="Quantities are whole multiples of it.")
    min_notional = MoneyField(default=Decimal(0), help_text="Smallest price x quantity (quote) of an order.")
    maker_fee_rate = MoneyField(default=Decimal("0.001"))
    taker_fee_rate = MoneyField(default=Decimal("0.002"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        # ``operate_market`` is held on the model (every market) or, through django-guardian,
        # on single markets (a market operator's assigned markets). See ``orders.controls``.
        permissions = [
            ("operate_market", "Can halt, resume, set cancel-only and cancel all open orders of the market"),
            ("assign_market_operator", "Can assign markets to market operators"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="orders_market_tick_positive"),
            models.CheckConstraint(condition=Q(lot_size__gt=0), name="orders_market_lot_positive"),
            models.CheckConstraint(condition=~Q(base=models.F("quote")), name="orders_market_two_currencies"),
        ]

    def __str__(self) -> str:
        return self.symbol


class FeeTier(models.Model):
    """Rates for members of ``group``; ``market`` empty means every market. When several
    rates apply to a user (market default, tiers of each of their groups), the lowest wins."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, null=True, blank=True, related_name="fee_tiers")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="fee_tiers")
    maker_fee_rate = MoneyField()
    taker_fee_rate = MoneyField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["market", "group"], name="orders_feetier_market_group_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.group} on {self.market or 'all markets'}"


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderType(models.TextChoices):
    LIMIT = "limit", "Limit"
    MARKET = "market", "Market"
    STOP_MARKET = "stop-market", "Stop market"
    STOP_LIMIT = "stop-limit", "Stop limit"


class TimeInForce(models.TextChoices):
    GTC = "gtc", "Good till cancelled"
    IOC = "ioc", "Immediate or cancel"
    FOK = "fok", "Fill or kill"


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    UNTRIGGERED = "untriggered", "Untriggered"
    OPEN = "open", "Open"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"


FINAL_STATUSES = (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED)
LIVE_STATUSES = (OrderStatus.PENDING, OrderStatus.UNTRIGGERED, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


class Order(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders")
    client_order_id = CaseSensitiveCharField(max_length=64)
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=16, choices=OrderType.choices)
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices, default=TimeInForce.GTC)
    post_only = models.BooleanField(default=False)
    price = MoneyField(null=True, blank=True, help_text="Limit price; for market orders the protection price.")
    stop_price = MoneyField(null=True, blank=True)
    quantity = MoneyField(null=True, blank=True, help_text="Base quantity (empty for a market buy by quote amount).")
    quote_amount = MoneyField(null=True, blank=True, help_text="Quote to spend (market buys by amount).")
    filled_quantity = MoneyField(default=Decimal(0))
    filled_quote = MoneyField(default=Decimal(0))
    taker_quote = MoneyField(default=Decimal(0), help_text="The part of filled_quote filled as the taker.")
    fee_paid = MoneyField(default=Decimal(0), help_text="Always in the market's quote currency.")
    maker_fee_rate = MoneyField(help_text="The user's rate when the order was placed.")
    taker_fee_rate = MoneyField()
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    reject_reason = models.CharField(max_length=64, blank=True)
    hold_currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    hold_amount = MoneyField(help_text="Locked at placement.")
    hold_left = MoneyField(help_text="Still locked for this order.")
    seq = models.BigIntegerField(null=True, blank=True, help_text="The matcher's sequence number.")
    cancel_seq = models.BigIntegerField(
        null=True, blank=True, help_text="The matcher's sequence number of the cancel that reached the book."
    )
    book_priority = models.BigIntegerField(
        null=True, blank=True, help_text="Time priority in the book (set when the order starts resting)."
    )
    cancel_requested = models.BooleanField(default=False)
    cancel_reason = models.CharField(
        max_length=32,
        blank=True,
        help_text="Why staff asked for the cancel (empty: the user did); the cancel's reject_reason.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "client_order_id"], name="orders_order_client_id_unique"),
            models.CheckConstraint(condition=Q(hold_left__gte=0), name="orders_order_hold_left_not_negative"),
        ]
        indexes = [
            models.Index(fields=["market", "status", "id"], name="orders_market_status_id"),
            # The matcher's poll for cancels to run: without it, a scan of the market's
            # whole history on every poll (the flag stays set on cancelled orders).
            models.Index(fields=["market", "cancel_requested", "status", "id"], name="orders_market_cancel_status"),
            models.Index(fields=["user", "-id"], name="orders_user_id_desc"),
        ]

    def __str__(self) -> str:
        return f"order:{self.pk}"

    @classmethod
    def from_db(cls, db: str, field_names: Sequence[str], values: Sequence[Any]) -> Order:
        return model_from_db(cls, db, field_names, values)  # the matcher reads thousands a batch

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_stop(self) -> bool:
        return self.type in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT)


class Trade(models.Model):
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="trades")
    trade_no = models.BigIntegerField(help_text="Consecutive per market, from the matcher.")
    maker_order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="maker_trades")
    taker_order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="taker_trades")
    maker_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    taker_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    price = MoneyField()
    quantity = MoneyField()
    quote_amount = MoneyField()
    taker_side = models.CharField(max_length=4, choices=Side.choices)
    maker_fee = MoneyField()
    taker_fee = MoneyField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["market", "trade_no"], name="orders_trade_market_no_unique"),
        ]
        indexes = [
            models.Index(fields=["maker_user", "-id"], name="orders_trade_maker_user"),
            models.Index(fields=["taker_user", "-id"], name="orders_trade_taker_user"),
        ]

    def __str__(self) -> str:
        return f"trade:{self.market_id}:{self.trade_no}"


class MatcherState(models.Model):
    """Per market: who writes (``epoch`` fences out every earlier writer) and how far."""

    market = models.OneToOneField(Market, on_delete=models.PROTECT, related_name="matcher_state")
    epoch = models.BigIntegerField(default=0)
    last_seq = models.BigIntegerField(default=0)
    last_trade_no = models.BigIntegerField(default=0)
    owner = models.CharField(max_length=128, blank=True, help_text="host:pid of the current writer.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["market_id"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"matcher {self.market_id} epoch {self.epoch}"


# --- Swaps ----------------------------------------------------------------------------


class SwapQuote(models.Model):
    """A priced conversion of ``from_amount`` into ``to_currency``, valid until
    ``expires_at``. ``route``: the legs, ``[{"market": "BTC-USDT", "side": "sell"}, ...]``."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        EXECUTED = "executed", "Executed"
        EXPIRED = "expired", "Expired"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="swap_quotes")
    from_currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    to_currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    from_amount = MoneyField(help_text="What the swap spends (rounded down to the first market's lot).")
    to_amount = MoneyField(help_text="What it was expected to give, fees deducted.")
    route = models.JSONField()
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(from_amount__gt=0), name="orders_swapquote_from_positive"),
        ]

    def __str__(self) -> str:
        return f"swap quote {self.pk}"


class SwapExecution(models.Model):
    """A quote the user chose to execute: ``from_amount`` is held until the matcher that
    owns every market of the route executes all legs at once, or fails the swap and
    releases the hold. ``order_ids``: the leg orders, in route order."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    quote = models.OneToOneField(SwapQuote, on_delete=models.PROTECT, related_name="execution")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="swaps")
    from_currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    to_currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    from_amount = MoneyField(help_text="Held for the swap.")
    min_to_amount = MoneyField(help_text="The slippage bound: the swap fails rather than give less.")
    to_amount = MoneyField(null=True, blank=True, help_text="What the swap gave (when completed).")
    route = models.JSONField()
    market = models.ForeignKey(
        Market,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The route's first market: the matcher process that runs it executes the swap.",
    )
    deadline = models.DateTimeField(help_text="Not executed by then: failed.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=64, blank=True, help_text="Why it failed: an error code.")
    order_ids = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(from_amount__gt=0), name="orders_swap_from_positive"),
        ]
        # The pending swaps of one market, oldest first (orders.swap reads them by name).
        indexes = [models.Index(fields=["status", "market", "id"], name="orders_swap_status_market_id")]

    def __str__(self) -> str:
        return f"swap:{self.pk}"
