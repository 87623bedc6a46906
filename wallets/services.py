"""Wallet and ledger writes: the only code in the platform that moves money.

Everything goes through ``ledger_post_batch`` (``ledger_post`` is a batch of one): it
validates the legs, inserts the journal entries (an idempotency key that was already
used returns the stored entry and moves nothing), locks every affected balance row in
ascending account id order, refuses a result that would leave a user balance negative,
then writes the legs and the new balances in the same transaction. ``funds_hold``,
``funds_release``, ``funds_settle``, ``transfer_create`` and ``adjustment_post`` build
their legs and call it. ``ledger_audit_run`` proves the invariants. See docs/ledger.md.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from typing import Any, Literal, TypeVar

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, models, transaction
from django.utils import timezone

from accounts.models import User
from accounts.selectors import user_get_by_email
from accounts.services import user_check_not_frozen
from audit import actions
from audit.services import audit_record
from kootabase.db import model_build
from kootabase.errors import Conflict, ServiceError
from kyc.services import kyc_check_transfer
from wallets import account_ids, catalog, sql
from wallets.events import balances_changed
from wallets.locks import retry_on_deadlock
from wallets.models import (
    AMOUNT_LIMIT,
    MONEY,
    AccountKind,
    Adjustment,
    AuditRun,
    Currency,
    EntryKind,
    JournalEntry,
    LedgerAccount,
    LedgerLeg,
    Transfer,
)

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=models.Model)

#: (user id or None for the platform, currency id, account kind)
AccountKey = tuple[int | None, int, str]
CurrencyPurpose = Literal["deposits", "withdrawals", "trading", "transfers"]

_ROUNDING_FREE = Context(prec=60)  # for checks that compare a value with its rounding


@dataclass(frozen=True, slots=True)
class Leg:
    """One line of a journal entry: ``amount`` (signed) added to ``account``'s balance."""

    account: LedgerAccount
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Posting:
    """One journal entry to post: legs that sum to zero per currency."""

    kind: str
    legs: Sequence[Leg]
    reference: str = ""
    idempotency_key: str | None = None


# --- Input checks shared by every money path ------------------------------------------


def currency_get_enabled(*, code: str, purpose: CurrencyPurpose | None = None) -> Currency:
    """The active currency ``code``, enabled for ``purpose``; ``unknown_currency`` or
    ``currency_disabled`` otherwise."""
    currency = catalog.currency_by_code(str(code).strip().upper())
    if currency is None:
        raise ServiceError("unknown_currency", f"Unknown currency {code!r}.", details={"currency": str(code)})
    if not currency.is_active or (purpose is not None and not getattr(currency, f"{purpose}_enabled")):
        what = f"{purpose} are" if purpose else "it is"
        raise ServiceError(
            "currency_disabled",
            f"{currency.code} is disabled: {what} not possible now.",
            details={"currency": currency.code, "purpose": purpose or "any"},
        )
    return currency


def amount_validate(*, amount: Decimal, currency: Currency) -> Decimal:
    """``amount`` if it is a finite positive number within ``currency``'s precision and
    the ledger's range; otherwise ``amount_invalid``, ``amount_not_positive``,
    ``amount_precision`` or ``amount_out_of_range``."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ServiceError("amount_invalid", "The amount is not a number.")
    if amount <= 0:
        raise ServiceError("amount_not_positive", "The amount must be greater than zero.")
    if amount >= AMOUNT_LIMIT:
        raise ServiceError("amount_out_of_range", f"The amount must be less than {AMOUNT_LIMIT:f}.")
    if amount != amount.quantize(Decimal(1).scaleb(-currency.precision), context=_ROUNDING_FREE):
        raise ServiceError(
            "amount_precision",
            f"{currency.code} amounts have at most {currency.precision} decimal places.",
            details={"currency": currency.code, "precision": currency.precision},
        )
    return amount


# --- Ledger accounts ------------------------------------------------------------------


_USER_KINDS = (AccountKind.AVAILABLE, AccountKind.LOCKED)
_ACCOUNT_FIELDS = ["id", "user_id", "currency_id", "kind"]


def _sibling(key: AccountKey) -> AccountKey | None:
    """The user's other balance of the same currency (locked for available and back)."""
    user_id, currency_id, kind = key
    if user_id is None:
        return None
    return (user_id, currency_id, AccountKind.LOCKED if kind == AccountKind.AVAILABLE else AccountKind.AVAILABLE)


def _account(key: AccountKey, pk: int) -> LedgerAccount:
    return LedgerAccount.from_db(DEFAULT_DB_ALIAS, _ACCOUNT_FIELDS, (pk, *key))


