"""Blockchain writes made by users and staff: deposit addresses and the withdrawal pipeline,
plus the amount conversions and ledger postings the workers share.

The workers (``scanner``, ``broadcaster``, ``sweeper``) move the chain side; every
balance change goes through ``wallets.services``:

- a confirmed deposit: one posting external -> user available, key
  ``deposit:{network}:{tx_hash}:{log_index}``;
- a withdrawal: ``funds_hold`` of amount + fee at request (``withdrawal:{id}:hold``),
  ``funds_settle`` of the amount into the external account and of the fee into the fees
  account on confirmation (``withdrawal:{id}:settle`` / ``:fee``), ``funds_release`` on
  reject, cancel or failure (``withdrawal:{id}:release``).

See docs/blockchain.md.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from accounts.otp import otp_verify
from accounts.services import user_check_not_frozen
from audit import actions
from audit.services import audit_record
from blockchain.chains import adapter_for
from blockchain.hdwallet import deposit_path, hot_wallet
from blockchain.models import (
    Asset,
    ChainAlert,
    DepositAddress,
    Network,
    ScannerState,
    Withdrawal,
    WithdrawalStatus,
)
from kootabase.errors import Conflict, NotFound, ServiceError
from kyc.services import kyc_check_withdrawal
from wallets.locks import retry_on_deadlock
from wallets.models import AMOUNT_LIMIT, MONEY, AccountKind, EntryKind, LedgerAccount
from wallets.services import (
    amount_validate,
    currency_get_enabled,
    funds_hold,
    funds_release,
    funds_settle,
    system_account,
)

logger = logging.getLogger(__name__)


# --- Amounts --------------------------------------------------------------------------


class Converted(NamedTuple):
    amount: Decimal  # what the ledger can hold: within the currency's precision
    dust: int  # raw units below the currency's precision, not credited


def raw_to_amount(*, raw: int, asset: Asset) -> Converted:
    """An on-chain amount in the asset's currency, exactly. Units finer than the
    currency's precision (an 18-decimal coin listed with 8 places) are returned as
    ``dust`` and never rounded into the amount."""
    precision, decimals = asset.currency.precision, asset.decimals
    step = 10 ** (decimals - precision) if decimals > precision else 1
    dust = raw % step
    with localcontext(MONEY):
        amount = Decimal(raw - dust).scaleb(-decimals)
    return Converted(amount, dust)


def amount_to_raw(*, amount: Decimal, asset: Asset) -> int:
    """``amount`` in on-chain units; ``amount_precision`` when the chain cannot express it."""
    with localcontext(MONEY):
        raw = amount.scaleb(asset.decimals)
    if raw != raw.to_integral_value():
        raise ServiceError(
            "amount_precision",
            f"{asset.currency.code} on {asset.network.name} has at most {asset.decimals} decimal places.",
            details={"precision": asset.decimals},
        )
    return int(raw)


# --- Networks and assets --------------------------------------------------------------


def network_get(*, name: str) -> Network:
    network = Network.objects.filter(name=str(name).strip().lower(), is_active=True).first()
    if network is None:
        raise ServiceError("network_unsupported", f"Unknown network {name!r}.", details={"network": str(name)})
    return network


def asset_get(*, currency_code: str, network_name: str | None, purpose: str) -> Asset:
    """The asset of ``currency_code`` on ``network_name`` (or on its only network),
    enabled for ``purpose`` ("deposits" or "withdrawals")."""
    currency = currency_get_enabled(code=currency_code, purpose=purpose)  # type: ignore[arg-type]
    assets = Asset.objects.select_related("network", "currency").filter(currency=currency, network__is_active=True)
    if network_name:
        asset = assets.filter(network__name=str(network_name).strip().lower()).first()
    else:
        candidates = list(assets[:2])
        if len(candidates) > 1:
            raise ServiceError(
                "network_required",
                f"{currency.code} lives on several networks: say which one (network).",
                details={"networks": sorted(a.network.name for a in assets)},
            )
        asset = candidates[0] if candidates else None
    if asset is None:
        raise ServiceError(
            "network_unsupported",
            f"{currency.code} is not supported on {network_name or 'any network'}.",
            details={"currency": currency.code, "network": str(network_name or "")},
        )
    if not getattr(asset, f"{purpose}_enabled"):
        raise ServiceError(
            "currency_disabled",
            f"{purpose.capitalize()} of {currency.code} on {asset.network.name} are disabled now.",
            details={"currency": currency.code, "network": asset.network.name, "purpose": purpose},
        )
    return asset


def scanner_state_ensure(*, network: Network) -> ScannerState:
    """The network's scanner state; a new one starts at the node's current block."""
    state = ScannerState.objects.filter(network=network).first()
    if state is not None:
        return state
    head = adapter_for(network).head()
    try:
        with transaction.atomic():
            return ScannerState.objects.create(network=network, height=head, head=head)
    except IntegrityError:
        return ScannerState.objects.get(network=network)


def chain_alert(*, network: Network, kind: str, message: str, details: dict[str, Any] | None = None) -> ChainAlert:
    logger.critical("%s on %s: %s", kind, network.name, message)
    return ChainAlert.objects.create(network=network, kind=kind, message=message, details=details or {})


# --- Deposit addresses ----------------------------------------------------------------


def deposit_address_get_or_create(*, user: User, currency_code: str, network_name: str | None) -> DepositAddress:
    """The user's deposit address for a currency on a network, derived on first request."""
    from blockchain.hdwallet import account_at

    asset = asset_get(currency_code=currency_code, network_name=network_name, purpose="deposits")
    network = asset.network
    existing = DepositAddress.objects.filter(user=user, network=network).first()
    if existing is not None:
        return existing
    scanner_state_ensure(network=network)  # the scanner watches from now on
    path = deposit_path(network_kind=network.kind, index=user.pk)
    address = account_at(path).address
    try:
        with transaction.atomic():
            return DepositAddress.objects.create(user=user, network=network, address=address, derivation_path=path)
    except IntegrityError:
        return DepositAddress.objects.get(user=user, network=network)


