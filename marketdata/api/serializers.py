"""Market-data API shapes (Binance/ccxt-like names). Decimals travel as strings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rest_framework import serializers

from kootabase.api.serializers import InputSerializer
from marketdata.selectors import (
    CANDLES_LIMIT_MAX,
    DEPTH_LIMIT_DEFAULT,
    DEPTH_LIMIT_MAX,
    INTERVALS,
    TRADES_LIMIT_DEFAULT,
    TRADES_LIMIT_MAX,
)
from orders.api.serializers import MoneyOut


class TimeSerializer(serializers.Serializer):
    server_time = serializers.DateTimeField()
    server_time_ms = serializers.IntegerField(help_text="Unix time in milliseconds.")


class MarketSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    base = serializers.CharField(source="base.code")
    quote = serializers.CharField(source="quote.code")
    status = serializers.CharField()
    tick_size = MoneyOut()
    lot_size = MoneyOut()
    min_notional = MoneyOut()
    maker_fee_rate = MoneyOut()
    taker_fee_rate = MoneyOut()
    base_precision = serializers.IntegerField(source="base.precision")
    quote_precision = serializers.IntegerField(source="quote.precision")


def _decimal_str(**kwargs) -> serializers.CharField:
    return serializers.CharField(allow_null=True, **kwargs)


class TickerSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    open = _decimal_str(help_text="First price of the 24 h window (its first 1-minute candle).")
    high = _decimal_str()
    low = _decimal_str()
    last = _decimal_str(help_text="The last trade price, even if older than 24 h.")
    base_volume = serializers.CharField()
    quote_volume = serializers.CharField()
    change = _decimal_str(help_text="Close of the window minus its open.")
    change_percent = _decimal_str()
    trade_count = serializers.IntegerField()
    bid = _decimal_str()
    bid_quantity = _decimal_str()
    ask = _decimal_str()
    ask_quantity = _decimal_str()
    open_time = serializers.CharField()
    close_time = serializers.CharField()
    seq = serializers.IntegerField(help_text="The depth sequence number the best bid and ask reflect.")


class DepthInput(InputSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=DEPTH_LIMIT_MAX, default=DEPTH_LIMIT_DEFAULT)


class DepthSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    seq = serializers.IntegerField(help_text="The depth sequence number this book reflects.")
    bids = serializers.ListField(child=serializers.ListField(child=serializers.CharField()), help_text="[price, qty]")
    asks = serializers.ListField(child=serializers.ListField(child=serializers.CharField()), help_text="[price, qty]")


class TradesInput(InputSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=TRADES_LIMIT_MAX, default=TRADES_LIMIT_DEFAULT)


class PublicTradeSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The trade number, consecutive per market.")
    price = serializers.CharField()
    quantity = serializers.CharField()
    quote_quantity = serializers.CharField()
    side = serializers.CharField(help_text="The taker's side.")
    time = serializers.CharField()


_LATEST_END = datetime.max.replace(tzinfo=UTC) - timedelta(seconds=max(seconds for _, seconds in INTERVALS.values()))


class CandlesInput(InputSerializer):
    interval = serializers.ChoiceField(choices=list(INTERVALS), default="1m")
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)
    limit = serializers.IntegerField(min_value=1, max_value=CANDLES_LIMIT_MAX, default=500)

    def validate_end(self, end: datetime) -> datetime:
        # The selector reads up to the end of the candle that holds ``end``: it must exist.
        if end > _LATEST_END:
            raise serializers.ValidationError("Datetime value out of range.", code="overflow")
        return end

    def validate(self, data: dict) -> dict:
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise serializers.ValidationError({"start": [serializers.ErrorDetail("start is after end.", "after_end")]})
        return data


class CandleSerializer(serializers.Serializer):
    open_time = serializers.CharField()
    close_time = serializers.CharField()
    open = serializers.CharField()
    high = serializers.CharField()
    low = serializers.CharField()
    close = serializers.CharField()
    base_volume = serializers.CharField()
    quote_volume = serializers.CharField()
    trade_count = serializers.IntegerField()


class RatesInput(InputSerializer):
    quote = serializers.CharField(max_length=16, default="USDT")


class RateSerializer(serializers.Serializer):
    currency = serializers.CharField()
    rate = _decimal_str(help_text="The value of 1 unit of the currency in the quote currency; null if no route.")
    route = serializers.ListField(child=serializers.CharField(), help_text="Markets used, from the currency on.")
    sources = serializers.ListField(child=serializers.CharField(), help_text="mid or last, per market.")
    reason = _decimal_str(help_text="Why there is no rate (no_route).")


class RatesSerializer(serializers.Serializer):
    quote = serializers.CharField()
    time = serializers.CharField()
    rates = RateSerializer(many=True)