def _accounts_fetch(keys: set[AccountKey]) -> dict[AccountKey, LedgerAccount]:
    """The accounts of ``keys`` that exist; the ids found are remembered once the
    transaction commits (``wallets.account_ids``)."""
    if not keys:
        return {}
    found = sql.accounts_select(
        owner_keys={user_id or 0 for user_id, _, _ in keys},
        currency_ids={currency_id for _, currency_id, _ in keys},
        kinds={kind for _, _, kind in keys},
    )
    by_key = {(a.user_id, a.currency_id, a.kind): a for a in found}
    account_ids.remember_after_commit((key, account.pk) for key, account in by_key.items())
    return {key: by_key[key] for key in keys if key in by_key}


def ledger_accounts_ensure(
    *, keys: Iterable[AccountKey], currencies: Iterable[Currency] = ()
) -> dict[AccountKey, LedgerAccount]:
    """The ledger accounts for ``keys`` (user id or None, currency id, kind), created on
    demand, with their currency loaded (pass the ``currencies`` you hold to save a
    query). A user's available and locked accounts of a currency are created together,
    so a posting can always lock the other one too (see ``_apply``). At most four
    queries for any number of keys, none when this process knows their ids already
    (``wallets.account_ids``)."""
    wanted = set(keys)
    for user_id, _, kind in wanted:
        if (user_id is None) != (kind not in _USER_KINDS):
            raise ValueError(f"account kind {kind!r} does not fit owner {user_id!r}")
    pairs = wanted | {sibling for key in wanted if (sibling := _sibling(key)) is not None}
    found: dict[AccountKey, LedgerAccount] = {}
    for key in pairs:
        pk = account_ids.get(key)
        if pk is not None:
            found[key] = _account(key, pk)
    if len(found) < len(pairs):
        found |= _accounts_fetch(pairs - found.keys())
    missing = pairs - found.keys()
    if missing:
        LedgerAccount.objects.bulk_create(
            [LedgerAccount(user_id=u, currency_id=c, kind=k) for u, c, k in sorted(missing, key=str)],
            ignore_conflicts=True,
        )
        found |= _accounts_fetch(missing)
        if missing - found.keys():
            raise RuntimeError(f"could not create ledger accounts {sorted(missing - found.keys(), key=str)}")
    found = {key: found[key] for key in wanted}
    known = {currency.pk: currency for currency in currencies}
    unknown = {currency_id for _, currency_id, _ in wanted} - known.keys()
    if unknown:
        known |= catalog.currencies_by_id(unknown)
    for account in found.values():
        account.currency = known[account.currency_id]
    return found


def _user_account(user: User, currency: Currency, kind: str) -> LedgerAccount:
    key = (user.pk, currency.pk, kind)
    return ledger_accounts_ensure(keys=[key], currencies=[currency])[key]


def system_account(*, currency: Currency, kind: str) -> LedgerAccount:
    """The platform's ``external``, ``fees`` or ``adjustment`` account for ``currency``."""
    key = (None, currency.pk, kind)
    return ledger_accounts_ensure(keys=[key], currencies=[currency])[key]


# --- Posting --------------------------------------------------------------------------


def _currencies_of(postings: Sequence[Posting]) -> dict[int, Currency]:
    currencies: dict[int, Currency] = {}
    missing: set[int] = set()
    for posting in postings:
        for leg in posting.legs:
            account = leg.account
            if LedgerAccount.currency.is_cached(account):
                currencies[account.currency_id] = account.currency
            else:
                missing.add(account.currency_id)
    missing -= currencies.keys()
    if missing:
        currencies |= catalog.currencies_by_id(missing)
    return currencies


_ENTRY_KINDS = frozenset(EntryKind.values)
_REFERENCE_MAX = JournalEntry._meta.get_field("reference").max_length
_KEY_MAX = JournalEntry._meta.get_field("idempotency_key").max_length