# --- Withdrawals ----------------------------------------------------------------------


def _address_check(*, asset: Asset, address: str) -> str:
    return withdrawal_address_check(network=asset.network, address=address)


def withdrawal_address_check(*, network: Network, address: str) -> str:
    """``address`` in its canonical form if withdrawals on ``network`` may go to it:
    ``address_invalid``, ``address_checksum``, ``address_is_internal`` or
    ``address_is_contract`` otherwise. Withdrawals and the address book both check with it."""
    adapter = adapter_for(network)
    address = adapter.address_normalize(address)
    internal = DepositAddress.objects.filter(network=network, address=address).exists()
    if internal or address == hot_wallet().address:
        raise ServiceError(
            "address_is_internal",
            "This address belongs to the platform: pay another user with a transfer instead.",
        )
    if adapter.is_contract(address):
        raise ServiceError(
            "address_is_contract", "This address is a contract; withdrawals go to ordinary accounts only."
        )
    return address


def _address_book_check(*, user: User, asset: Asset, address: str) -> None:
    from blockchain.address_book import address_book_check  # it builds on this module

    address_book_check(user=user, asset=asset, address=address)


def _daily_total(*, user: User, asset: Asset) -> Decimal:
    since = timezone.now() - timedelta(hours=24)
    totals = (
        Withdrawal.objects.filter(user=user, asset=asset, created_at__gte=since)
        .exclude(status__in=(WithdrawalStatus.REJECTED, WithdrawalStatus.CANCELLED, WithdrawalStatus.FAILED))
        .values_list("amount", "fee")
    )
    with localcontext(MONEY):
        return sum((amount + fee for amount, fee in totals), Decimal(0))


class WithdrawalRequest(NamedTuple):
    withdrawal: Withdrawal
    created: bool


