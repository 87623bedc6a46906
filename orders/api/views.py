"""Order endpoints: each view validates its input, calls one service, shapes the output."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import ApiKeyScope
from kootabase.api.errors import exception_handler
from kootabase.api.pagination import list_filters
from kootabase.api.serializers import ErrorSerializer
from kootabase.errors import ServiceError
from orders import positions, selectors, services, swap
from orders.api import serializers as s
from orders.group_placement import order_place_grouped
from orders.models import Order, Trade

ERRORS = dict.fromkeys((400, 401, 409), ErrorSerializer)


class OrdersView(generics.ListAPIView):
    """List, place and cancel-all of the caller's orders."""

    serializer_class = s.OrderSerializer
    api_key_scopes = {"GET": ApiKeyScope.READ, "POST": ApiKeyScope.TRADE, "DELETE": ApiKeyScope.TRADE}

    def get_queryset(self) -> QuerySet[Order]:
        return selectors.orders_of_user(user=self.request.user, **list_filters(self.request, s.OrderListQuery))

    @extend_schema(
        tags=["orders"], parameters=[s.OrderListQuery], responses={200: s.OrderSerializer(many=True), **ERRORS}
    )
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["orders"],
        request=s.OrderPlaceInput,
        responses={201: s.OrderSerializer, 200: s.OrderSerializer, **ERRORS},
        description="Place an order. A client_order_id used before answers 200 with that order.",
    )
    def post(self, request: Request) -> Response:
        fields = s.OrderPlaceInput.read(request.data)
        # With the other requests' orders of this process, in one transaction (group commit).
        placement = order_place_grouped(services.place_request(user=request.user, **fields))
        return Response(
            s.OrderSerializer(placement.order).data,
            status=status.HTTP_201_CREATED if placement.created else status.HTTP_200_OK,
        )

    @extend_schema(
        tags=["orders"],
        parameters=[s.MarketQuery],
        request=None,
        responses={202: s.CancelAllOutput, **ERRORS},
        operation_id="orders_cancel_all",
        description="Cancel all of the caller's live orders (in one market when given; an empty market is "
        "refused, never read as every market).",
    )
    def delete(self, request: Request) -> Response:
        market = list_filters(request, s.MarketQuery).get("market")
        ids = services.orders_cancel_all(user=request.user, market_symbol=None if market is None else market.symbol)
        return Response({"cancel_requested": ids}, status=status.HTTP_202_ACCEPTED)


class OrderBatchView(generics.GenericAPIView):
    serializer_class = s.OrderBatchInput
    api_key_scopes = {"POST": ApiKeyScope.TRADE}

    @extend_schema(
        tags=["orders"],
        request=s.OrderBatchInput,
        responses={200: s.BatchOutput, **ERRORS},
        description=(
            "Place up to 50 orders in one transaction; each is accepted or rejected on its own, as if placed "
            "one after the other in the order given (funds are counted order by order). The fastest way to "
            "place many orders."
        ),
    )
    def post(self, request: Request) -> Response:
        batch = s.OrderBatchInput(data=request.data)
        batch.is_valid(raise_exception=True)
        # Each order is checked on its own; those whose input is valid are placed together,
        # in one transaction, each accepted or refused on its own (services.orders_place_many).
        results: list[dict[str, Any] | None] = []
        requests: list[services.PlaceRequest] = []
        for item in batch.validated_data["orders"]:
            try:
                fields = s.OrderPlaceInput.read(item)
            except exceptions.ValidationError as exc:
                results.append(self._refusal(exc))
                continue
            results.append(None)
            requests.append(services.place_request(user=request.user, **fields))
        outcomes = iter(services.orders_place_many(requests=requests))
        shown = s.OrderSerializer()  # one for all: its representation keeps nothing per order
        for index, result in enumerate(results):
            if result is not None:
                continue
            outcome = next(outcomes)
            if isinstance(outcome, ServiceError):
                results[index] = self._refusal(outcome)
            else:
                status_code = 201 if outcome.created else 200
                results[index] = {"status": status_code, "order": shown.to_representation(outcome.order), "error": None}
        return Response({"results": results})

    def _refusal(self, exc: Exception) -> dict[str, Any]:
        error = exception_handler(exc, {"view": self})
        return {"status": error.status_code, "order": None, "error": error.data}


class OrderDetailView(generics.GenericAPIView):
    serializer_class = s.OrderSerializer
    api_key_scopes = {"GET": ApiKeyScope.READ, "DELETE": ApiKeyScope.TRADE}

    @extend_schema(tags=["orders"], responses={200: s.OrderSerializer, 404: ErrorSerializer, 401: ErrorSerializer})
    def get(self, request: Request, order_id: int) -> Response:
        return Response(s.OrderSerializer(services.order_get_own(user=request.user, order_id=order_id)).data)

    @extend_schema(
        tags=["orders"],
        request=None,
        responses={202: s.OrderSerializer, 404: ErrorSerializer, 409: ErrorSerializer, 401: ErrorSerializer},
        operation_id="orders_cancel",
        description="Ask for the order to be cancelled; the market's matcher performs it in sequence.",
    )
    def delete(self, request: Request, order_id: int) -> Response:
        order = services.order_cancel(user=request.user, order_id=order_id)
        return Response(s.OrderSerializer(order).data, status=status.HTTP_202_ACCEPTED)


