"""Blockchain endpoints: each view validates its input, calls one service or selector,
shapes the output."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from blockchain import selectors, services
from blockchain.api import serializers as s
from blockchain.models import Deposit
from kootabase.api.serializers import ErrorSerializer

ERRORS = dict.fromkeys((400, 401, 403, 409, 429), ErrorSerializer)
PAGINATION_PARAMS = ("cursor", "limit")
READ = {"GET": "read"}
NETWORK = OpenApiParameter("network", OpenApiTypes.STR, description='A network name, e.g. "ethereum".')


def _query(request: Request) -> dict:
    params = {k: v for k, v in request.query_params.items() if k not in PAGINATION_PARAMS}
    query = s.ListQuery(data=params)
    query.is_valid(raise_exception=True)
    return query.validated_data


class DepositAddressView(APIView):
    """Your deposit address for a currency on a network (created on first request)."""

    api_key_scopes = READ

    @extend_schema(
        tags=["blockchain"],
        parameters=[NETWORK],
        responses={200: s.DepositAddressSerializer, **ERRORS},
        operation_id="deposit_address",
    )
    def get(self, request: Request, currency: str) -> Response:
        address = services.deposit_address_get_or_create(
            user=request.user, currency_code=currency, network_name=request.query_params.get("network")
        )
        return Response(s.DepositAddressSerializer(address, context={"currency": currency.upper()}).data)


class DepositsView(generics.ListAPIView):
    """Your deposits, newest first: pending until their confirmations, then credited."""

    serializer_class = s.DepositSerializer
    api_key_scopes = READ

    def get_queryset(self):
        return selectors.deposits_of_user(user=self.request.user, **_query(self.request))

    @extend_schema(tags=["blockchain"], parameters=[s.ListQuery], responses={200: s.DepositSerializer(many=True)})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class WithdrawalsView(generics.ListAPIView):
    """Your withdrawals (newest first), and requesting one."""

    serializer_class = s.WithdrawalSerializer
    api_key_scopes = {"GET": "read", "POST": "withdraw"}

    def get_queryset(self):
        return selectors.withdrawals_of_user(user=self.request.user, **_query(self.request))

    @extend_schema(tags=["blockchain"], parameters=[s.ListQuery], responses={200: s.WithdrawalSerializer(many=True)})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["blockchain"],
        request=s.WithdrawalInput,
        responses={201: s.WithdrawalSerializer, 200: s.WithdrawalSerializer, **ERRORS},
        description="Request a withdrawal (2FA code required). Amount + fee are held at once. "
        "An idempotency_key used before answers 200 with that withdrawal.",
    )
    def post(self, request: Request) -> Response:
        data = s.WithdrawalInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        result = services.withdrawal_request(
            user=request.user,
            currency_code=v["currency"],
            network_name=v.get("network"),
            address=v["address"],
            amount=v["amount"],
            idempotency_key=v["idempotency_key"],
            otp_code=v.get("otp_code"),
            request=request._request,
        )
        return Response(
            s.WithdrawalSerializer(result.withdrawal).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class WithdrawalDetailView(APIView):
    api_key_scopes = {"GET": "read", "DELETE": "withdraw"}

    @extend_schema(
        tags=["blockchain"], responses={200: s.WithdrawalSerializer, 401: ErrorSerializer, 404: ErrorSerializer}
    )
    def get(self, request: Request, withdrawal_id: int) -> Response:
        withdrawal = selectors.withdrawal_get_own(user=request.user, withdrawal_id=withdrawal_id)
        return Response(s.WithdrawalSerializer(withdrawal).data)

    @extend_schema(
        tags=["blockchain"],
        request=None,
        responses={200: s.WithdrawalSerializer, 401: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
        operation_id="withdrawals_cancel",
        description="Cancel a withdrawal that is still requested; the hold is released.",
    )
    def delete(self, request: Request, withdrawal_id: int) -> Response:
        withdrawal = services.withdrawal_cancel(user=request.user, withdrawal_id=withdrawal_id)
        return Response(s.WithdrawalSerializer(withdrawal).data)


class TransactionDetailView(APIView):
    """One deposit (``deposit-12``) or withdrawal (``withdrawal-5``): status, hash,
    block, confirmations and the explorer link."""

    api_key_scopes = READ

    @extend_schema(
        tags=["blockchain"],
        responses={
            200: PolymorphicProxySerializer(
                component_name="ChainTransaction",
                serializers=[s.DepositSerializer, s.WithdrawalSerializer],
                resource_type_field_name=None,
            ),
            401: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request, transaction_id: str) -> Response:
        found = selectors.transaction_get_own(user=request.user, transaction_id=transaction_id)
        serializer = s.DepositSerializer if isinstance(found, Deposit) else s.WithdrawalSerializer
        return Response(serializer(found).data)