def _validate(postings: Sequence[Posting]) -> dict[int, Currency]:
    """Check every posting before touching the database; returns the currencies by id."""
    currencies = _currencies_of(postings)
    keys = [p.idempotency_key for p in postings if p.idempotency_key]
    if len(keys) != len(set(keys)):
        raise ValueError("the same idempotency key appears twice in one batch")
    quanta = {pk: Decimal(1).scaleb(-currency.precision) for pk, currency in currencies.items()}
    with localcontext(MONEY):
        for posting in postings:
            if posting.kind not in _ENTRY_KINDS:
                raise ValueError(f"unknown entry kind {posting.kind!r}")
            if len(posting.reference) > _REFERENCE_MAX or len(posting.idempotency_key or "") > _KEY_MAX:
                raise ValueError("a reference or idempotency key longer than its column")
            if len(posting.legs) < 2:
                raise ValueError("a journal entry needs at least two legs")
            totals: dict[int, Decimal] = defaultdict(Decimal)
            for leg in posting.legs:
                if leg.account.id is None:
                    raise ValueError("legs must refer to saved ledger accounts")
                amount, currency_id = leg.amount, leg.account.currency_id
                if not isinstance(amount, Decimal) or not amount.is_finite():
                    raise ServiceError("amount_invalid", "The amount is not a number.")
                if not amount:
                    raise ValueError("a leg cannot be zero")
                currency = currencies[currency_id]
                if not currency.is_active:
                    raise ServiceError(
                        "currency_disabled", f"{currency.code} is disabled.", details={"currency": currency.code}
                    )
                magnitude = amount.copy_abs()
                if magnitude >= AMOUNT_LIMIT or magnitude != magnitude.quantize(
                    quanta[currency_id], context=_ROUNDING_FREE
                ):
                    amount_validate(amount=magnitude, currency=currency)  # raises the specific error
                totals[currency_id] += amount
            unbalanced = {currencies[c].code: str(t) for c, t in totals.items() if t}
            if unbalanced:
                raise ValueError(f"legs do not sum to zero per currency: {unbalanced}")
    return currencies


def _replayed_entries(postings: Sequence[Posting], entries: list[JournalEntry]) -> dict[int, JournalEntry]:
    """Insert the entries; for keys stored before (or by a concurrent transaction that
    won the race) return the stored entries by posting index instead."""
    skipped = sql.entries_insert(entries, skip_stored_keys=any(p.idempotency_key for p in postings))
    if not skipped:
        return {}
    keys = [entries[i].idempotency_key for i in sorted(skipped)]
    stored = JournalEntry.objects.filter(idempotency_key__in=keys).in_bulk(field_name="idempotency_key")
    if stored.keys() != set(keys):  # cannot happen: a skipped key is stored and committed
        raise Conflict("idempotency_conflict", "Concurrent requests with the same keys; try again.")
    return {i: stored[entries[i].idempotency_key] for i in skipped}


def _check_replays(postings: Sequence[Posting], replayed: dict[int, JournalEntry]) -> None:
    if not replayed:
        return
    stored_legs: dict[int, list[tuple[int, Decimal]]] = defaultdict(list)
    for entry_id, account_id, amount in LedgerLeg.objects.filter(
        entry_id__in=[e.pk for e in replayed.values()]
    ).values_list("entry_id", "account_id", "amount"):
        stored_legs[entry_id].append((account_id, amount))
    for index, entry in replayed.items():
        posting = postings[index]
        asked = sorted((leg.account.pk, leg.amount) for leg in posting.legs)
        if (entry.kind, entry.reference, sorted(stored_legs[entry.pk])) != (posting.kind, posting.reference, asked):
            raise Conflict(
                "idempotency_conflict",
                "This idempotency key was already used for a different request.",
                details={"idempotency_key": entry.idempotency_key},
            )


def _refusal(balance: Decimal, user_id: int | None, currency: Currency, kind: str, index: int) -> ServiceError:
    if user_id is not None and balance < 0:
        shortfall = balance.copy_negate().normalize()
        return ServiceError(
            "insufficient_funds",
            f"Insufficient {currency.code} funds: {shortfall:f} more is needed in the {kind} balance.",
            details={"currency": currency.code, "account": kind, "posting": index},
        )
    return ServiceError(
        "amount_out_of_range",
        f"The resulting {currency.code} balance is beyond the ledger's range.",
        details={"currency": currency.code, "posting": index},
    )


def _refused(
    posting: Posting, balances: dict[int, Decimal], currencies: dict[int, Currency], index: int
) -> ServiceError | None:
    """Why ``posting`` cannot leave its accounts at ``balances`` (a user balance below
    zero, any balance beyond the ledger's range); None when it can."""
    for leg in posting.legs:
        account = leg.account
        balance, user_id = balances[account.id], account.user_id
        if (user_id is not None and balance < 0) or balance.copy_abs() >= AMOUNT_LIMIT:
            return _refusal(balance, user_id, currencies[account.currency_id], account.kind, index)
    return None


def _lock(postings: Sequence[Posting]) -> tuple[dict[int, AccountKey], dict[int, tuple[Decimal, AccountKey]]]:
    """Lock the balance rows the postings move (and the users' other balances of those
    currencies); returns what each id must be and what was locked."""
    expected: dict[int, AccountKey] = {}
    for posting in postings:
        for leg in posting.legs:
            account = leg.account
            key = (account.user_id, account.currency_id, account.kind)
            if expected.setdefault(account.id, key) != key:  # two keys for one id: one of them is wrong
                account_ids.forget()
                raise ValueError(f"unknown ledger accounts {[account.id]}: the id stands for two accounts")
    # The users' other balances of these currencies are locked too (when this process knows
    # their ids), so the balance events carry both balances as this posting leaves them,
    # with nothing read back after the commit.
    for key in list(expected.values()):
        sibling = _sibling(key)
        pk = account_ids.get(sibling) if sibling is not None else None
        if pk is not None:
            expected.setdefault(pk, sibling)
    locked = sql.accounts_lock(expected.keys())
    if any(locked.get(pk, (None, None))[1] != key for pk, key in expected.items()):
        account_ids.forget()  # an id this process remembered is wrong: the database changed under it
        wrong = sorted(pk for pk, key in expected.items() if locked.get(pk, (None, None))[1] != key)
        raise ValueError(f"unknown ledger accounts {wrong}")
    return expected, locked


