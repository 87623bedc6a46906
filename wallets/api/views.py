"""Wallet endpoints: each view validates its input, calls one service or selector, shapes the output."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kootabase.api.pagination import list_filters
from kootabase.api.serializers import ErrorSerializer
from kootabase.errors import NotFound
from wallets import selectors, services
from wallets.api import serializers as s
from wallets.models import LedgerLeg

ERRORS = dict.fromkeys((400, 401, 429), ErrorSerializer)


class CurrencyListView(APIView):
    """Every listed currency and what can be done with it now."""

    permission_classes = [AllowAny]

    @extend_schema(tags=["wallets"], responses={200: s.CurrencySerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(s.CurrencySerializer(selectors.currency_list(), many=True).data)


class WalletListView(APIView):
    """Your balances in every listed currency: available, locked (held for orders and
    withdrawals) and total."""

    @extend_schema(tags=["wallets"], responses={200: s.WalletSerializer(many=True), 401: ErrorSerializer})
    def get(self, request: Request) -> Response:
        return Response(s.WalletSerializer(selectors.wallet_list(user=request.user), many=True).data)


class WalletDetailView(APIView):
    @extend_schema(tags=["wallets"], responses={200: s.WalletSerializer, 401: ErrorSerializer, 404: ErrorSerializer})
    def get(self, request: Request, currency: str) -> Response:
        found = selectors.currency_get(code=currency)
        if found is None:
            raise NotFound("unknown_currency", f"Unknown currency {currency!r}.")
        return Response(s.WalletSerializer(selectors.wallet_get(user=request.user, currency=found)).data)


class LedgerView(generics.ListAPIView):
    """Your ledger: every movement of your balances, newest first (cursor-paginated)."""

    serializer_class = s.LedgerLegSerializer

    def get_queryset(self) -> QuerySet[LedgerLeg]:
        return selectors.ledger_leg_list(user=self.request.user, **list_filters(self.request, s.LedgerQuery))

    @extend_schema(tags=["wallets"], parameters=[s.LedgerQuery], responses={200: s.LedgerLegSerializer, **ERRORS})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class TransferCreateView(APIView):
    """Pay another user of the platform. The same idempotency_key again returns the
    first transfer and moves nothing. ``status`` is ``completed``, or ``review`` when the
    platform's compliance rules hold the amount until a compliance officer decides."""

    @extend_schema(
        tags=["wallets"],
        request=s.TransferInput,
        responses={201: s.TransferSerializer, 409: ErrorSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = s.TransferInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        transfer = services.transfer_create(
            sender=request.user,
            recipient_email=v["recipient"],
            currency_code=v["currency"],
            amount=v["amount"],
            idempotency_key=v["idempotency_key"],
        )
        return Response(s.TransferSerializer(transfer).data, status=status.HTTP_201_CREATED)