@retry_on_deadlock
def withdrawal_request(
    *,
    user: User,
    currency_code: str,
    network_name: str | None,
    address: str,
    amount: Decimal,
    idempotency_key: str,
    otp_code: str | None,
    request: HttpRequest | None = None,
) -> WithdrawalRequest:
    """Ask to send ``amount`` to ``address``: checks everything, holds amount + fee and
    stores the request ``requested``; the pipeline takes it from there (``tasks``).

    The same ``idempotency_key`` again returns the stored request and holds nothing more.
    Errors (nothing is held or stored): ``otp_required``/``otp_invalid``, ``unknown_currency``,
    ``currency_disabled``, ``network_required``, ``network_unsupported``, ``amount_*``,
    ``amount_below_minimum``, ``address_invalid``, ``address_checksum``,
    ``address_is_contract``, ``address_is_internal``, ``address_not_in_book``,
    ``address_not_yet_active``, ``withdrawal_limit_exceeded``, ``kyc_fiat_not_allowed``,
    ``kyc_limit_exceeded``, ``kyc_price_unavailable``, ``insufficient_funds``, ``idempotency_conflict``.
    """
    stored = Withdrawal.objects.filter(user=user, idempotency_key=idempotency_key).first()
    if stored is not None:
        return WithdrawalRequest(_same_request(stored, currency_code, network_name, amount), False)
    user_check_not_frozen(user=user)
    otp_verify(user=user, code=otp_code, request=request, purpose="withdrawal")
    asset = asset_get(currency_code=currency_code, network_name=network_name, purpose="withdrawals")
    currency = asset.currency
    amount = amount_validate(amount=amount, currency=currency)
    amount_to_raw(amount=amount, asset=asset)
    if amount < asset.min_withdrawal:
        raise ServiceError(
            "amount_below_minimum",
            f"The smallest {currency.code} withdrawal on {asset.network.name} is {asset.min_withdrawal.normalize():f}.",
            details={"minimum": format(asset.min_withdrawal.normalize(), "f")},
        )
    address = _address_check(asset=asset, address=address)
    _address_book_check(user=user, asset=asset, address=address)
    fee = asset.withdrawal_fee
    with localcontext(MONEY):
        total = amount + fee
    if total >= AMOUNT_LIMIT:
        raise ServiceError("amount_out_of_range", "The amount is beyond the ledger's range.")
    with transaction.atomic():
        if asset.daily_withdrawal_limit is not None:
            User.objects.select_for_update().filter(pk=user.pk).first()  # one request of a user at a time
            with localcontext(MONEY):
                after = _daily_total(user=user, asset=asset) + total
            if after > asset.daily_withdrawal_limit:
                raise ServiceError(
                    "withdrawal_limit_exceeded",
                    f"This would take your {currency.code} withdrawals over "
                    f"{asset.daily_withdrawal_limit.normalize():f} in 24 hours.",
                    details={"limit": format(asset.daily_withdrawal_limit.normalize(), "f")},
                )
        kyc_check_withdrawal(user=user, currency=currency, amount=total)  # the user's KYC tier, under their KYC lock
        try:
            with transaction.atomic():
                withdrawal = Withdrawal.objects.create(
                    user=user,
                    network=asset.network,
                    asset=asset,
                    currency=currency,
                    address=address,
                    amount=amount,
                    fee=fee,
                    idempotency_key=idempotency_key,
                )
        except IntegrityError:
            stored = Withdrawal.objects.filter(user=user, idempotency_key=idempotency_key).first()
            if stored is None:
                raise
            return WithdrawalRequest(_same_request(stored, currency_code, network_name, amount), False)
        funds_hold(
            user=user,
            currency=currency,
            amount=total,
            reference=withdrawal.reference,
            idempotency_key=f"{withdrawal.reference}:hold",
        )
        audit_record(
            action=actions.WITHDRAWAL_REQUESTED,
            actor=user,
            target=withdrawal,
            request=request,
            details={
                "currency": currency.code,
                "network": asset.network.name,
                "address": address,
                "amount": format(amount, "f"),
                "fee": format(fee, "f"),
            },
        )
        _enqueue_pipeline(withdrawal)
    return WithdrawalRequest(withdrawal, True)


def _same_request(stored: Withdrawal, currency_code: str, network_name: str | None, amount: Decimal) -> Withdrawal:
    same = stored.currency.code == str(currency_code).strip().upper() and stored.amount == amount
    if network_name:
        same = same and stored.network.name == str(network_name).strip().lower()
    if not same:
        raise Conflict(
            "idempotency_conflict",
            "This idempotency key was already used for a different request.",
            details={"idempotency_key": stored.idempotency_key},
        )
    return stored


def _enqueue_pipeline(withdrawal: Withdrawal) -> None:
    from blockchain import tasks
    from kootabase.events import enqueue_after_commit

    enqueue_after_commit(tasks.withdrawal_screen, withdrawal.pk)


def _locked(withdrawal_id: int) -> Withdrawal:
    withdrawal = (
        Withdrawal.objects.select_for_update()
        .select_related("asset", "asset__currency", "network", "currency", "user")
        .filter(pk=withdrawal_id)
        .first()
    )
    if withdrawal is None:
        raise NotFound("not_found", "No such withdrawal.")
    return withdrawal


def _release(withdrawal: Withdrawal) -> None:
    with localcontext(MONEY):
        total = withdrawal.amount + withdrawal.fee
    funds_release(
        user=withdrawal.user,
        currency=withdrawal.currency,
        amount=total,
        reference=withdrawal.reference,
        idempotency_key=f"{withdrawal.reference}:release",
    )


@retry_on_deadlock
@transaction.atomic
def withdrawal_cancel(*, user: User, withdrawal_id: int) -> Withdrawal:
    """The user takes back a withdrawal that is still ``requested``; the hold is released."""
    withdrawal = Withdrawal.objects.filter(pk=withdrawal_id, user=user).values_list("pk", flat=True).first()
    if withdrawal is None:
        raise NotFound("not_found", "No such withdrawal.")
    withdrawal = _locked(withdrawal_id)
    if withdrawal.status != WithdrawalStatus.REQUESTED:
        raise Conflict(
            "withdrawal_not_cancellable",
            f"The withdrawal is {withdrawal.status}: only a requested withdrawal can be cancelled.",
            details={"status": withdrawal.status},
        )
    _release(withdrawal)
    withdrawal.status = WithdrawalStatus.CANCELLED
    withdrawal.save(update_fields=["status", "updated_at"])
    return withdrawal