def _write(
    expected: dict[int, AccountKey],
    locked: dict[int, tuple[Decimal, AccountKey]],
    balances: dict[int, Decimal],
    legs: list[tuple[int, int, Decimal, Decimal]],
    currencies: dict[int, Currency],
) -> None:
    """Write the legs and the balances that changed, and announce them after the commit
    (the announcements are worked out while the legs are written, see
    ``kootabase.db.writes_streamed``)."""
    sql.legs_insert(legs)
    # Each user whose balances moved hears of it once, after the commit (wallets.events).
    users: dict[tuple[int, int], dict[str, Decimal]] = defaultdict(dict)
    for pk, (user_id, currency_id, kind) in expected.items():
        if user_id is not None:
            users[(user_id, currency_id)][kind] = balances[pk]
    balances_changed(changes=users, currencies=currencies)
    changed = {pk: balance for pk, balance in balances.items() if balance != locked[pk][0]}
    if changed:
        sql.balances_update(changed)


def _apply(
    postings: Sequence[Posting],
    entries: Sequence[JournalEntry],
    currencies: dict[int, Currency],
    positions: Sequence[int],
) -> None:
    """Lock the balance rows, check, write the legs and the balances. ``positions``: each
    posting's index in the caller's batch, for the errors."""
    expected, locked = _lock(postings)
    balances = {pk: balance for pk, (balance, _) in locked.items()}
    legs: list[tuple[int, int, Decimal, Decimal]] = []
    with localcontext(MONEY):
        for posting, entry, position in zip(postings, entries, positions, strict=True):
            entry_id = entry.id
            for leg in posting.legs:
                pk = leg.account.id
                balance = balances[pk] = balances[pk] + leg.amount
                legs.append((entry_id, pk, leg.amount, balance))
            refusal = _refused(posting, balances, currencies, position)
            if refusal is not None:
                raise refusal
    _write(expected, locked, balances, legs, currencies)


def _entry(posting: Posting) -> JournalEntry:
    """The posting's journal entry, unsaved."""
    return model_build(
        JournalEntry,
        {"kind": posting.kind, "reference": posting.reference, "idempotency_key": posting.idempotency_key or None},
    )


def _post(postings: Sequence[Posting], *, savepoint: bool = True) -> list[JournalEntry]:
    postings = list(postings)
    if not postings:
        return []
    currencies = _validate(postings)
    entries = [_entry(p) for p in postings]
    # The services below call this inside their own atomic block, which rolls back on any
    # error: they skip the savepoint (two round trips per posting).
    with transaction.atomic(savepoint=savepoint):
        replayed = _replayed_entries(postings, entries)
        _check_replays(postings, replayed)
        fresh = [i for i in range(len(postings)) if i not in replayed]
        if fresh:
            _apply([postings[i] for i in fresh], [entries[i] for i in fresh], currencies, fresh)
    return [replayed.get(i, entry) for i, entry in enumerate(entries)]


