"""Order API shapes. Decimals travel as strings."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from kootabase.api.serializers import ErrorSerializer, InputSerializer
from kootabase.errors import ServiceError
from orders.models import Market, Order, OrderType, Side, TimeInForce, Trade
from orders.selectors import STATUS_FILTERS
from orders.services import market_get
from wallets.api.fields import plain_decimal_text
from wallets.models import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS


def money_str(value: Decimal | None) -> str | None:
    """Plain fixed-point text without trailing zeros: ``"2000"``, ``"0.5"``."""
    if value is None:
        return None
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def iso_time(value: datetime) -> str:
    """An aware time as DRF writes it (ISO 8601, UTC as ``Z``)."""
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@extend_schema_field(OpenApiTypes.STR)
class MoneyOut(serializers.Field):
    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: Decimal) -> str | None:
        return money_str(value)


class DecimalInput(serializers.DecimalField):
    """DRF's decimal (its digit and place limits and codes: ``<field>_max_decimal_places``)
    over money as every endpoint reads it (``wallets.api.fields.plain_decimal_text``):
    anything but plain ASCII digits is ``<field>_invalid``. DRF alone would take a JSON
    number after the parser rounded it to a float (``1.00000000000000001`` placed as 1),
    exponents, whitespace, and every script's digits (1, an Arabic-Indic zero and 5, which
    looks like "1.5", was placed at 105)."""

    def to_internal_value(self, data: Any) -> Decimal:
        if plain_decimal_text(data) is None:
            self.fail("invalid")
        return super().to_internal_value(data)


def money_in(field: type[DecimalInput] = DecimalInput, **kwargs: Any) -> serializers.DecimalField:
    """An optional price or amount of the order API (null is none)."""
    return field(
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        required=False,
        allow_null=True,
        coerce_to_string=True,
        **kwargs,
    )


class OrderPlaceInput(InputSerializer):
    market = serializers.CharField(max_length=32)
    side = serializers.ChoiceField(choices=Side.choices)
    type = serializers.ChoiceField(choices=OrderType.choices)
    time_in_force = serializers.ChoiceField(choices=TimeInForce.choices, default=TimeInForce.GTC)
    post_only = serializers.BooleanField(default=False)
    price = money_in(help_text="Limit price; for a market order the protection price.")
    stop_price = money_in()
    quantity = money_in(help_text="Base quantity.")
    quote_amount = money_in(help_text="Quote to spend: market buys only.")
    client_order_id = serializers.RegexField(
        r"^[A-Za-z0-9_.:-]{1,64}$", required=False, help_text="Your id; unique per user. A repeat returns the order."
    )

    def to_internal_value(self, data: Any) -> Any:
        """The input read directly when it is plainly valid (every order placed comes this
        way, and DRF's field-by-field walk cost as much per order as the placement's own
        checks); anything else, DRF's way, which words the errors. A test holds both equal."""
        direct = _order_input_direct(data)
        return direct if direct is not None else super().to_internal_value(data)

    @classmethod
    def read(cls, data: Any) -> dict[str, Any]:
        """One order's input as the placement service's keyword arguments; raises
        ``ValidationError`` as ``is_valid(raise_exception=True)`` does. A plainly valid
        input builds no serializer."""
        fields = _order_input_direct(data)
        if fields is None:
            serializer = cls(data=data)
            serializer.is_valid(raise_exception=True)
            fields = dict(serializer.validated_data)
        fields["market_symbol"] = fields.pop("market")
        return fields


_SYMBOL = re.compile(r"[A-Za-z0-9_./-]{1,32}")
_CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_DECIMAL = re.compile(r"[0-9]{1,40}(?:\.[0-9]{1,40})?")
_FIELDS = OrderPlaceInput._declared_fields
_CHOICES = {name: _FIELDS[name].choice_strings_to_values for name in ("side", "type", "time_in_force")}
_MONEY = ("price", "stop_price", "quantity", "quote_amount")


