"""Blockchain endpoints: each view validates its input, calls one service or selector,
shapes the output."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from blockchain import address_book, selectors, services
from blockchain.api import serializers as s
from blockchain.models import Deposit
from kootabase.api.pagination import list_filters
from kootabase.api.serializers import ErrorSerializer

ERRORS = dict.fromkeys((400, 401, 403, 409, 429), ErrorSerializer)
READ = {"GET": "read"}
NETWORK = OpenApiParameter("network", OpenApiTypes.STR, description='A network name, e.g. "ethereum".')


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
        return selectors.deposits_of_user(user=self.request.user, **list_filters(self.request, s.ListQuery))

    @extend_schema(tags=["blockchain"], parameters=[s.ListQuery], responses={200: s.DepositSerializer(many=True)})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class WithdrawalsView(generics.ListAPIView):
    """Your withdrawals (newest first), and requesting one."""

    serializer_class = s.WithdrawalSerializer
    api_key_scopes = {"GET": "read", "POST": "withdraw"}

    def get_queryset(self):
        return selectors.withdrawals_of_user(user=self.request.user, **list_filters(self.request, s.ListQuery))

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


# --- The withdrawal address book ---------------------------------------------------------
# Reads take a key with the read scope; changes are refused to API keys
# (``api_key_not_allowed``): like 2FA and passwords, the address book guards the account.


class WithdrawalAddressesView(generics.ListAPIView):
    """Your withdrawal address book (newest first), and adding an address (2FA code required)."""

    serializer_class = s.WithdrawalAddressSerializer
    api_key_scopes = READ

    def get_queryset(self):
        filters = list_filters(self.request, s.AddressBookQuery)
        return selectors.withdrawal_addresses_of_user(user=self.request.user, **filters)

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "now": timezone.now()}

    @extend_schema(
        tags=["blockchain"],
        parameters=[s.AddressBookQuery],
        responses={200: s.WithdrawalAddressSerializer(many=True)},
        operation_id="withdrawal_addresses_list",
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["blockchain"],
        request=s.WithdrawalAddressInput,
        responses={201: s.WithdrawalAddressSerializer, **ERRORS},
        operation_id="withdrawal_addresses_create",
        description="Add an address (2FA code required). It becomes usable after the activation delay "
        "(active_at, 24 hours by default).",
    )
    def post(self, request: Request) -> Response:
        data = s.WithdrawalAddressInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        entry = address_book.address_book_add(
            user=request.user,
            network_name=v["network"],
            currency_code=v.get("currency") or None,
            address=v["address"],
            label=v["label"],
            otp_code=v.get("otp_code"),
            request=request._request,
        )
        body = s.WithdrawalAddressSerializer(entry, context={"now": timezone.now()}).data
        return Response(body, status=status.HTTP_201_CREATED)


class WithdrawalAddressDetailView(APIView):
    api_key_scopes = READ

    @extend_schema(
        tags=["blockchain"],
        responses={200: s.WithdrawalAddressSerializer, 401: ErrorSerializer, 404: ErrorSerializer},
        operation_id="withdrawal_addresses_retrieve",
    )
    def get(self, request: Request, entry_id: int) -> Response:
        entry = selectors.withdrawal_address_get_own(user=request.user, entry_id=entry_id)
        return Response(s.WithdrawalAddressSerializer(entry, context={"now": timezone.now()}).data)

    @extend_schema(
        tags=["blockchain"],
        responses={204: None, 401: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer},
        operation_id="withdrawal_addresses_destroy",
        description="Remove an address at once (no 2FA needed).",
    )
    def delete(self, request: Request, entry_id: int) -> Response:
        address_book.address_book_remove(user=request.user, entry_id=entry_id, request=request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AddressBookSettingView(APIView):
    """Whether your withdrawals go only to your address book."""

    api_key_scopes = READ

    @extend_schema(tags=["blockchain"], responses={200: s.AddressBookSettingSerializer, 401: ErrorSerializer})
    def get(self, request: Request) -> Response:
        return Response(s.AddressBookSettingSerializer(selectors.address_book_state(user=request.user)).data)

    @extend_schema(
        tags=["blockchain"],
        request=s.AddressBookSettingInput,
        responses={200: s.AddressBookSettingSerializer, **ERRORS},
        description="Turn it on (at once) or off (after the activation delay, 24 hours by default; "
        "until then it stays on and switch_off_at says when). Both need a 2FA code.",
    )
    def put(self, request: Request) -> Response:
        data = s.AddressBookSettingInput(data=request.data)
        data.is_valid(raise_exception=True)
        state = address_book.address_book_setting_set(
            user=request.user,
            only_address_book=data.validated_data["only_address_book"],
            otp_code=data.validated_data.get("otp_code"),
            request=request._request,
        )
        return Response(s.AddressBookSettingSerializer(state).data)