def _post_each(postings: Sequence[Posting]) -> list[JournalEntry | ServiceError]:
    postings = list(postings)
    keys = [p.idempotency_key for p in postings if p.idempotency_key]
    if len(keys) != len(set(keys)):
        raise ValueError("the same idempotency key appears twice in one batch")
    outcomes: list[JournalEntry | ServiceError | None] = [None] * len(postings)
    currencies: dict[int, Currency] = {}
    for index, posting in enumerate(postings):
        try:
            currencies |= _validate([posting])
        except ServiceError as exc:
            outcomes[index] = exc
    todo = [i for i, outcome in enumerate(outcomes) if outcome is None]
    with transaction.atomic(savepoint=False):
        # Which postings replay a stored key must be known before any is checked: a
        # replay moves nothing, so it must not count in the balances the others see.
        keyed = {postings[i].idempotency_key: i for i in todo if postings[i].idempotency_key}
        if keyed:
            stored = JournalEntry.objects.filter(idempotency_key__in=list(keyed)).in_bulk(field_name="idempotency_key")
            replayed = {keyed[key]: entry for key, entry in stored.items()}
            _check_replays(postings, replayed)
            outcomes = [replayed.get(i, outcome) for i, outcome in enumerate(outcomes)]
            todo = [i for i in todo if i not in replayed]
        if not todo:
            return outcomes  # type: ignore[return-value]
        expected, locked = _lock([postings[i] for i in todo])
        balances = {pk: balance for pk, (balance, _) in locked.items()}
        fitting: list[int] = []
        moves: list[list[tuple[int, Decimal, Decimal]]] = []
        with localcontext(MONEY):
            for index in todo:
                posting = postings[index]
                after: dict[int, Decimal] = {}
                rows = []
                for leg in posting.legs:
                    pk = leg.account.id
                    balance = after[pk] = after.get(pk, balances[pk]) + leg.amount
                    rows.append((pk, leg.amount, balance))
                refusal = _refused(posting, after, currencies, index)
                if refusal is not None:
                    outcomes[index] = refusal  # counted nowhere: the next posting sees the balances without it
                    continue
                balances.update(after)
                fitting.append(index)
                moves.append(rows)
        if fitting:
            entries = [_entry(postings[i]) for i in fitting]
            if sql.entries_insert(entries, skip_stored_keys=bool(keyed)):
                # A concurrent transaction stored one of the keys after they were looked up.
                raise Conflict("idempotency_conflict", "Concurrent requests with the same keys; try again.")
            legs = [
                (entry.id, pk, amount, balance)
                for entry, rows in zip(entries, moves, strict=True)
                for pk, amount, balance in rows
            ]
            _write(expected, locked, balances, legs, currencies)
            for index, entry in zip(fitting, entries, strict=True):
                outcomes[index] = entry
    return outcomes  # type: ignore[return-value]


@retry_on_deadlock
def ledger_post_each(*, postings: Sequence[Posting]) -> list[JournalEntry | ServiceError]:
    """Post each of ``postings`` that can be posted, in one transaction (the caller's, if
    it has one) with a constant number of queries; returns an entry or an error for each,
    in the order given.

    The postings are taken in order, each checked against the balances the ones before
    it that were posted left: one that would leave a user balance negative, or is
    invalid itself, is refused with its error (``insufficient_funds``, ``amount_precision``
    ...), writes nothing and counts for nothing. A posting whose idempotency key is
    already stored returns the stored entry and moves nothing, as in ``ledger_post_batch``.
    """
    return _post_each(postings)


@retry_on_deadlock
def ledger_post_batch(*, postings: Sequence[Posting], savepoint: bool = True) -> list[JournalEntry]:
    """Post many journal entries in one transaction with a constant number of queries.

    Returns the entries in the order given. A posting whose idempotency key is already
    stored returns the stored entry and moves nothing (``idempotency_conflict`` when its
    legs differ). If any posting fails (``insufficient_funds`` ...) nothing is posted,
    and a caller's enclosing transaction may go on (the batch runs in a savepoint).
    ``savepoint=False`` for a caller whose whole transaction is rolled back on any error
    (the matcher's batch): two round trips fewer, and a failure leaves the caller's
    transaction unusable.
    """
    return _post(postings, savepoint=savepoint)


@retry_on_deadlock
def ledger_post(
    *, kind: str, legs: Sequence[Leg], reference: str = "", idempotency_key: str | None = None
) -> JournalEntry:
    """Post one journal entry (see ``ledger_post_batch``)."""
    posting = Posting(kind=kind, legs=legs, reference=reference, idempotency_key=idempotency_key)
    return _post([posting])[0]


def _post_one(kind: str, legs: Sequence[Leg], reference: str = "", idempotency_key: str | None = None) -> JournalEntry:
    """``ledger_post`` for the services here, inside their own atomic block."""
    posting = Posting(kind=kind, legs=legs, reference=reference, idempotency_key=idempotency_key)
    return _post([posting], savepoint=False)[0]


# --- Holds and settlement -------------------------------------------------------------


def _move(
    user: User,
    currency: Currency,
    amount: Decimal,
    debit: str,
    credit: str,
    kind: str,
    reference: str,
    idempotency_key: str | None,
) -> JournalEntry:
    """Move ``amount`` between two of the user's balances of ``currency`` (a hold, a release)."""
    amount = amount_validate(amount=amount, currency=currency)
    keys = [(user.pk, currency.pk, debit), (user.pk, currency.pk, credit)]
    accounts = ledger_accounts_ensure(keys=keys, currencies=[currency])
    return _post_one(
        kind=kind,
        legs=[Leg(accounts[keys[0]], amount.copy_negate()), Leg(accounts[keys[1]], amount)],
        reference=reference,
        idempotency_key=idempotency_key,
    )


