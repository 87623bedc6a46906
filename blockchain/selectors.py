"""Blockchain reads: users' deposits, withdrawals and transactions; the back office's
hot-wallet reconciliation and scanner lag."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from blockchain.models import (
    AddressBookSetting,
    Asset,
    Deposit,
    DepositStatus,
    ScannerState,
    Withdrawal,
    WithdrawalAddress,
)
from kootabase.errors import NotFound, ServiceError

TRANSACTION_KINDS = ("deposit", "withdrawal")


def deposits_of_user(
    *, user: User, currency: str | None = None, network: str | None = None, status: str | None = None
) -> QuerySet[Deposit]:
    """The user's deposits, newest first; those dropped by a reorganisation are not shown."""
    qs = (
        Deposit.objects.filter(user=user)
        .exclude(status=DepositStatus.ORPHANED)
        .select_related("network", "asset__currency")
    )
    if currency:
        qs = qs.filter(asset__currency__code=currency.strip().upper())
    if network:
        qs = qs.filter(network__name=network.strip().lower())
    if status:
        if status not in DepositStatus.values:
            raise ServiceError("status_invalid", f"Unknown status {status!r}.")
        qs = qs.filter(status=status)
    return qs.order_by("-id")


def withdrawals_of_user(
    *, user: User, currency: str | None = None, network: str | None = None, status: str | None = None
) -> QuerySet[Withdrawal]:
    qs = Withdrawal.objects.filter(user=user).select_related("network", "currency", "tx")
    if currency:
        qs = qs.filter(currency__code=currency.strip().upper())
    if network:
        qs = qs.filter(network__name=network.strip().lower())
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-id")


def withdrawal_get_own(*, user: User, withdrawal_id: int) -> Withdrawal:
    withdrawal = withdrawals_of_user(user=user).filter(pk=withdrawal_id).first()
    if withdrawal is None:
        raise NotFound("not_found", "No such withdrawal.")
    return withdrawal


def transaction_get_own(*, user: User, transaction_id: str) -> Deposit | Withdrawal:
    """A deposit (``deposit-12``) or a withdrawal (``withdrawal-5``) of the user."""
    kind, _, number = str(transaction_id).partition("-")
    if kind not in TRANSACTION_KINDS or not number.isdigit():
        raise NotFound("not_found", "No such transaction: ids look like deposit-12 or withdrawal-5.")
    if kind == "withdrawal":
        return withdrawal_get_own(user=user, withdrawal_id=int(number))
    deposit = deposits_of_user(user=user).filter(pk=int(number)).first()
    if deposit is None:
        raise NotFound("not_found", "No such transaction.")
    return deposit


def network_heads() -> dict[int, int]:
    """The latest block each network's scanner has seen, by network id."""
    return dict(ScannerState.objects.values_list("network_id", "head"))


def confirmations(*, heads: dict[int, int], network_id: int, block_number: int | None) -> int:
    if block_number is None:
        return 0
    return max(heads.get(network_id, 0) - block_number + 1, 0)


@dataclass(frozen=True)
class AssetReserve:
    """The platform's coins of one asset against what it owes its users in the currency."""

    asset: Asset
    hot_wallet: Decimal | None  # None: the node did not answer
    unswept: Decimal  # credited deposits still on deposit addresses
    liabilities: Decimal  # the users' available + locked balances in the currency

    @property
    def surplus(self) -> Decimal | None:
        if self.hot_wallet is None:
            return None
        return self.hot_wallet + self.unswept - self.liabilities


def asset_reserves() -> list[AssetReserve]:
    """Per asset: hot wallet balance (asked of the node), unswept deposits, user liabilities.

    A currency on several networks owes its liabilities once: compare their sum with the
    liabilities shown on each row."""
    from blockchain.chains import ChainError, adapter_for
    from blockchain.hdwallet import hot_wallet
    from blockchain.services import raw_to_amount, user_liabilities

    rows = []
    address = hot_wallet().address
    for asset in Asset.objects.select_related("network", "currency").order_by("network__name", "currency__code"):
        try:
            raw = adapter_for(asset.network).balance(address, contract=asset.contract_address)
            held: Decimal | None = raw_to_amount(raw=raw, asset=asset).amount
        except (ChainError, ValueError, OSError):
            held = None
        unswept = sum(
            Deposit.objects.filter(asset=asset, status=DepositStatus.CONFIRMED, sweep__isnull=True).values_list(
                "amount", flat=True
            ),
            Decimal(0),
        )
        rows.append(AssetReserve(asset, held, unswept, user_liabilities(currency_id=asset.currency_id)))
    return rows


# --- The withdrawal address book --------------------------------------------------------


def withdrawal_addresses_of_user(*, user: User, network: str | None = None) -> QuerySet[WithdrawalAddress]:
    """The user's address book, newest first."""
    qs = WithdrawalAddress.objects.filter(user=user).select_related("network", "currency")
    if network:
        qs = qs.filter(network__name=network.strip().lower())
    return qs.order_by("-id")


def withdrawal_address_get_own(*, user: User, entry_id: int) -> WithdrawalAddress:
    entry = withdrawal_addresses_of_user(user=user).filter(pk=entry_id).first()
    if entry is None:
        raise NotFound("not_found", "No such address book entry.")
    return entry


@dataclass(frozen=True)
class AddressBookState:
    """The "withdrawals only to the address book" switch as it holds now, and when a requested
    switch-off takes effect (``None``: none is pending)."""

    only_address_book: bool
    switch_off_at: datetime | None


def address_book_state_of(setting: AddressBookSetting | None, now: datetime) -> AddressBookState:
    if setting is None or not setting.is_on(now):
        return AddressBookState(only_address_book=False, switch_off_at=None)
    return AddressBookState(only_address_book=True, switch_off_at=setting.off_at)


def address_book_state(*, user: User) -> AddressBookState:
    return address_book_state_of(AddressBookSetting.objects.filter(user=user).first(), timezone.now())
