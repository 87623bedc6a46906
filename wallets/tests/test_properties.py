"""Property: any sequence of credits, debits, holds, releases, settlements and transfers
keeps every invariant of the audit after every step, and the balances equal a simple
model of what each successful operation should have done. A refused operation
changes nothing."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal, localcontext

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kootabase.errors import ServiceError
from kyc.tests.helpers import kyc_verified
from wallets import services
from wallets.models import AMOUNT_LIMIT, MONEY, AccountKind, EntryKind, LedgerAccount
from wallets.tests.factories import CurrencyFactory, UserFactory, ledger_state

USERS = 3
# code -> precision: a fiat, a typical coin, and one with 18 places and huge amounts
CURRENCIES = {"USD": 2, "BTC": 8, "ETH": 18}
AVAILABLE, LOCKED = AccountKind.AVAILABLE, AccountKind.LOCKED


OPERATIONS = ("credit", "debit", "hold", "release", "settle", "transfer")
SOURCE = {"debit": AVAILABLE, "hold": AVAILABLE, "transfer": AVAILABLE, "release": LOCKED, "settle": LOCKED}


def draw_operation(data: st.DataObject, model: Model) -> tuple:
    """An operation whose amount is often a share of the balance it draws on, so that
    most steps succeed, and sometimes anything at all (too much, too precise, huge)."""
    name = data.draw(st.sampled_from(OPERATIONS))
    funded = sorted((u, c) for (u, c, kind), v in model.balances.items() if v and kind == SOURCE.get(name))
    if funded and data.draw(st.sampled_from([True, True, True, False])):
        user, code = data.draw(st.sampled_from(funded))
    else:
        user, code = data.draw(st.integers(0, USERS - 1)), data.draw(st.sampled_from(sorted(CURRENCIES)))
    precision = CURRENCIES[code]
    units = int(model.balances[(user, code, SOURCE.get(name, AVAILABLE))].scaleb(precision))
    if name != "credit" and units >= 1 and data.draw(st.sampled_from([True, True, True, False])):
        amount = Decimal(data.draw(st.integers(1, units))).scaleb(-precision)
    else:
        amount = Decimal(data.draw(st.one_of(st.integers(1, 10**9), st.integers(1, 10**40)))).scaleb(-precision)
    other = (user + data.draw(st.sampled_from([1, 1, 2, 2, 0]))) % USERS  # now and then oneself
    key = data.draw(st.sampled_from(["a", "b", "c"]))
    return name, user, code, amount, other, key


class Model:
    """What the balances should be: a dict per (user, code, kind), nothing else."""

    def __init__(self) -> None:
        self.balances: dict[tuple[int, str, str], Decimal] = defaultdict(Decimal)
        self.transfers: dict[tuple[int, str], tuple[int, str, Decimal]] = {}

    def platform_adjustment(self, code: str) -> Decimal:
        """The adjustment account holds minus everything credited, plus everything debited."""
        return -sum((v for (_, c, _), v in self.balances.items() if c == code), Decimal(0))

    def expect(self, op: tuple) -> str | None:
        """Apply ``op`` to the model; return the error code the service must raise."""
        name, user, code, amount, other, key = op
        if amount >= AMOUNT_LIMIT:
            return "amount_out_of_range"
        b = self.balances
        moves: list[tuple[tuple[int, str, str], Decimal]] = []
        if name == "credit":
            moves = [((user, code, AVAILABLE), amount)]
        elif name == "debit":
            moves = [((user, code, AVAILABLE), -amount)]
        elif name == "hold":
            moves = [((user, code, AVAILABLE), -amount), ((user, code, LOCKED), amount)]
        elif name == "release":
            moves = [((user, code, LOCKED), -amount), ((user, code, AVAILABLE), amount)]
        elif name == "settle":
            moves = [((user, code, LOCKED), -amount), ((other, code, AVAILABLE), amount)]
        elif name == "transfer":
            if user == other:
                return "self_transfer"
            stored = self.transfers.get((user, key))
            if stored is not None:
                return None if stored == (other, code, amount) else "idempotency_conflict"
            moves = [((user, code, AVAILABLE), -amount), ((other, code, AVAILABLE), amount)]
        after = dict(b)
        for account, delta in moves:
            after[account] = after.get(account, Decimal(0)) + delta
        if any(after[account] < 0 for account, _ in moves):
            return "insufficient_funds"
        if any(abs(after[account]) >= AMOUNT_LIMIT for account, _ in moves):
            return "amount_out_of_range"
        if name == "credit" and self.platform_adjustment(code) - amount <= -AMOUNT_LIMIT:
            return "amount_out_of_range"  # the adjustment account's side
        b.update(after)
        if name == "transfer":
            self.transfers[(user, key)] = (other, code, amount)
        return None


def run(op: tuple, users: list, currencies: dict) -> None:
    name, user, code, amount, other, key = op
    u, currency = users[user], currencies[code]
    if name in ("credit", "debit"):
        services.adjustment_post(user=u, currency=currency, amount=amount, direction=name, reason="p", actor="test")
    elif name == "hold":
        services.funds_hold(user=u, currency=currency, amount=amount)
    elif name == "release":
        services.funds_release(user=u, currency=currency, amount=amount)
    elif name == "settle":
        destination = services.ledger_accounts_ensure(keys=[(users[other].pk, currency.pk, AVAILABLE)])
        services.funds_settle(
            user=u,
            currency=currency,
            amount=amount,
            destination=destination[(users[other].pk, currency.pk, AVAILABLE)],
            kind=EntryKind.TRADE,
        )
    elif name == "transfer":
        services.transfer_create(
            sender=u, recipient_email=users[other].email, currency_code=code, amount=amount, idempotency_key=key
        )


def observed(users: list) -> dict[tuple[int, str, str], Decimal]:
    index = {u.pk: i for i, u in enumerate(users)}
    rows = LedgerAccount.objects.filter(user__isnull=False).values_list("user_id", "currency__code", "kind", "balance")
    return {(index[u], code, kind): balance for u, code, kind, balance in rows if balance}


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), steps=st.integers(1, 15))
def test_random_operations_keep_every_invariant(data, steps):
    with transaction.atomic(), localcontext(MONEY):
        users = [UserFactory() for _ in range(USERS)]
        kyc_verified(*users)  # a tier without limits: these currencies have no price to value them
        currencies = {code: CurrencyFactory(code=code, precision=p) for code, p in CURRENCIES.items()}
        model = Model()
        for _ in range(steps):
            op = draw_operation(data, model)
            expected_error = model.expect(op)
            before = ledger_state()
            try:
                run(op, users, currencies)
                error = None
            except ServiceError as exc:
                error = exc.code
            if error is not None:
                # A refused operation may only have created empty accounts it needed.
                assert [row for row in ledger_state()[2] if row[1]] == [row for row in before[2] if row[1]]
                assert ledger_state()[:2] == before[:2]
            event(f"{op[0]}: {error or 'ok'}")
            assert error == expected_error, op
            audit = services.ledger_audit_run(store=False)
            assert audit.ok, audit.findings
            assert observed(users) == {k: v for k, v in model.balances.items() if v}
        transaction.set_rollback(True)