@retry_on_deadlock
def funds_hold(
    *,
    user: User,
    currency: Currency,
    amount: Decimal,
    reference: str = "",
    idempotency_key: str | None = None,
    savepoint: bool = True,
) -> JournalEntry:
    """Move ``amount`` from the user's available balance to their locked balance.

    Inside a caller's transaction the hold runs in a savepoint, so a refused hold leaves
    that transaction usable. ``savepoint=False`` for a caller whose whole transaction is
    rolled back on any error (an order's placement): two round trips fewer."""
    with transaction.atomic(savepoint=savepoint):
        return _move(
            user,
            currency,
            amount,
            AccountKind.AVAILABLE,
            AccountKind.LOCKED,
            EntryKind.HOLD,
            reference,
            idempotency_key,
        )


@retry_on_deadlock
@transaction.atomic
def funds_release(
    *, user: User, currency: Currency, amount: Decimal, reference: str = "", idempotency_key: str | None = None
) -> JournalEntry:
    """Move ``amount`` from the user's locked balance back to their available balance."""
    return _move(
        user, currency, amount, AccountKind.LOCKED, AccountKind.AVAILABLE, EntryKind.RELEASE, reference, idempotency_key
    )


@retry_on_deadlock
@transaction.atomic
def funds_settle(
    *,
    user: User,
    currency: Currency,
    amount: Decimal,
    destination: LedgerAccount,
    kind: str,
    reference: str = "",
    idempotency_key: str | None = None,
) -> JournalEntry:
    """Pay ``amount`` out of the user's locked balance into ``destination`` (another
    user's available account for a trade, the external account for a withdrawal, the
    fees account for a fee)."""
    amount = amount_validate(amount=amount, currency=currency)
    if destination.currency_id != currency.pk:
        raise ValueError("the destination account holds another currency")
    locked = _user_account(user, currency, AccountKind.LOCKED)
    return _post_one(
        kind=kind,
        legs=[Leg(locked, amount.copy_negate()), Leg(destination, amount)],
        reference=reference,
        idempotency_key=idempotency_key,
    )


# --- Idempotent business records ------------------------------------------------------


def _once(model: type[M], *, key: dict[str, Any], compared: dict[str, Any], create: Callable[[], M]) -> M:
    """``create()``, or the row a previous or concurrent request stored under the same
    idempotency ``key``.

    ``create`` runs the service's whole transaction, whose insert of the row carrying the
    key fails on the unique index when the key was used (a concurrent duplicate waits on
    the index, then fails). The failure rolls the whole transaction back, and the stored
    row is read after it: no savepoint around the insert (two round trips fewer on every
    request). ``idempotency_conflict`` when the stored row differs in a ``compared`` field.
    """
    try:
        return create()
    except IntegrityError:
        stored = model.objects.filter(**key).first()
        if stored is None:
            raise
    if any(getattr(stored, name) != value for name, value in compared.items()):
        raise Conflict(
            "idempotency_conflict",
            "This idempotency key was already used for a different request.",
            details={"idempotency_key": str(key["idempotency_key"])},
        )
    return stored


# --- Transfers ------------------------------------------------------------------------


@retry_on_deadlock
def transfer_create(
    *, sender: User, recipient_email: str, currency_code: str, amount: Decimal, idempotency_key: str
) -> Transfer:
    """Pay ``amount`` from the sender's available balance to the recipient's, unless an AML
    rule flags it: then the amount is held in the sender's balance and the transfer stays
    in ``review`` until compliance releases or rejects it (``aml.services``).

    The same ``idempotency_key`` again returns the first transfer and moves nothing.
    Errors: ``unknown_currency``, ``currency_disabled``, ``amount_*``,
    ``unknown_recipient``, ``self_transfer``, ``kyc_fiat_not_allowed``, ``kyc_limit_exceeded``,
    ``kyc_price_unavailable``, ``insufficient_funds``, ``idempotency_conflict``.
    """
    user_check_not_frozen(user=sender)
    currency = currency_get_enabled(code=currency_code, purpose="transfers")
    amount = amount_validate(amount=amount, currency=currency)
    recipient = user_get_by_email(email=recipient_email)
    if recipient is None:
        raise ServiceError("unknown_recipient", "No active user has this email.")
    if recipient.pk == sender.pk:
        raise ServiceError("self_transfer", "You cannot transfer to yourself.")
    key = {"sender_id": sender.pk, "idempotency_key": idempotency_key}
    compared = {"recipient_id": recipient.pk, "currency_id": currency.pk, "amount": amount}

    @transaction.atomic
    def create() -> Transfer:
        accounts = ledger_accounts_ensure(
            keys=[(sender.pk, currency.pk, AccountKind.AVAILABLE), (recipient.pk, currency.pk, AccountKind.AVAILABLE)],
            currencies=[currency],
        )
        transfer = sql.row_insert(Transfer(**key, **compared))
        kyc_check_transfer(user=sender, currency=currency, transfer=transfer)  # the KYC tier, under the KYC lock
        from aml.services import transfer_screen  # aml builds on this module

        if transfer_screen(transfer=transfer, sender=sender, recipient=recipient, currency=currency) is not None:
            return transfer  # flagged: the amount is held and the transfer waits for compliance
        _post_one(
            kind=EntryKind.TRANSFER,
            legs=[
                Leg(accounts[(sender.pk, currency.pk, AccountKind.AVAILABLE)], amount.copy_negate()),
                Leg(accounts[(recipient.pk, currency.pk, AccountKind.AVAILABLE)], amount),
            ],
            reference=transfer.reference,
        )
        return transfer

    return _once(Transfer, key=key, compared=compared, create=create)


