"""AML writes: screening deposits, withdrawals and transfers, and compliance's decisions.

Screening runs inside the transaction of the service that makes the item, so a case,
its hold and its audit event exist exactly when the item does:

- a **deposit** is screened right after the scanner credits it (``deposits_screen``);
  a hit holds the credited amount (available -> locked);
- a **withdrawal** is screened by ``blockchain.services.withdrawal_screen``; its amount +
  fee is held since the request, and a hit leaves it in ``review``;
- a **transfer** is screened by ``wallets.services.transfer_create`` before any money
  moves; a hit holds the amount in the sender's balance and leaves it in ``review``.

Compliance then releases, rejects or freezes the account (``case_release``,
``case_reject``, ``case_freeze``), each permission-gated and audited. In ledger terms:

| item | release | reject |
|---|---|---|
| deposit | the hold is released to the user | the held amount is settled into the platform's suspense account |
| withdrawal | ``withdrawal_approve``: it goes out | ``withdrawal_reject``: the hold is released |
| transfer | the hold is settled to the recipient | the hold is released to the sender |

See docs/security.md, "AML".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from accounts.services import FREEZE_USER, user_freeze
from aml import rules
from aml.models import Case, CaseStatus, ItemKind, RuleParameter
from audit import actions
from audit.services import audit_record
from blockchain.models import Deposit, Withdrawal
from blockchain.services import withdrawal_approve, withdrawal_reject
from kootabase.errors import Conflict, NotFound, PermissionDenied, ServiceError
from wallets.locks import retry_on_deadlock
from wallets.models import MONEY, AccountKind, Currency, EntryKind, Transfer, TransferStatus
from wallets.services import funds_hold, funds_release, funds_settle, ledger_accounts_ensure, system_account

logger = logging.getLogger(__name__)

DECIDE_CASE = "aml.decide_case"


# --- Screening ------------------------------------------------------------------------


def _screen(
    *,
    kind: str,
    pk: int,
    user: User,
    currency: Currency,
    amount: Decimal,
    counterparty: str,
    at: datetime,
    parameters: Sequence[RuleParameter] | None = None,
) -> tuple[rules.Item, list[rules.Hit]]:
    """The item as the rules see it, and the rules that flag it (``parameters``: those of
    its kind, when the caller screens several items)."""
    item = rules.Item(
        kind=kind,
        id=pk,
        user_id=user.pk,
        user_email=user.email,
        currency_id=currency.pk,
        currency_code=currency.code,
        amount=amount,
        counterparty=counterparty,
        at=at,
    )
    return item, rules.evaluate(item, parameters)


def _case_open(
    *,
    item: rules.Item,
    hits: list[rules.Hit],
    user: User,
    currency: Currency,
    held: Decimal,
    hold_reference: str | None = None,
    **fields: Any,
) -> Case:
    """Open a case for a flagged item, audited. ``hold_reference``: the amount ``held`` is not
    locked yet (a deposit, a transfer); it is held now, under that reference."""
    case = Case.objects.create(
        kind=item.kind,
        user=user,
        currency=currency,
        amount=item.amount,
        held=held,
        counterparty=item.counterparty[:254],
        hits=[hit.as_dict() for hit in hits],
        **fields,
    )
    audit_record(
        action=actions.AML_CASE_OPENED,
        target=case,
        details={
            "item": f"{item.kind}:{item.id}",
            "user": user.email,
            "amount": f"{item.amount:f}",
            "currency": currency.code,
            "hits": case.hits,
        },
    )
    logger.warning("%s opened for %s:%s of %s: %s", case.reference, item.kind, item.id, user.email, case.rules)
    if hold_reference is not None:
        funds_hold(
            user=user,
            currency=currency,
            amount=held,
            reference=hold_reference,
            idempotency_key=f"{case.reference}:hold",
        )
    return case


def case_summary(case: Case) -> str:
    """The reasons of a case in one line (a withdrawal's ``review_reason`` holds 200 characters)."""
    return "; ".join(hit["reason"] for hit in case.hits)[:200]


def deposits_screen(*, deposits: Sequence[Deposit]) -> list[Case]:
    """Screen deposits the scanner has just credited, inside its transaction: each hit
    holds the deposit's amount in the user's balance and opens a case."""
    if not deposits:
        return []
    parameters = rules.parameters_for(kind=ItemKind.DEPOSIT)
    if not parameters:
        return []
    users = User.objects.in_bulk({deposit.user_id for deposit in deposits})
    cases = []
    for deposit in deposits:
        user, currency = users[deposit.user_id], deposit.asset.currency
        item, hits = _screen(
            kind=ItemKind.DEPOSIT,
            pk=deposit.pk,
            user=user,
            currency=currency,
            amount=deposit.amount,
            counterparty=deposit.from_address,
            at=deposit.credited_at or timezone.now(),
            parameters=parameters,
        )
        if not hits:
            continue
        case = _case_open(
            item=item,
            hits=hits,
            user=user,
            currency=currency,
            held=deposit.amount,
            hold_reference=deposit.reference,
            deposit=deposit,
        )
        cases.append(case)
    return cases


def withdrawal_screen(*, withdrawal: Withdrawal) -> Case | None:
    """Screen a withdrawal (for ``blockchain.services.withdrawal_screen``, which holds it
    locked in its transaction). Its amount + fee is held since the request; a hit opens
    a case and the caller leaves the withdrawal in ``review``."""
    user, currency = withdrawal.user, withdrawal.currency
    item, hits = _screen(
        kind=ItemKind.WITHDRAWAL,
        pk=withdrawal.pk,
        user=user,
        currency=currency,
        amount=withdrawal.amount,
        counterparty=withdrawal.address,
        at=withdrawal.created_at,
    )
    if not hits:
        return None
    with localcontext(MONEY):
        held = withdrawal.amount + withdrawal.fee
    return _case_open(item=item, hits=hits, user=user, currency=currency, held=held, withdrawal=withdrawal)


def transfer_screen(*, transfer: Transfer, sender: User, recipient: User, currency: Currency) -> Case | None:
    """Screen a new transfer inside ``transfer_create``'s transaction, before money moves.
    A hit holds the amount in the sender's balance (``insufficient_funds`` rolls the
    whole transfer back), puts the transfer in ``review`` and opens a case; the caller
    then moves nothing more. A clean transfer costs one query per velocity limit (the
    parameters come from the process's copy, ``aml.catalog``)."""
    item, hits = _screen(
        kind=ItemKind.TRANSFER,
        pk=transfer.pk,
        user=sender,
        currency=currency,
        amount=transfer.amount,
        counterparty=recipient.email,
        at=transfer.created_at,
    )
    if not hits:
        return None
    case = _case_open(
        item=item,
        hits=hits,
        user=sender,
        currency=currency,
        held=transfer.amount,
        hold_reference=transfer.reference,
        transfer=transfer,
    )
    transfer.status = TransferStatus.REVIEW
    transfer.save(update_fields=["status"])
    return case


# --- Compliance's decisions -------------------------------------------------------------


def _require(staff: User, permission: str) -> None:
    if not (staff.is_active and staff.has_perm(permission)):
        raise PermissionDenied("permission_denied", "You may not take this decision on AML cases.")


def _locked(case_id: int) -> Case:
    case = Case.objects.select_for_update().filter(pk=case_id).first()
    if case is None:
        raise NotFound("not_found", "No such case.")
    return Case.objects.select_related("user", "currency").get(pk=case.pk)


def _open(case_id: int) -> Case:
    case = _locked(case_id)
    if case.status != CaseStatus.OPEN:
        raise Conflict(
            "case_decided", f"The case is {case.status} already.", details={"case": case.pk, "status": case.status}
        )
    return case


def _transfer_locked(case: Case) -> Transfer:
    return Transfer.objects.select_for_update().get(pk=case.transfer_id)


def _close(case: Case, *, status: str, staff: User, reason: str, request: HttpRequest | None, action: str) -> Case:
    case.status, case.decided_by, case.decided_at = status, staff, timezone.now()
    case.decision_reason = reason[:500]
    case.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
    audit_record(
        action=action,
        actor=staff,
        target=case,
        request=request,
        details={
            "item": f"{case.kind}:{case.item.pk}",
            "user": case.user.email,
            "held": f"{case.held:f}",
            "currency": case.currency.code,
            "reason": case.decision_reason,
        },
    )
    return case


@retry_on_deadlock
@transaction.atomic
def case_release(*, case_id: int, staff: User, note: str = "", request: HttpRequest | None = None) -> Case:
    """The item was fine: a deposit's hold is released to the user, a withdrawal is
    approved (``withdrawal_approve``) and goes out, a transfer's hold is paid to the
    recipient. ``permission_denied``, ``not_found``, ``case_decided``."""
    _require(staff, DECIDE_CASE)
    case = _open(case_id)
    if case.kind == ItemKind.WITHDRAWAL:
        withdrawal_approve(withdrawal_id=case.withdrawal_id, staff=staff)
    elif case.kind == ItemKind.DEPOSIT:
        funds_release(
            user=case.user,
            currency=case.currency,
            amount=case.held,
            reference=f"deposit:{case.deposit_id}",
            idempotency_key=f"{case.reference}:release",
        )
    else:
        transfer = _transfer_locked(case)
        key = (transfer.recipient_id, case.currency_id, AccountKind.AVAILABLE)
        recipient = ledger_accounts_ensure(keys=[key], currencies=[case.currency])[key]
        funds_settle(
            user=case.user,
            currency=case.currency,
            amount=case.held,
            destination=recipient,
            kind=EntryKind.TRANSFER,
            reference=transfer.reference,
            idempotency_key=f"{case.reference}:settle",
        )
        transfer.status = TransferStatus.COMPLETED
        transfer.save(update_fields=["status"])
    return _close(
        case,
        status=CaseStatus.RELEASED,
        staff=staff,
        reason=note.strip(),
        request=request,
        action=actions.AML_CASE_RELEASED,
    )


@retry_on_deadlock
@transaction.atomic
def case_reject(*, case_id: int, staff: User, reason: str, request: HttpRequest | None = None) -> Case:
    """The item is refused: a deposit's held amount is settled into the platform's
    suspense account (out of the user's balance, kept for what compliance decides next:
    a return to the sender, a report), a withdrawal is rejected (``withdrawal_reject``:
    its hold is released), a transfer's hold is released to the sender.
    ``reason_required``, ``permission_denied``, ``not_found``, ``case_decided``."""
    _require(staff, DECIDE_CASE)
    reason = reason.strip()
    if not reason:
        raise ServiceError("reason_required", "Say why the case is rejected.")
    case = _open(case_id)
    if case.kind == ItemKind.WITHDRAWAL:
        withdrawal_reject(withdrawal_id=case.withdrawal_id, staff=staff, reason=reason)
    elif case.kind == ItemKind.DEPOSIT:
        funds_settle(
            user=case.user,
            currency=case.currency,
            amount=case.held,
            destination=system_account(currency=case.currency, kind=AccountKind.SUSPENSE),
            kind=EntryKind.SUSPENSE,
            reference=f"deposit:{case.deposit_id}",
            idempotency_key=f"{case.reference}:suspense",
        )
    else:
        transfer = _transfer_locked(case)
        funds_release(
            user=case.user,
            currency=case.currency,
            amount=case.held,
            reference=transfer.reference,
            idempotency_key=f"{case.reference}:release",
        )
        transfer.status = TransferStatus.REJECTED
        transfer.save(update_fields=["status"])
    return _close(
        case, status=CaseStatus.REJECTED, staff=staff, reason=reason, request=request, action=actions.AML_CASE_REJECTED
    )


@retry_on_deadlock
@transaction.atomic
def case_freeze(
    *, case_id: int, staff: User, reason: str, cancel_orders: bool = False, request: HttpRequest | None = None
) -> Case:
    """Freeze the account behind a case (``accounts.services.user_freeze``, with its
    ``cancel_orders``): from now on the user moves nothing. The case itself stays as it is
    (an open one still waits for release or reject). Freezing a frozen account changes and
    records nothing. ``reason_required``, ``permission_denied``, ``not_found``."""
    _require(staff, FREEZE_USER)
    reason = reason.strip()
    if not reason:
        raise ServiceError("reason_required", "Say why the account is frozen.")
    case = _locked(case_id)
    if case.user.is_frozen:
        return case
    user_freeze(
        user=case.user,
        actor=staff,
        reason=f"{case.reference}: {reason}"[:200],
        cancel_orders=cancel_orders,
        request=request,
    )
    audit_record(
        action=actions.AML_ACCOUNT_FROZEN,
        actor=staff,
        target=case,
        request=request,
        details={"user": case.user.email, "reason": reason[:200]},
    )
    return case