class TradesView(generics.ListAPIView):
    """The caller's fills."""

    serializer_class = s.TradeSerializer

    def get_queryset(self) -> QuerySet[Trade]:
        return selectors.trades_of_user(user=self.request.user, **list_filters(self.request, s.MarketQuery))

    @extend_schema(tags=["orders"], parameters=[s.MarketQuery], responses={200: s.TradeSerializer(many=True), **ERRORS})
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)


# --- Positions ------------------------------------------------------------------------

QUOTE = OpenApiParameter("quote", OpenApiTypes.STR, description="The currency to value in (default USDT).")


class PositionsView(generics.GenericAPIView):
    """The caller's positions per asset, valued in one quote currency."""

    serializer_class = s.PositionsOutput
    pagination_class = None
    api_key_scopes = {"GET": ApiKeyScope.READ}

    @extend_schema(tags=["positions"], parameters=[QUOTE], responses={200: s.PositionsOutput, **ERRORS})
    def get(self, request: Request) -> Response:
        result = positions.positions_of_user(user=request.user, quote_code=request.query_params.get("quote"))
        return Response(s.PositionsOutput(result).data)


class PositionCloseView(generics.GenericAPIView):
    serializer_class = s.OrderSerializer
    api_key_scopes = {"POST": ApiKeyScope.TRADE}

    @extend_schema(
        tags=["positions"],
        parameters=[QUOTE],
        request=s.PositionCloseInput,
        responses={201: s.OrderSerializer, **ERRORS},
        operation_id="positions_close",
        description="Sell the free balance of the asset into the quote currency (rounded down to the market's "
        "lot): with a market order, or, given `min_price`, with an immediate-or-cancel limit sell at that "
        "price, so nothing is sold below it (it fills at the bids' own prices at or above it; the rest expires "
        "and is released). A bad `min_price` is `min_price_invalid`, `min_price_max_decimal_places`, "
        "`min_price_not_on_tick`, `min_price_not_positive` or `min_price_out_of_range`; less than one lot "
        "free, or less than the market's minimum order value at `min_price` (without it at the last price, "
        "or before the first trade at the best bid), `nothing_to_close`.",
    )
    def post(self, request: Request, asset: str) -> Response:
        data = s.PositionCloseInput(data=request.data)
        data.is_valid(raise_exception=True)
        order = positions.position_close(
            user=request.user,
            asset_code=asset,
            quote_code=request.query_params.get("quote"),
            min_price=data.validated_data.get("min_price"),
        )
        return Response(s.OrderSerializer(order).data, status=status.HTTP_201_CREATED)


# --- Swap -----------------------------------------------------------------------------

SWAP_ERRORS = dict.fromkeys((400, 401, 404, 409), ErrorSerializer)


class SwapQuoteView(generics.GenericAPIView):
    serializer_class = s.SwapQuoteSerializer
    api_key_scopes = {"POST": ApiKeyScope.READ}

    @extend_schema(
        tags=["swap"],
        request=s.SwapQuoteInput,
        responses={201: s.SwapQuoteSerializer, **SWAP_ERRORS},
        description="Price converting an amount of one currency into another at the live book, fees included, "
        "directly or through a common currency. The quote is valid for a few seconds.",
    )
    def post(self, request: Request) -> Response:
        data = s.SwapQuoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        quote = swap.swap_quote_create(
            user=request.user,
            from_code=data.validated_data["from_currency"],
            to_code=data.validated_data["to_currency"],
            amount=data.validated_data["amount"],
        )
        return Response(s.SwapQuoteSerializer(quote).data, status=status.HTTP_201_CREATED)


class SwapView(generics.GenericAPIView):
    serializer_class = s.SwapSerializer
    api_key_scopes = {"POST": ApiKeyScope.TRADE}

    @extend_schema(
        tags=["swap"],
        request=s.SwapExecuteInput,
        responses={202: s.SwapSerializer, **SWAP_ERRORS},
        description="Execute a quote: the amount is held and the matcher executes every leg at once, or fails "
        "the swap and releases the hold. Follow it with GET /api/v1/swap/{id}.",
    )
    def post(self, request: Request) -> Response:
        data = s.SwapExecuteInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = swap.swap_execute(user=request.user, **data.validated_data)
        return Response(s.SwapSerializer(result).data, status=status.HTTP_202_ACCEPTED)


class SwapDetailView(generics.GenericAPIView):
    serializer_class = s.SwapSerializer
    api_key_scopes = {"GET": ApiKeyScope.READ}

    @extend_schema(tags=["swap"], responses={200: s.SwapSerializer, 404: ErrorSerializer, 401: ErrorSerializer})
    def get(self, request: Request, swap_id: int) -> Response:
        return Response(s.SwapSerializer(swap.swap_get_own(user=request.user, swap_id=swap_id)).data)