# --- Manual adjustments ---------------------------------------------------------------


@retry_on_deadlock
def adjustment_post(
    *,
    user: User,
    currency: Currency,
    amount: Decimal,
    direction: Literal["credit", "debit"],
    reason: str,
    actor: str,
    created_by: User | None = None,
    idempotency_key: str | None = None,
) -> Adjustment:
    """Credit or debit a user's available balance against the adjustment account:
    how an operator books a fiat deposit or a correction. ``reason`` and ``actor``
    (who did it) are recorded with it."""
    if direction not in ("credit", "debit"):
        raise ServiceError("direction_invalid", "The direction is credit or debit.")
    if not reason.strip():
        raise ServiceError("reason_required", "Say why this adjustment is made.")
    amount = amount_validate(amount=amount, currency=currency)
    signed = amount if direction == "credit" else amount.copy_negate()
    compared = {"user_id": user.pk, "currency_id": currency.pk, "amount": signed}
    extra = {"reason": reason.strip(), "actor": actor, "created_by": created_by}
    key = {"idempotency_key": idempotency_key} if idempotency_key else {}

    @transaction.atomic
    def create() -> Adjustment:
        accounts = ledger_accounts_ensure(
            keys=[(user.pk, currency.pk, AccountKind.AVAILABLE), (None, currency.pk, AccountKind.ADJUSTMENT)],
            currencies=[currency],
        )
        adjustment = sql.row_insert(Adjustment(**key, **compared, **extra))
        _post_one(
            kind=EntryKind.ADJUSTMENT,
            legs=[
                Leg(accounts[(user.pk, currency.pk, AccountKind.AVAILABLE)], signed),
                Leg(accounts[(None, currency.pk, AccountKind.ADJUSTMENT)], signed.copy_negate()),
            ],
            reference=adjustment.reference,
        )
        audit_record(
            action=actions.ADJUSTMENT_POSTED,
            actor=created_by,
            target=adjustment,
            details={
                "user": user.email,
                "direction": direction,
                "amount": f"{amount:f}",
                "currency": currency.code,
                "reason": adjustment.reason,
                "by": actor,
            },
        )
        return adjustment

    return _once(Adjustment, key=key, compared=compared, create=create) if key else create()


def currency_create(
    *,
    code: str,
    name: str,
    kind: str,
    precision: int,
    deposits_enabled: bool = True,
    withdrawals_enabled: bool = True,
    trading_enabled: bool = True,
    transfers_enabled: bool = True,
) -> Currency:
    """List a new currency. ``currency_exists`` if the code is taken."""
    currency = Currency(
        code=code,
        name=name,
        kind=kind,
        precision=precision,
        deposits_enabled=deposits_enabled,
        withdrawals_enabled=withdrawals_enabled,
        trading_enabled=trading_enabled,
        transfers_enabled=transfers_enabled,
    )
    currency.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            currency.save(force_insert=True)
    except IntegrityError as exc:
        raise Conflict("currency_exists", f"The currency {code} exists already.") from exc
    return currency


# --- Audit ----------------------------------------------------------------------------

AUDIT_MAX_FINDINGS = 1000
_AUDIT_CHUNK = 2000


