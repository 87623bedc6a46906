"""Balance events: every posting that moves a user's balance tells that user once, after
the commit, with both balances of each currency it touched (wallets.events)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from kootabase.errors import ServiceError
from wallets import services
from wallets.models import AccountKind, EntryKind
from wallets.services import Leg, Posting
from wallets.tests.events import UserEvents, as_decimals, balances_now
from wallets.tests.factories import UserFactory, fund

D = Decimal


@pytest.fixture
def after_commit(django_capture_on_commit_callbacks):
    """Run the block's on-commit callbacks at its end, as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def test_hold_release_and_settle_each_send_both_balances(alice, usdt, after_commit):
    fund(alice, usdt, "100")
    events = UserEvents(alice)
    with after_commit():
        services.funds_hold(user=alice, currency=usdt, amount=D("30"), reference="order-hold:1")
    [held] = events.take(alice)
    assert held == {
        "type": "user.balances",
        "balances": [{"currency": "USDT", "available": "70.000000", "locked": "30.000000"}],
    }

    with after_commit():
        services.funds_release(user=alice, currency=usdt, amount=D("10"), reference="release:1")
    assert [as_decimals(m) for m in events.take(alice)] == [{"USDT": (D(80), D(20))}]

    fees = services.system_account(currency=usdt, kind=AccountKind.FEES)
    with after_commit():
        services.funds_settle(user=alice, currency=usdt, amount=D("5"), destination=fees, kind=EntryKind.FEE)
    assert [as_decimals(m) for m in events.take(alice)] == [{"USDT": (D(80), D(15))}]
    assert balances_now(alice) == {"USDT": (D(80), D(15))}


def test_a_transfer_tells_both_sides(alice, bob, usdt, after_commit):
    fund(alice, usdt, "50")
    fund(bob, usdt, "1")
    services.funds_hold(user=bob, currency=usdt, amount=D("0.25"))
    events = UserEvents(alice, bob)
    with after_commit():
        services.transfer_create(
            sender=alice, recipient_email=bob.email, currency_code="USDT", amount=D("12.5"), idempotency_key="t-1"
        )
    [sent], [received] = events.take(alice), events.take(bob)
    assert as_decimals(sent) == {"USDT": (D("37.5"), D(0))}
    assert as_decimals(received) == {"USDT": (D("13.25"), D("0.25"))}  # the untouched locked balance is read too

    # The same key again moves nothing and says nothing.
    with after_commit():
        services.transfer_create(
            sender=alice, recipient_email=bob.email, currency_code="USDT", amount=D("12.5"), idempotency_key="t-1"
        )
    assert events.take(alice) == [] and events.take(bob) == []


def test_an_adjustment_credit_and_debit_are_announced(alice, btc, after_commit):
    events = UserEvents(alice)
    with after_commit():
        fund(alice, btc, "2")
    with after_commit():
        services.adjustment_post(
            user=alice, currency=btc, amount=D("0.5"), direction="debit", reason="correction", actor="test"
        )
    assert [as_decimals(m) for m in events.take(alice)] == [{"BTC": (D(2), D(0))}, {"BTC": (D("1.5"), D(0))}]
    assert events.take(alice) == []


