"""Back office for the chain side: networks and assets (edited by market operators),
deposits, withdrawals (decided through their AML case, see ``aml.admin``), users'
withdrawal address books (read-only), the platform's transactions, sweeps, alerts, each
scanner's height and lag, and the hot wallet's balances against user liabilities."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from blockchain import selectors
from blockchain.models import (
    AddressBookSetting,
    Asset,
    ChainAlert,
    Deposit,
    Network,
    OutgoingTx,
    ScannerState,
    Sweep,
    Withdrawal,
    WithdrawalAddress,
)
from kootabase.admin import ReadOnlyAdmin


class AssetInline(admin.TabularInline):
    model = Asset
    extra = 0
    fields = ("currency", "contract_address", "decimals", "min_deposit", "min_withdrawal", "withdrawal_fee")
    show_change_link = True


@admin.register(Network)
class NetworkAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name", "chain_id", "confirmations", "is_active", "scanner_height", "scanner_lag")
    inlines = [AssetInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Network | None = None) -> tuple[str, ...]:
        return ("name", "kind", "chain_id", "created_at") if obj else ("created_at",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Scanned to")
    def scanner_height(self, network: Network) -> int | None:
        state = ScannerState.objects.filter(network=network).first()
        return state.height if state else None

    @admin.display(description="Lag (blocks)")
    def scanner_lag(self, network: Network) -> int | None:
        state = ScannerState.objects.filter(network=network).first()
        return state.lag if state else None


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = (
        "currency",
        "network",
        "contract_address",
        "decimals",
        "min_deposit",
        "min_withdrawal",
        "withdrawal_fee",
        "deposits_enabled",
        "withdrawals_enabled",
    )
    list_filter = ("network",)
    list_select_related = ("currency", "network")

    def get_readonly_fields(self, request: HttpRequest, obj: Asset | None = None) -> tuple[str, ...]:
        return ("network", "currency", "contract_address", "decimals") if obj else ()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list:
        urls = super().get_urls()
        reserves = path("reserves/", self.admin_site.admin_view(self.reserves_view), name="blockchain_asset_reserves")
        return [reserves, *urls]

    def reserves_view(self, request: HttpRequest) -> TemplateResponse:
        """Hot-wallet balances against user liabilities, per asset."""
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Hot wallet against user liabilities",
            "reserves": selectors.asset_reserves(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/blockchain/reserves.html", context)


@admin.register(ScannerState)
class ScannerStateAdmin(ReadOnlyAdmin):
    list_display = ("network", "height", "head", "lag", "scanned_at")


@admin.register(Deposit)
class DepositAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "network", "asset", "amount", "status", "block_number", "tx_hash", "created_at")
    list_filter = ("status", "network", "asset")
    search_fields = ("=id", "tx_hash", "address", "user__email")
    list_select_related = ("user", "network", "asset__currency")


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    """Read-only: a withdrawal the AML rules flag waits in ``review``, and compliance
    approves or rejects it through its case in the AML review queue."""

    list_display = (
        "id",
        "user",
        "network",
        "currency",
        "amount",
        "fee",
        "address",
        "status",
        "review_reason",
        "aml_case",
    )
    list_filter = ("status", "network", "currency")
    search_fields = ("=id", "address", "user__email", "tx__tx_hash")
    list_select_related = ("user", "network", "currency", "aml_case")

    @admin.display(description="AML case")
    def aml_case(self, withdrawal: Withdrawal) -> str:
        case = getattr(withdrawal, "aml_case", None)
        if case is None:
            return ""
        return format_html('<a href="{}">{}</a>', reverse("admin:aml_case_change", args=[case.pk]), case)


@admin.register(WithdrawalAddress)
class WithdrawalAddressAdmin(ReadOnlyAdmin):
    """Users' address books: read-only; users add and remove entries themselves, with 2FA."""

    list_display = ("id", "user", "network", "currency", "address", "label", "active_at", "created_at")
    list_filter = ("network", "currency")
    search_fields = ("=id", "address", "label", "user__email")
    list_select_related = ("user", "network", "currency")


@admin.register(AddressBookSetting)
class AddressBookSettingAdmin(ReadOnlyAdmin):
    list_display = ("user", "only_address_book", "off_at", "updated_at")
    list_filter = ("only_address_book",)
    search_fields = ("user__email",)
    list_select_related = ("user",)


@admin.register(OutgoingTx)
class OutgoingTxAdmin(ReadOnlyAdmin):
    list_display = ("id", "network", "purpose", "from_address", "to_address", "nonce", "status", "tx_hash")
    list_filter = ("network", "purpose", "status")
    search_fields = ("=id", "tx_hash", "from_address", "to_address")
    exclude = ("signed_raw",)


@admin.register(Sweep)
class SweepAdmin(ReadOnlyAdmin):
    list_display = ("id", "network", "asset", "address", "status", "raw_amount", "created_at")
    list_filter = ("network", "status")


@admin.register(ChainAlert)
class ChainAlertAdmin(admin.ModelAdmin):
    list_display = ("id", "network", "kind", "message", "resolved", "created_at")
    list_filter = ("kind", "resolved", "network")
    readonly_fields = ("network", "kind", "message", "details", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
