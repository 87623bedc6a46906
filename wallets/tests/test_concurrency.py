"""Locking, deadlocks and idempotency under real concurrency (MariaDB)."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import OperationalError, connection, transaction
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from kootabase.errors import ServiceError
from kyc.tests.helpers import kyc_verified
from wallets import services
from wallets.locks import retry_on_deadlock
from wallets.models import AccountKind, EntryKind, LedgerAccount, Transfer
from wallets.services import Leg, Posting
from wallets.tests.factories import CurrencyFactory, UserFactory, fund

ACCOUNT_TABLE = "wallets_ledgeraccount"


def run_threads(count: int, target: Callable[[int], None], timeout: float = 30) -> list[BaseException]:
    """Run ``target(i)`` in ``count`` threads, each with its own connection; return what they raised."""
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a worker hung"
    return errors


def _ids(sql: str) -> set[int]:
    match = re.search(r"`id`\W* IN \(([^)]*)\)", sql)
    return {int(x) for x in match.group(1).split(",")} if match else set()


def assert_locks_rows_before_write(queries: list[dict]) -> int:
    """Every write to a balance row is preceded, in the same transaction, by a
    ``SELECT ... FOR UPDATE`` of that row ordered by id. Returns the writes checked."""
    locked: set[int] = set()
    writes = 0
    for query in queries:
        sql = query["sql"]
        if sql.startswith(("COMMIT", "ROLLBACK")):
            locked = set()
        elif sql.startswith("SELECT") and f"FROM `{ACCOUNT_TABLE}`" in sql and sql.endswith("FOR UPDATE"):
            in_order = re.search(rf"ORDER BY (1|`{ACCOUNT_TABLE}`.`id`) ASC FOR UPDATE$", sql)
            assert in_order, f"lock not in id order: {sql}"
            locked |= _ids(sql)
        elif re.match(rf"(UPDATE|INSERT INTO|DELETE FROM|REPLACE INTO) `{ACCOUNT_TABLE}`", sql):
            if sql.startswith("INSERT"):
                continue  # a new account with balance 0 (INSERT IGNORE): nothing to overwrite
            written = _ids(sql)
            assert written, f"cannot tell which balance rows this writes: {sql}"
            assert written <= locked, f"rows {sorted(written - locked)} written without FOR UPDATE first: {sql}"
            writes += 1
    return writes


@pytest.fixture
def funded(transactional_db):
    usdt = CurrencyFactory(code="USDT", precision=6)
    users = [UserFactory() for _ in range(4)]
    for user in users:
        fund(user, usdt, "1000")
    kyc_verified(*users)  # they send more than tier 0's 24 h limit
    return usdt, users


@pytest.mark.mariadb
def test_every_balance_write_is_locked_first(funded):
    usdt, (alice, bob, carol, _) = funded
    services.funds_hold(user=carol, currency=usdt, amount=Decimal(100))
    fees = services.system_account(currency=usdt, kind=AccountKind.FEES)
    with CaptureQueriesContext(connection) as ctx:
        services.transfer_create(
            sender=alice, recipient_email=bob.email, currency_code="USDT", amount=Decimal(5), idempotency_key="t1"
        )
        services.funds_hold(user=alice, currency=usdt, amount=Decimal(10))
        services.funds_release(user=alice, currency=usdt, amount=Decimal(4))
        services.funds_settle(user=alice, currency=usdt, amount=Decimal(1), destination=fees, kind=EntryKind.FEE)
        services.adjustment_post(user=bob, currency=usdt, amount=Decimal(3), direction="debit", reason="r", actor="t")
        accounts = services.ledger_accounts_ensure(
            keys=[(u.pk, usdt.pk, k) for u in (alice, carol) for k in (AccountKind.AVAILABLE, AccountKind.LOCKED)]
        )
        services.ledger_post_batch(
            postings=[
                Posting(
                    kind=EntryKind.TRADE,
                    legs=[
                        Leg(accounts[(carol.pk, usdt.pk, AccountKind.LOCKED)], Decimal(-2)),
                        Leg(accounts[(alice.pk, usdt.pk, AccountKind.AVAILABLE)], Decimal(2)),
                    ],
                )
                for _ in range(5)
            ]
        )
    assert assert_locks_rows_before_write(ctx.captured_queries) == 6


@pytest.mark.mariadb
def test_the_lock_check_catches_a_missing_lock(funded):
    _, (alice, *_) = funded
    account = LedgerAccount.objects.get(user=alice, kind=AccountKind.AVAILABLE)
    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        LedgerAccount.objects.filter(pk__in=[account.pk]).update(balance=account.balance)
    with pytest.raises(AssertionError, match="without FOR UPDATE"):
        assert_locks_rows_before_write(ctx.captured_queries)


@pytest.mark.mariadb
def test_concurrent_transfers_conserve_money_and_never_deadlock(funded):
    usdt, users = funded
    total = Decimal(4000)
    emails = [u.email for u in users]

    def trader(i: int) -> None:
        rng = random.Random(i)
        for n in range(40):
            sender, recipient = rng.sample(range(len(users)), 2)
            amount = Decimal(rng.randint(1, 600_000_000)).scaleb(-6)
            try:
                services.transfer_create(
                    sender=users[sender],
                    recipient_email=emails[recipient],
                    currency_code="USDT",
                    amount=amount,
                    idempotency_key=f"w{i}-{n}",
                )
            except ServiceError as exc:
                assert exc.code == "insufficient_funds", exc.code

    assert run_threads(6, trader) == []
    balances = LedgerAccount.objects.filter(user__isnull=False, currency=usdt).values_list("balance", flat=True)
    assert all(b >= 0 for b in balances)
    assert sum(balances) == total
    assert Transfer.objects.count() > 100
    audit = services.ledger_audit_run()
    assert audit.ok, audit.findings


@pytest.mark.mariadb
def test_concurrent_batches_and_transfers_over_the_same_accounts(funded):
    """The matcher's batches and users' transfers touch the same rows at once."""
    usdt, users = funded
    keys = [(u.pk, usdt.pk, AccountKind.AVAILABLE) for u in users]
    accounts = services.ledger_accounts_ensure(keys=keys)

    def batcher(i: int) -> None:
        rng = random.Random(100 + i)
        for _ in range(15):
            postings = []
            for _ in range(10):
                a, b = rng.sample(keys, 2)
                amount = Decimal(rng.randint(1, 5))
                legs = [Leg(accounts[a], -amount), Leg(accounts[b], amount)]
                postings.append(Posting(kind=EntryKind.TRADE, legs=legs))
            try:
                services.ledger_post_batch(postings=postings)
            except ServiceError as exc:
                assert exc.code == "insufficient_funds"

    def transferer(i: int) -> None:
        rng = random.Random(i)
        for n in range(30):
            a, b = rng.sample(users, 2)
            key = f"{i}-{n}"
            try:
                services.transfer_create(
                    sender=a, recipient_email=b.email, currency_code="USDT", amount=Decimal(3), idempotency_key=key
                )
            except ServiceError as exc:
                assert exc.code == "insufficient_funds"

    assert run_threads(6, lambda i: (batcher if i % 2 else transferer)(i)) == []
    total = LedgerAccount.objects.filter(user__isnull=False).aggregate(total=Sum("balance"))["total"]
    assert total == Decimal(4000)
    assert services.ledger_audit_run().ok


@pytest.mark.mariadb
def test_the_same_transfer_posted_concurrently_moves_money_once(funded):
    _, (alice, bob, *_) = funded
    barrier = threading.Barrier(8)
    results: list[int] = []

    def post(i: int) -> None:
        barrier.wait()
        transfer = services.transfer_create(
            sender=alice, recipient_email=bob.email, currency_code="USDT", amount=Decimal(250), idempotency_key="once"
        )
        results.append(transfer.pk)

    assert run_threads(8, post) == []
    assert len(set(results)) == 1 and len(results) == 8
    assert Transfer.objects.count() == 1
    assert LedgerAccount.objects.get(user=alice, kind="available").balance == Decimal(750)
    assert LedgerAccount.objects.get(user=bob, kind="available").balance == Decimal(1250)
    assert services.ledger_audit_run().ok


@pytest.mark.mariadb
def test_the_same_ledger_key_posted_concurrently_moves_money_once(funded):
    usdt, (alice, bob, *_) = funded
    keys = [(alice.pk, usdt.pk, AccountKind.AVAILABLE), (bob.pk, usdt.pk, AccountKind.AVAILABLE)]
    accounts = services.ledger_accounts_ensure(keys=keys)
    legs = [Leg(accounts[keys[0]], Decimal(-100)), Leg(accounts[keys[1]], Decimal(100))]
    barrier = threading.Barrier(6)
    entries: list[int] = []

    def post(i: int) -> None:
        barrier.wait()
        entries.append(services.ledger_post(kind=EntryKind.TRADE, legs=legs, idempotency_key="trade:1").pk)

    assert run_threads(6, post) == []
    assert len(set(entries)) == 1
    assert LedgerAccount.objects.get(pk=accounts[keys[1]].pk).balance == Decimal(1100)
    assert services.ledger_audit_run().ok


@pytest.mark.mariadb
def test_retry_on_deadlock_survives_a_real_deadlock(funded):
    """Two transactions lock two rows in opposite orders (what the ledger never does):
    MariaDB kills one with error 1213, the decorator runs it again, both complete."""
    _, (alice, bob, *_) = funded
    rows = list(
        LedgerAccount.objects.filter(user__in=[alice, bob], kind=AccountKind.AVAILABLE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    barrier = threading.Barrier(2)
    attempts = [0, 0]

    def lock_in_order(i: int) -> None:
        @retry_on_deadlock(attempts=5)
        def work() -> None:
            attempts[i] += 1
            first, second = rows if i == 0 else rows[::-1]
            with transaction.atomic():
                list(LedgerAccount.objects.select_for_update().filter(pk=first))
                if attempts[i] == 1:
                    barrier.wait(timeout=10)
                list(LedgerAccount.objects.select_for_update().filter(pk=second))

        work()

    assert run_threads(2, lock_in_order) == []
    assert sorted(attempts) == [1, 2]


def test_retry_on_deadlock_retries_only_lock_errors():
    calls = []

    @retry_on_deadlock(attempts=3, base_delay=0)
    def flaky(errors: list[int]) -> str:
        calls.append(1)
        if errors:
            raise OperationalError(errors.pop(0), "simulated")
        return "done"

    assert flaky([1213, 1205]) == "done" and len(calls) == 3
    calls.clear()
    with pytest.raises(OperationalError):
        flaky([1213, 1213, 1213])
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(OperationalError):
        flaky([2006])  # server gone away: not a lock error
    assert len(calls) == 1


@pytest.mark.django_db
def test_retry_on_deadlock_leaves_retries_to_the_outer_transaction():
    calls = []

    @retry_on_deadlock(base_delay=0)
    def inner() -> None:
        calls.append(1)
        raise OperationalError(1213, "simulated")

    with pytest.raises(OperationalError), transaction.atomic():
        inner()
    assert len(calls) == 1
