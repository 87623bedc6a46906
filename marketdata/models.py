"""Market-data aggregates, maintained by the matcher in the same transaction as its trades.

- ``MarketState``: per market, the depth sequence number (``seq``: +1 for every batch
  that changed the book or traded, gap-free), the last trade and the best bid and ask.
- ``DepthLevel``: one row per resting price level (aggregate quantity), keyed by the
  price in ticks so the best levels come straight off the index on every backend.
- ``Candle``: OHLCV per market and bucket, stored at three resolutions (1m, 1h, 1d);
  5m/15m are aggregated from 1m rows and 4h from 1h rows when read.

All writes go through ``marketdata.services``; reads through ``marketdata.selectors``.
See docs/marketdata.md.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from orders.models import Market
from wallets.models import MoneyField


class MarketState(models.Model):
    market = models.OneToOneField(Market, on_delete=models.PROTECT, related_name="marketdata_state")
    seq = models.BigIntegerField(default=0, help_text="Depth sequence: +1 per published batch, gap-free.")
    last_price = MoneyField(null=True, blank=True)
    last_trade_no = models.BigIntegerField(default=0)
    last_trade_at = models.DateTimeField(null=True, blank=True)
    best_bid = MoneyField(null=True, blank=True)
    best_bid_quantity = MoneyField(null=True, blank=True)
    best_ask = MoneyField(null=True, blank=True)
    best_ask_quantity = MoneyField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["market_id"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"marketdata {self.market_id} seq {self.seq}"


class DepthLevel(models.Model):
    class Side(models.TextChoices):
        BID = "buy", "Bid"
        ASK = "sell", "Ask"

    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="depth_levels")
    side = models.CharField(max_length=4, choices=Side.choices)
    ticks = models.BigIntegerField(help_text="The price in ticks of the market: the sort key.")
    price = MoneyField()
    quantity = MoneyField()

    class Meta:
        ordering = ["market_id", "side", "ticks"]
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["market", "side", "ticks"], name="marketdata_level_unique"),
            models.CheckConstraint(condition=Q(side__in=["buy", "sell"]), name="marketdata_level_side"),
        ]

    def __str__(self) -> str:
        return f"{self.market_id} {self.side} {self.price} x {self.quantity}"


class Candle(models.Model):
    class Interval(models.TextChoices):
        MINUTE = "1m", "1 minute"
        HOUR = "1h", "1 hour"
        DAY = "1d", "1 day"

    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="candles")
    interval = models.CharField(max_length=3, choices=Interval.choices)
    open_time = models.DateTimeField()
    open = MoneyField()
    high = MoneyField()
    low = MoneyField()
    close = MoneyField()
    base_volume = MoneyField()
    quote_volume = MoneyField()
    trade_count = models.IntegerField()
    first_trade_no = models.BigIntegerField()
    last_trade_no = models.BigIntegerField()

    class Meta:
        ordering = ["market_id", "interval", "open_time"]
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["market", "interval", "open_time"], name="marketdata_candle_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.market_id} {self.interval} {self.open_time:%Y-%m-%dT%H:%M}Z"