def test_a_batch_sends_one_message_per_user_with_each_currency_once(alice, bob, usdt, btc, after_commit):
    fund(alice, usdt, "1000")
    fund(bob, btc, "10")
    keys = [
        (u.pk, c.pk, k) for u in (alice, bob) for c in (usdt, btc) for k in (AccountKind.AVAILABLE, AccountKind.LOCKED)
    ]
    accounts = services.ledger_accounts_ensure(keys=keys, currencies=[usdt, btc])

    def acc(user, currency, kind):
        return accounts[(user.pk, currency.pk, kind)]

    postings = []
    for i in range(20):  # twenty trade-like entries: alice buys BTC from bob, from held funds
        postings.append(
            Posting(
                kind=EntryKind.HOLD,
                legs=[Leg(acc(alice, usdt, "available"), D(-10)), Leg(acc(alice, usdt, "locked"), D(10))],
                reference=f"hold:{i}",
            )
        )
        postings.append(
            Posting(
                kind=EntryKind.HOLD,
                legs=[Leg(acc(bob, btc, "available"), D("-0.1")), Leg(acc(bob, btc, "locked"), D("0.1"))],
                reference=f"hold-b:{i}",
            )
        )
        postings.append(
            Posting(
                kind=EntryKind.TRADE,
                legs=[
                    Leg(acc(alice, usdt, "locked"), D(-10)),
                    Leg(acc(bob, usdt, "available"), D(10)),
                    Leg(acc(bob, btc, "locked"), D("-0.1")),
                    Leg(acc(alice, btc, "available"), D("0.1")),
                ],
                reference=f"trade:{i}",
            )
        )
    events = UserEvents(alice, bob)
    with after_commit():
        services.ledger_post_batch(postings=postings)
    [for_alice], [for_bob] = events.take(alice), events.take(bob)
    assert [b["currency"] for b in for_alice["balances"]] == ["BTC", "USDT"]
    assert as_decimals(for_alice) == {"BTC": (D(2), D(0)), "USDT": (D(800), D(0))} == balances_now(alice)
    assert as_decimals(for_bob) == {"BTC": (D(8), D(0)), "USDT": (D(200), D(0))} == balances_now(bob)


def test_nothing_is_sent_for_what_is_rolled_back(alice, bob, usdt, after_commit, unchanged_ledger):
    fund(alice, usdt, "10")
    events = UserEvents(alice, bob)
    with after_commit(), unchanged_ledger(), pytest.raises(ServiceError) as refused:
        services.transfer_create(
            sender=alice, recipient_email=bob.email, currency_code="USDT", amount=D(11), idempotency_key="t-2"
        )
    assert refused.value.code == "insufficient_funds"

    with after_commit(), transaction.atomic():
        services.funds_hold(user=alice, currency=usdt, amount=D(1))
        try:
            with transaction.atomic():  # a savepoint: rolled back, its event with it
                services.funds_hold(user=alice, currency=usdt, amount=D(2))
                raise RuntimeError("undo")
        except RuntimeError:
            pass
    assert [as_decimals(m) for m in events.take(alice)] == [{"USDT": (D(9), D(1))}]
    assert events.take(bob) == []


@pytest.mark.django_db(transaction=True)
def test_a_real_commit_sends_the_event_and_a_rollback_does_not(usdt):
    carol = UserFactory(email="carol@example.com")
    fund(carol, usdt, "5")
    events = UserEvents(carol)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.funds_hold(user=carol, currency=usdt, amount=D(1))
        raise RuntimeError("roll back")
    assert events.take(carol) == []
    services.funds_hold(user=carol, currency=usdt, amount=D(2))
    assert [as_decimals(m) for m in events.take(carol)] == [{"USDT": (D(3), D(2))}]


def test_once_the_accounts_are_known_a_transfer_locks_the_other_balances_and_reads_nothing_back(
    alice, bob, usdt, after_commit
):
    fund(alice, usdt, "50")
    fund(bob, usdt, "1")
    services.funds_hold(user=bob, currency=usdt, amount=D("0.25"))
    events = UserEvents(alice, bob)
    with after_commit():  # the first transfer: the process learns the accounts' ids at its commit
        services.transfer_create(
            sender=alice, recipient_email=bob.email, currency_code="USDT", amount=D("10"), idempotency_key="t-1"
        )
    events.take(alice), events.take(bob)
    with CaptureQueriesContext(connection) as queries, after_commit():
        services.transfer_create(
            sender=alice, recipient_email=bob.email, currency_code="USDT", amount=D("2.5"), idempotency_key="t-2"
        )
    account_reads = [q["sql"] for q in queries.captured_queries if "wallets_ledgeraccount" in q["sql"]]
    assert len(account_reads) == 2, account_reads  # the lock and the balance update, nothing else
    lock, update = account_reads
    assert lock.startswith("SELECT") and update.startswith("UPDATE")
    assert "FOR UPDATE" in lock or not connection.features.has_select_for_update
    assert [as_decimals(m) for m in events.take(alice)] == [{"USDT": (D("37.5"), D(0))}]
    assert [as_decimals(m) for m in events.take(bob)] == [{"USDT": (D("13.25"), D("0.25"))}]
    assert balances_now(bob) == {"USDT": (D("13.25"), D("0.25"))}
