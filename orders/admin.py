"""Back office: market operators edit markets and fee tiers; orders and trades are read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from kootabase.admin import ReadOnlyAdmin
from orders.models import FeeTier, Market, MatcherState, Order, Trade


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = ("symbol", "status", "tick_size", "lot_size", "min_notional", "maker_fee_rate", "taker_fee_rate")
    list_filter = ("status",)
    search_fields = ("symbol",)

    def get_readonly_fields(self, request: Any, obj: Market | None = None) -> tuple[str, ...]:
        # Sizes and currencies are fixed once orders may refer to them.
        return ("symbol", "base", "quote", "tick_size", "lot_size") if obj else ()


@admin.register(FeeTier)
class FeeTierAdmin(admin.ModelAdmin):
    list_display = ("group", "market", "maker_fee_rate", "taker_fee_rate")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "market", "side", "type", "price", "quantity", "filled_quantity", "status")
    list_filter = ("status", "market", "side", "type")
    search_fields = ("=id", "client_order_id", "user__email")
    list_select_related = ("user", "market")


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ("id", "market", "trade_no", "price", "quantity", "taker_side", "created_at")
    list_filter = ("market",)
    list_select_related = ("market",)


@admin.register(MatcherState)
class MatcherStateAdmin(ReadOnlyAdmin):
    list_display = ("market", "epoch", "last_seq", "last_trade_no", "owner", "heartbeat_at")