@retry_on_deadlock
@transaction.atomic
def withdrawal_screen(*, withdrawal_id: int) -> Withdrawal:
    """``requested`` -> ``review`` when an AML rule flags it (``aml.services.withdrawal_screen``
    opens the case compliance decides), else ``approved``."""
    from aml import services as aml  # aml builds on this module

    withdrawal = _locked(withdrawal_id)
    if withdrawal.status != WithdrawalStatus.REQUESTED:
        return withdrawal
    case = aml.withdrawal_screen(withdrawal=withdrawal)
    reason = aml.case_summary(case) if case else ""
    withdrawal.status = WithdrawalStatus.REVIEW if reason else WithdrawalStatus.APPROVED
    withdrawal.review_reason = reason
    withdrawal.save(update_fields=["status", "review_reason", "updated_at"])
    if not reason:
        _enqueue_broadcast(withdrawal)
    return withdrawal


def _enqueue_broadcast(withdrawal: Withdrawal) -> None:
    from blockchain import tasks
    from kootabase.events import enqueue_after_commit

    enqueue_after_commit(tasks.withdrawals_broadcast, withdrawal.network_id)


@retry_on_deadlock
@transaction.atomic
def withdrawal_approve(*, withdrawal_id: int, staff: User) -> Withdrawal:
    """A reviewer lets a withdrawal in ``review`` (or still ``requested``) go out."""
    withdrawal = _locked(withdrawal_id)
    if withdrawal.status not in (WithdrawalStatus.REVIEW, WithdrawalStatus.REQUESTED):
        raise Conflict("withdrawal_not_reviewable", f"The withdrawal is {withdrawal.status}.")
    withdrawal.status = WithdrawalStatus.APPROVED
    withdrawal.decided_by, withdrawal.decided_at = staff, timezone.now()
    withdrawal.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])
    _enqueue_broadcast(withdrawal)
    return withdrawal


@retry_on_deadlock
@transaction.atomic
def withdrawal_reject(*, withdrawal_id: int, staff: User, reason: str) -> Withdrawal:
    """A reviewer refuses a withdrawal in ``review`` (or still ``requested``); the hold is released."""
    withdrawal = _locked(withdrawal_id)
    if withdrawal.status not in (WithdrawalStatus.REVIEW, WithdrawalStatus.REQUESTED):
        raise Conflict("withdrawal_not_reviewable", f"The withdrawal is {withdrawal.status}.")
    _release(withdrawal)
    withdrawal.status = WithdrawalStatus.REJECTED
    withdrawal.failure_reason = reason[:200]
    withdrawal.decided_by, withdrawal.decided_at = staff, timezone.now()
    withdrawal.save(update_fields=["status", "failure_reason", "decided_by", "decided_at", "updated_at"])
    return withdrawal


def withdrawal_settle(*, withdrawal: Withdrawal) -> None:
    """The withdrawal's transaction is final: pay the hold out (inside the caller's transaction)."""
    funds_settle(
        user=withdrawal.user,
        currency=withdrawal.currency,
        amount=withdrawal.amount,
        destination=system_account(currency=withdrawal.currency, kind=AccountKind.EXTERNAL),
        kind=EntryKind.WITHDRAWAL,
        reference=withdrawal.reference,
        idempotency_key=f"{withdrawal.reference}:settle",
    )
    if withdrawal.fee:
        funds_settle(
            user=withdrawal.user,
            currency=withdrawal.currency,
            amount=withdrawal.fee,
            destination=system_account(currency=withdrawal.currency, kind=AccountKind.FEES),
            kind=EntryKind.FEE,
            reference=withdrawal.reference,
            idempotency_key=f"{withdrawal.reference}:fee",
        )


def withdrawal_fail(*, withdrawal: Withdrawal, reason: str) -> None:
    """The withdrawal cannot go out: release the hold (inside the caller's transaction)."""
    _release(withdrawal)
    withdrawal.status = WithdrawalStatus.FAILED
    withdrawal.failure_reason = reason[:200]
    withdrawal.save(update_fields=["status", "failure_reason", "updated_at"])


def user_liabilities(*, currency_id: int) -> Decimal:
    """What the platform owes its users in a currency: their available and locked balances."""
    # No ORDER BY: sorting by id would let MySQL walk the whole primary key instead of the
    # currency's index range (the sum does not depend on the order).
    balances = (
        LedgerAccount.objects.filter(currency_id=currency_id, user__isnull=False)
        .order_by()
        .values_list("balance", flat=True)
    )
    with localcontext(MONEY):  # summed in Python: exact on every backend
        return sum(balances, Decimal(0))
