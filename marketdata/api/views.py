"""Public market-data endpoints: no authentication, the anonymous and per-IP rate limits.
Each view validates its query, calls one selector and shapes the result."""

from __future__ import annotations

import time

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kootabase.api.serializers import ErrorSerializer
from marketdata import selectors
from marketdata.api import serializers as s
from marketdata.services import trade_public

ERRORS = dict.fromkeys((400, 404, 429), ErrorSerializer)


class PublicView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]  # rate-limited per IP (``anon`` and ``ip``): no user here

    def query(self, serializer_class: type) -> dict:
        data = serializer_class(data=self.request.query_params.dict())
        data.is_valid(raise_exception=True)
        return data.validated_data


class TimeView(PublicView):
    @extend_schema(tags=["market data"], responses={200: s.TimeSerializer})
    def get(self, request: Request) -> Response:
        now = timezone.now()
        return Response(s.TimeSerializer({"server_time": now, "server_time_ms": int(time.time() * 1000)}).data)


class MarketsView(PublicView):
    @extend_schema(tags=["market data"], responses={200: s.MarketSerializer(many=True), 429: ErrorSerializer})
    def get(self, request: Request) -> Response:
        return Response(s.MarketSerializer(selectors.markets_listed(), many=True).data)


class MarketDetailView(PublicView):
    @extend_schema(tags=["market data"], responses={200: s.MarketSerializer, **ERRORS})
    def get(self, request: Request, symbol: str) -> Response:
        return Response(s.MarketSerializer(selectors.market_by_symbol(symbol)).data)


class TickerView(PublicView):
    @extend_schema(tags=["market data"], responses={200: s.TickerSerializer, **ERRORS})
    def get(self, request: Request, symbol: str) -> Response:
        return Response(s.TickerSerializer(selectors.ticker_of(market=selectors.market_by_symbol(symbol))).data)


class TickersView(PublicView):
    @extend_schema(tags=["market data"], responses={200: s.TickerSerializer(many=True), 429: ErrorSerializer})
    def get(self, request: Request) -> Response:
        return Response(s.TickerSerializer(selectors.tickers_all(), many=True).data)


class DepthView(PublicView):
    @extend_schema(tags=["market data"], parameters=[s.DepthInput], responses={200: s.DepthSerializer, **ERRORS})
    def get(self, request: Request, symbol: str) -> Response:
        limit = self.query(s.DepthInput)["limit"]
        market = selectors.market_by_symbol(symbol)
        depth = selectors.depth_of(market=market, limit=limit)
        return Response({"symbol": market.symbol, "seq": depth.seq, "bids": depth.bids, "asks": depth.asks})


class TradesView(PublicView):
    @extend_schema(
        tags=["market data"], parameters=[s.TradesInput], responses={200: s.PublicTradeSerializer(many=True), **ERRORS}
    )
    def get(self, request: Request, symbol: str) -> Response:
        limit = self.query(s.TradesInput)["limit"]
        trades = selectors.trades_recent(market=selectors.market_by_symbol(symbol), limit=limit)
        return Response([trade_public(t) for t in trades])


class CandlesView(PublicView):
    @extend_schema(
        tags=["market data"], parameters=[s.CandlesInput], responses={200: s.CandleSerializer(many=True), **ERRORS}
    )
    def get(self, request: Request, symbol: str) -> Response:
        query = self.query(s.CandlesInput)
        rows = selectors.candles_of(
            market=selectors.market_by_symbol(symbol),
            interval=query["interval"],
            start=query.get("start"),
            end=query.get("end"),
            limit=query["limit"],
        )
        return Response([row.as_dict() for row in rows])


class RatesView(PublicView):
    @extend_schema(tags=["market data"], parameters=[s.RatesInput], responses={200: s.RatesSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response(selectors.rates_to(quote=self.query(s.RatesInput)["quote"]))