def _id_chunks(queryset: models.QuerySet, fields: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of ``queryset`` (first field: the id) in ascending id chunks (keyset paging)."""
    last = 0
    while True:
        rows = list(queryset.filter(pk__gt=last).order_by("pk").values_list(*fields)[:_AUDIT_CHUNK])
        if not rows:
            return
        yield rows
        last = rows[-1][0]


class _Findings:
    """Violations found, the first ``AUDIT_MAX_FINDINGS`` of them kept in full."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []
        self.total = 0

    def add(self, check: str, message: str, **details: Any) -> None:
        if len(self.items) < AUDIT_MAX_FINDINGS:
            self.items.append({"check": check, "message": message, **{k: str(v) for k, v in details.items()}})
        self.total += 1


def _audit_entries(findings: _Findings) -> tuple[int, int]:
    """Every entry has legs and they sum to zero per currency."""
    entries = legs = 0
    for chunk in _id_chunks(JournalEntry.objects.all(), ("pk",)):
        ids = [row[0] for row in chunk]
        sums: dict[int, dict[str, Decimal]] = {pk: defaultdict(Decimal) for pk in ids}
        for entry_id, code, amount in LedgerLeg.objects.filter(entry_id__in=ids).values_list(
            "entry_id", "account__currency__code", "amount"
        ):
            sums[entry_id][code] += amount
            legs += 1
        entries += len(ids)
        for entry_id, totals in sums.items():
            if not totals:
                findings.add("entry_has_legs", f"Entry {entry_id} has no legs.", entry=entry_id)
            for code, total in totals.items():
                if total:
                    findings.add(
                        "entry_balanced",
                        f"Entry {entry_id} does not balance in {code}: its legs sum to {total:f}.",
                        entry=entry_id,
                        currency=code,
                        sum=f"{total:f}",
                    )
    return entries, legs


def _audit_accounts(findings: _Findings) -> int:
    """Every balance equals the sum of its legs (and each leg's balance_after the running
    sum); no user balance is negative; per currency all balances sum to zero."""
    accounts = 0
    per_currency: dict[str, Decimal] = defaultdict(Decimal)
    fields = ("pk", "user_id", "currency__code", "kind", "balance")
    for chunk in _id_chunks(LedgerAccount.objects.all(), fields):
        running = {row[0]: Decimal(0) for row in chunk}
        wrong_after: set[int] = set()
        for leg_id, account_id, amount, balance_after in (
            LedgerLeg.objects.filter(account_id__in=list(running))
            .order_by("account_id", "pk")
            .values_list("pk", "account_id", "amount", "balance_after")
        ):
            running[account_id] += amount
            if running[account_id] != balance_after and account_id not in wrong_after:
                wrong_after.add(account_id)
                findings.add(
                    "balance_after",
                    f"Leg {leg_id} of account {account_id} says the balance became {balance_after:f}, "
                    f"its legs sum to {running[account_id]:f}.",
                    account=account_id,
                    leg=leg_id,
                )
        for pk, user_id, code, kind, balance in chunk:
            accounts += 1
            per_currency[code] += balance
            owner = f"user {user_id}" if user_id else "platform"
            if balance != running[pk]:
                findings.add(
                    "balance_matches_legs",
                    f"Account {pk} ({owner} {code} {kind}) holds {balance:f}, its legs sum to {running[pk]:f}.",
                    account=pk,
                    balance=f"{balance:f}",
                    legs_sum=f"{running[pk]:f}",
                )
            if user_id is not None and balance < 0:
                findings.add(
                    "user_balance_not_negative",
                    f"Account {pk} ({owner} {code} {kind}) is negative: {balance:f}.",
                    account=pk,
                    balance=f"{balance:f}",
                )
    for code, total in sorted(per_currency.items()):
        if total:
            findings.add(
                "currency_sums_to_zero",
                f"The {code} balances of all accounts sum to {total:f}, not zero.",
                currency=code,
                sum=f"{total:f}",
            )
    return accounts


@contextmanager
def snapshot_read() -> Iterator[None]:
    """A transaction whose reads all see one snapshot: REPEATABLE READ on MySQL/MariaDB
    (the sessions run READ COMMITTED), set for the block's own transaction when it is the
    outermost one (a transaction in progress cannot change its level: inside a caller's,
    the caller's level holds)."""
    connection = connections[DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block and connection.vendor == "mysql":
        # Applies to the next transaction, which is the block's (kootabase/db_backends/mysql
        # begins it with START TRANSACTION; nothing runs between).
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    with transaction.atomic():
        yield


def ledger_audit_run(*, store: bool = True) -> AuditRun:
    """Prove the ledger's invariants and report each violation.

    Reads one consistent snapshot (REPEATABLE READ on MySQL/MariaDB, which does not block
    writers), sums in Python with exact decimals, and keeps memory bounded by reading in
    id-ordered chunks. Stores the result as an ``AuditRun`` unless ``store`` is false.
    """
    started = timezone.now()
    findings = _Findings()
    with snapshot_read(), localcontext(MONEY):
        entries, legs = _audit_entries(findings)
        accounts = _audit_accounts(findings)
    run = AuditRun(
        started_at=started,
        finished_at=timezone.now(),
        ok=findings.total == 0,
        entries_checked=entries,
        legs_checked=legs,
        accounts_checked=accounts,
        violations=findings.total,
        findings=findings.items,
    )
    if store:
        run.save()
    if findings.total:
        logger.error("Ledger audit found %d violation(s)", findings.total)
    return run