def _order_input_direct(data: Any) -> dict[str, Any] | None:
    """What ``OrderPlaceInput`` validates ``data`` to, when every field is of the plain
    kind clients send (text symbol and choices, decimals as digit strings, booleans as
    booleans): None for anything else, which DRF's own reading then words the errors of."""
    if type(data) is not dict or not data.keys() <= _FIELDS.keys():
        return None
    symbol = data.get("market")
    if type(symbol) is not str or not _SYMBOL.fullmatch(symbol):
        return None
    out: dict[str, Any] = {"market": symbol}
    for name, choices in _CHOICES.items():
        value = data.get(name)
        if type(value) is str and value in choices:
            out[name] = choices[value]
        elif name not in data and _FIELDS[name].default is not empty:
            out[name] = _FIELDS[name].default
        else:
            return None
    post_only = data.get("post_only", False)
    if type(post_only) is not bool:
        return None
    out["post_only"] = post_only
    for name in _MONEY:
        if name not in data:
            continue
        value = data[name]
        if value is None:
            out[name] = None
        elif type(value) is str and _DECIMAL.fullmatch(value):
            try:  # the field's own conversion: its digit and place limits, its rounding
                out[name] = _FIELDS[name].to_internal_value(value)
            except serializers.ValidationError:
                return None
        else:
            return None
    if "client_order_id" in data:
        client_order_id = data["client_order_id"]
        if type(client_order_id) is not str or not _CLIENT_ORDER_ID.fullmatch(client_order_id):
            return None
        out["client_order_id"] = client_order_id
    return out


class OrderBatchInput(InputSerializer):
    orders = serializers.ListField(
        child=serializers.JSONField(), min_length=1, max_length=50, help_text="1-50 orders, as POST /orders takes."
    )

    def to_internal_value(self, data: Any) -> Any:
        """A plain list of 1-50 items is taken as it is: each item is read on its own, by
        ``OrderPlaceInput.read``, so one that is not an order is refused alone; anything
        else DRF's way, which words the errors."""
        if type(data) is dict and data.keys() == {"orders"}:
            orders = data["orders"]
            limits = self._declared_fields["orders"]
            if type(orders) is list and limits.min_length <= len(orders) <= limits.max_length:
                return {"orders": orders}
        return super().to_internal_value(data)


class OrderSerializer(serializers.ModelSerializer):
    market = serializers.CharField(source="market.symbol", read_only=True)
    price = MoneyOut()
    stop_price = MoneyOut()
    quantity = MoneyOut()
    quote_amount = MoneyOut()
    filled_quantity = MoneyOut()
    filled_quote = MoneyOut()
    fee_paid = MoneyOut()
    fee_currency = serializers.CharField(source="market.quote.code", read_only=True)
    average_price = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields = (
            "id",
            "client_order_id",
            "market",
            "side",
            "type",
            "time_in_force",
            "post_only",
            "price",
            "stop_price",
            "quantity",
            "quote_amount",
            "filled_quantity",
            "filled_quote",
            "average_price",
            "fee_paid",
            "fee_currency",
            "status",
            "reject_reason",
            "cancel_requested",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def to_representation(self, order: Order) -> dict[str, Any]:
        """The fields above, built directly: this runs for every order placed, and DRF's
        field-by-field walk cost as much as the placement's own checks. A test holds it
        equal to the field-by-field result."""
        market = order.market
        return {
            "id": order.pk,
            "client_order_id": order.client_order_id,
            "market": market.symbol,
            "side": order.side,
            "type": order.type,
            "time_in_force": order.time_in_force,
            "post_only": order.post_only,
            "price": money_str(order.price),
            "stop_price": money_str(order.stop_price),
            "quantity": money_str(order.quantity),
            "quote_amount": money_str(order.quote_amount),
            "filled_quantity": money_str(order.filled_quantity),
            "filled_quote": money_str(order.filled_quote),
            "average_price": self.get_average_price(order),
            "fee_paid": money_str(order.fee_paid),
            "fee_currency": market.quote.code,
            "status": order.status,
            "reject_reason": order.reject_reason,
            "cancel_requested": order.cancel_requested,
            "created_at": iso_time(order.created_at),
            "updated_at": iso_time(order.updated_at),
        }

    @extend_schema_field(OpenApiTypes.STR)
    def get_average_price(self, order: Order) -> str | None:
        if not order.filled_quantity:
            return None
        with localcontext() as ctx:
            ctx.prec = 40
            average = order.filled_quote / order.filled_quantity
        return money_str(average.quantize(Decimal(1).scaleb(-AMOUNT_DECIMAL_PLACES)))


class BatchResultSerializer(serializers.Serializer):
    status = serializers.IntegerField(
        help_text="201 placed, 200 an earlier order (same client_order_id), 4xx rejected."
    )
    order = OrderSerializer(required=False, allow_null=True)
    error = ErrorSerializer(required=False, allow_null=True)


class BatchOutput(serializers.Serializer):
    results = BatchResultSerializer(many=True)


class CancelAllOutput(serializers.Serializer):
    cancel_requested = serializers.ListField(child=serializers.IntegerField(), help_text="Ids of the orders.")


class FilterChoiceField(serializers.ChoiceField):
    """A filter's choice: any other value, empty too, is ``<field>_invalid`` (``side_invalid``)."""

    default_error_messages = {"invalid": '"{input}" is not one of: {choices}.'}

    def to_internal_value(self, data: Any) -> Any:
        if str(data) not in self.choice_strings_to_values:
            self.fail("invalid", input=data, choices=", ".join(self.choice_strings_to_values))
        return super().to_internal_value(data)


class MarketQuery(InputSerializer):
    """The ``market`` filter of the caller's orders and trades. Absent: every market; empty or
    blank: ``market_blank``; unknown: ``unknown_market``."""

    market = serializers.CharField(required=False, max_length=32, help_text="A market symbol, e.g. ETH-USDT.")

    def validate_market(self, symbol: str) -> Market:
        try:
            return market_get(symbol=symbol)
        except ServiceError as exc:  # unknown_market: an error of the field, as the others are
            raise serializers.ValidationError(exc.message, code=exc.code) from None


class OrderListQuery(MarketQuery):
    status = FilterChoiceField(
        choices=STATUS_FILTERS, required=False, help_text="open (live orders), history (final ones) or one status."
    )
    side = FilterChoiceField(choices=Side.choices, required=False)


class TradeSerializer(serializers.ModelSerializer):
    """One of the user's fills, from the user's side of the trade."""

    market = serializers.CharField(source="market.symbol", read_only=True)
    order_id = serializers.SerializerMethodField()
    side = serializers.SerializerMethodField()
    role = serializers.SerializerMethodField()
    price = MoneyOut()
    quantity = MoneyOut()
    quote_amount = MoneyOut()
    fee = serializers.SerializerMethodField()
    fee_currency = serializers.CharField(source="market.quote.code", read_only=True)

    class Meta:
        model = Trade
        fields = (
            "id",
            "trade_no",
            "market",
            "order_id",
            "side",
            "role",
            "price",
            "quantity",
            "quote_amount",
            "fee",
            "fee_currency",
            "created_at",
        )
        read_only_fields = fields

    def _is_maker(self, trade: Trade) -> bool:
        return trade.maker_user_id == self.context["request"].user.pk

    def get_order_id(self, trade: Trade) -> int:
        return trade.maker_order_id if self._is_maker(trade) else trade.taker_order_id

    @extend_schema_field(serializers.ChoiceField(choices=Side.choices))
    def get_side(self, trade: Trade) -> str:
        if not self._is_maker(trade):
            return trade.taker_side
        return Side.SELL if trade.taker_side == Side.BUY else Side.BUY

    @extend_schema_field(serializers.ChoiceField(choices=[("maker", "maker"), ("taker", "taker")]))
    def get_role(self, trade: Trade) -> str:
        return "maker" if self._is_maker(trade) else "taker"

    @extend_schema_field(OpenApiTypes.STR)
    def get_fee(self, trade: Trade) -> str | None:
        return money_str(trade.maker_fee if self._is_maker(trade) else trade.taker_fee)


# --- Positions ------------------------------------------------------------------------


class PositionSerializer(serializers.Serializer):
    asset = serializers.CharField()
    quantity = MoneyOut(help_text="Held: available + locked.")
    available = MoneyOut(help_text="Free to sell.")
    costed_quantity = MoneyOut(help_text="The part of the holding bought in this quote: it has the average cost.")
    uncosted_quantity = MoneyOut(help_text="The part of unknown cost (deposits, transfers, other markets).")
    average_cost = MoneyOut(help_text="Per unit, fees included; null when nothing held has a known cost.")
    last_price = MoneyOut(help_text="Last trade price of <asset>-<quote>; null without a market or a trade.")
    market_value = MoneyOut(help_text="quantity x last_price.")
    realized_pnl = MoneyOut(help_text="Of the sells, net of fees, against the average cost.")
    unrealized_pnl = MoneyOut(help_text="costed_quantity x (last_price - average_cost).")


class PositionsOutput(serializers.Serializer):
    quote = serializers.CharField(help_text="The currency every value is in.")
    positions = PositionSerializer(many=True)


class PriceFloorInput(DecimalInput):
    """A decimal read as the order API reads a price, except that blank text is
    ``<field>_invalid``: DRF reads it as null, which here would drop the floor and sell at
    any price. Null (or no field) is no floor."""

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if isinstance(data, str) and not data.strip():
            self.fail("invalid")
        return super().validate_empty_values(data)


class PositionCloseInput(InputSerializer):
    """The body of a close (optional; the quote is a query parameter)."""

    min_price = money_in(
        PriceFloorInput,
        help_text="The lowest price to sell at: the close becomes an immediate-or-cancel limit sell at this "
        "price, and what the book does not take at or above it stays unsold. Without it, a market order.",
    )


# --- Swap -----------------------------------------------------------------------------


class SwapQuoteInput(InputSerializer):
    from_currency = serializers.CharField(max_length=16, help_text="What to spend, e.g. BTC.")
    to_currency = serializers.CharField(max_length=16, help_text="What to get, e.g. ETH.")
    amount = DecimalInput(
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        coerce_to_string=True,
        help_text="How much of from_currency to spend.",
    )


class SwapLegSerializer(serializers.Serializer):
    market = serializers.CharField()
    side = serializers.ChoiceField(choices=Side.choices)


class SwapQuoteSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    from_currency = serializers.CharField(source="from_currency.code")
    to_currency = serializers.CharField(source="to_currency.code")
    from_amount = MoneyOut(help_text="What the swap spends: the amount rounded down to the first market's lot.")
    to_amount = MoneyOut(help_text="What it gives at the book of now, fees deducted.")
    route = SwapLegSerializer(many=True)
    expires_at = serializers.DateTimeField()
    status = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ChoiceField(choices=["open", "executed", "expired", "failed"]))
    def get_status(self, quote: Any) -> str:
        from orders.swap import quote_status

        return quote_status(quote)


class SwapExecuteInput(InputSerializer):
    quote_id = serializers.UUIDField()
    slippage = DecimalInput(
        max_digits=8,
        decimal_places=6,
        coerce_to_string=True,
        default=Decimal("0.005"),
        help_text="Most it may give less than the quote, as a fraction (0.005 = 0.5 %, the default).",
    )


class SwapSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    quote_id = serializers.UUIDField()
    from_currency = serializers.CharField(source="from_currency.code")
    to_currency = serializers.CharField(source="to_currency.code")
    from_amount = MoneyOut()
    min_to_amount = MoneyOut(help_text="The slippage bound.")
    to_amount = MoneyOut(help_text="What the swap gave; null until completed.")
    route = SwapLegSerializer(many=True)
    status = serializers.ChoiceField(choices=["pending", "completed", "failed"])
    reason = serializers.CharField(help_text="Why it failed: an error code.")
    order_ids = serializers.ListField(child=serializers.IntegerField(), help_text="The leg orders, in route order.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
