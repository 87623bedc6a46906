"""The posting service: balanced legs, balances cached with the legs, no negatives,
idempotency, and the batch form's bounded query count."""

from decimal import Decimal, localcontext

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from kootabase.errors import ServiceError
from kyc.tests.helpers import kyc_verified
from wallets import services
from wallets.models import MONEY, AccountKind, EntryKind, JournalEntry, LedgerAccount, LedgerLeg
from wallets.services import Leg, Posting
from wallets.tests.factories import CurrencyFactory, UserFactory, fund

AVAILABLE, LOCKED = AccountKind.AVAILABLE, AccountKind.LOCKED


def account(user, currency, kind=AVAILABLE) -> LedgerAccount:
    key = (user.pk if user else None, currency.pk, kind)
    return services.ledger_accounts_ensure(keys=[key])[key]


def balance(user, currency, kind=AVAILABLE) -> Decimal:
    return LedgerAccount.objects.get(pk=account(user, currency, kind).pk).balance


@pytest.mark.django_db
def test_a_posting_writes_legs_and_balances_together(alice, bob, usdt):
    fund(alice, usdt, "100")
    entry = services.ledger_post(
        kind=EntryKind.TRANSFER,
        legs=[Leg(account(alice, usdt), Decimal("-30.5")), Leg(account(bob, usdt), Decimal("30.5"))],
        reference="test:1",
    )
    assert (balance(alice, usdt), balance(bob, usdt)) == (Decimal("69.5"), Decimal("30.5"))
    legs = list(entry.legs.order_by("pk").values_list("amount", "balance_after"))
    assert legs == [(Decimal("-30.5"), Decimal("69.5")), (Decimal("30.5"), Decimal("30.5"))]
    assert entry.kind == "transfer" and entry.reference == "test:1"
    assert services.ledger_audit_run().ok


@pytest.mark.django_db
def test_amounts_are_exact_at_full_precision(alice, bob):
    eth = CurrencyFactory(code="ETH", precision=18)
    big = Decimal("123456789012345678.123456789012345678")
    fund(alice, eth, big)
    kyc_verified(alice)  # ETH has no price here: only a tier without limits moves it
    services.transfer_create(
        sender=alice,
        recipient_email=bob.email,
        currency_code="ETH",
        amount=Decimal("0.000000000000000001"),
        idempotency_key="k",
    )
    with localcontext(MONEY):
        assert balance(alice, eth) == big - Decimal("0.000000000000000001")
    assert balance(bob, eth) == Decimal("0.000000000000000001")
    assert services.ledger_audit_run().ok


@pytest.mark.django_db
def test_insufficient_funds_changes_nothing(alice, bob, usdt, unchanged_ledger):
    fund(alice, usdt, "10")
    legs = [Leg(account(alice, usdt), Decimal("-10.000001")), Leg(account(bob, usdt), Decimal("10.000001"))]
    with unchanged_ledger(), pytest.raises(ServiceError) as exc:
        services.ledger_post(kind=EntryKind.TRANSFER, legs=legs)
    assert exc.value.code == "insufficient_funds"
    assert exc.value.details["currency"] == "USDT"


@pytest.mark.django_db
def test_system_accounts_may_go_negative(alice, usdt):
    external = services.system_account(currency=usdt, kind=AccountKind.EXTERNAL)
    legs = [Leg(external, Decimal(-5)), Leg(account(alice, usdt), Decimal(5))]
    services.ledger_post(kind=EntryKind.DEPOSIT, legs=legs)
    assert balance(None, usdt, AccountKind.EXTERNAL) == Decimal(-5)
    assert balance(alice, usdt) == Decimal(5)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amounts", "error"),
    [
        (["-1", "2"], ValueError),  # does not balance
        (["-1"], ValueError),  # a single leg
        (["0", "0"], ValueError),  # zero legs
        (["-0.0000001", "0.0000001"], "amount_precision"),  # USDT has 6 places
        (["-1000000000000000000", "1000000000000000000"], "amount_out_of_range"),
        (["NaN", "NaN"], "amount_invalid"),
    ],
)
def test_malformed_postings_are_refused(alice, bob, usdt, unchanged_ledger, amounts, error):
    fund(alice, usdt, "100")
    accounts = [account(alice, usdt), account(bob, usdt)]
    legs = [Leg(acc, Decimal(a)) for acc, a in zip(accounts, amounts, strict=False)]
    with unchanged_ledger():
        if isinstance(error, str):
            with pytest.raises(ServiceError) as exc:
                services.ledger_post(kind=EntryKind.TRANSFER, legs=legs)
            assert exc.value.code == error
        else:
            with pytest.raises(error):
                services.ledger_post(kind=EntryKind.TRANSFER, legs=legs)


@pytest.mark.django_db
def test_legs_must_balance_per_currency(alice, bob, usdt, btc):
    fund(alice, usdt, "100")
    fund(alice, btc, "1")
    with pytest.raises(ValueError, match="sum to zero"):
        services.ledger_post(
            kind=EntryKind.TRADE,
            legs=[Leg(account(alice, usdt), Decimal(-1)), Leg(account(bob, btc), Decimal(1))],
        )


@pytest.mark.django_db
def test_a_disabled_currency_moves_nothing(alice, bob, usdt, unchanged_ledger):
    fund(alice, usdt, "100")
    usdt.is_active = False
    usdt.save()
    legs = [Leg(account(alice, usdt), Decimal(-1)), Leg(account(bob, usdt), Decimal(1))]
    with unchanged_ledger(), pytest.raises(ServiceError) as exc:
        services.ledger_post(kind=EntryKind.TRANSFER, legs=legs)
    assert exc.value.code == "currency_disabled"


@pytest.mark.django_db
def test_the_same_idempotency_key_moves_money_once(alice, bob, usdt):
    fund(alice, usdt, "100")
    legs = [Leg(account(alice, usdt), Decimal(-7)), Leg(account(bob, usdt), Decimal(7))]
    first = services.ledger_post(kind=EntryKind.TRANSFER, legs=legs, reference="x", idempotency_key="pay-1")
    again = services.ledger_post(kind=EntryKind.TRANSFER, legs=legs, reference="x", idempotency_key="pay-1")
    assert again.pk == first.pk
    assert balance(bob, usdt) == Decimal(7)
    assert JournalEntry.objects.filter(idempotency_key="pay-1").count() == 1


@pytest.mark.django_db
def test_idempotency_keys_differing_in_case_are_two_keys(alice, bob, usdt):
    """On every backend, MariaDB's case-blind default collations included."""
    fund(alice, usdt, "100")
    legs = [Leg(account(alice, usdt), Decimal(-7)), Leg(account(bob, usdt), Decimal(7))]
    lower = services.ledger_post(kind=EntryKind.TRANSFER, legs=legs, reference="x", idempotency_key="pay-a")
    upper = services.ledger_post(kind=EntryKind.TRANSFER, legs=legs, reference="x", idempotency_key="PAY-A")
    assert lower.pk != upper.pk
    assert balance(bob, usdt) == Decimal(14)
    assert list(JournalEntry.objects.filter(idempotency_key="PAY-A").values_list("pk", flat=True)) == [upper.pk]


@pytest.mark.django_db
def test_a_keyed_hold_in_the_callers_transaction_takes_no_savepoint_and_moves_money_once(alice, usdt):
    fund(alice, usdt, "10")
    for _ in range(2):  # the second time the key is stored: the stored entry, nothing moved
        with CaptureQueriesContext(connection) as queries:  # inside the test's transaction
            entry = services.funds_hold(
                user=alice, currency=usdt, amount=Decimal(3), idempotency_key="order-hold:1", savepoint=False
            )
        assert not [q["sql"] for q in queries.captured_queries if "SAVEPOINT" in q["sql"].upper()]
    assert JournalEntry.objects.filter(idempotency_key="order-hold:1").get().pk == entry.pk
    assert (balance(alice, usdt), balance(alice, usdt, AccountKind.LOCKED)) == (Decimal(7), Decimal(3))
    assert services.ledger_audit_run(store=False).ok


@pytest.mark.django_db
def test_the_same_key_with_other_legs_is_a_conflict(alice, bob, usdt, unchanged_ledger):
    fund(alice, usdt, "100")
    a, b = account(alice, usdt), account(bob, usdt)
    services.ledger_post(kind="transfer", legs=[Leg(a, Decimal(-7)), Leg(b, Decimal(7))], idempotency_key="k")
    with unchanged_ledger(), pytest.raises(ServiceError) as exc:
        services.ledger_post(kind="transfer", legs=[Leg(a, Decimal(-8)), Leg(b, Decimal(8))], idempotency_key="k")
    assert (exc.value.code, exc.value.status) == ("idempotency_conflict", 409)


@pytest.mark.django_db
def test_ledger_rows_are_append_only(alice, usdt):
    fund(alice, usdt, "1")
    entry = JournalEntry.objects.get()
    leg = LedgerLeg.objects.first()
    for attempt in (entry.save, entry.delete, leg.save, leg.delete, LedgerLeg.objects.all().delete):
        with pytest.raises(TypeError, match="append-only"):
            attempt()
    with pytest.raises(TypeError, match="append-only"):
        JournalEntry.objects.update(kind="fee")


@pytest.mark.django_db
def test_the_database_refuses_a_negative_user_balance(alice, usdt):
    acc = account(alice, usdt)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(pk=acc.pk).update(balance=Decimal("-0.000000000000000001"))


@pytest.mark.django_db
def test_accounts_are_unique_per_owner_currency_and_kind(alice, usdt):
    account(alice, usdt)
    services.system_account(currency=usdt, kind=AccountKind.FEES)
    for duplicate in ({"user": alice, "kind": AVAILABLE}, {"user": None, "kind": AccountKind.FEES}):
        with pytest.raises(IntegrityError), transaction.atomic():
            LedgerAccount.objects.create(currency=usdt, **duplicate)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.create(currency=usdt, user=alice, kind=AccountKind.FEES)


# --- Holds, releases, settlement ------------------------------------------------------


@pytest.mark.django_db
def test_hold_release_and_settle(alice, bob, usdt):
    fund(alice, usdt, "100")
    services.funds_hold(user=alice, currency=usdt, amount=Decimal(60), reference="order:1")
    assert (balance(alice, usdt), balance(alice, usdt, LOCKED)) == (Decimal(40), Decimal(60))
    services.funds_release(user=alice, currency=usdt, amount=Decimal(10), reference="order:1")
    assert (balance(alice, usdt), balance(alice, usdt, LOCKED)) == (Decimal(50), Decimal(50))
    services.funds_settle(
        user=alice,
        currency=usdt,
        amount=Decimal(30),
        destination=account(bob, usdt),
        kind=EntryKind.TRADE,
        reference="trade:1",
    )
    fees = services.system_account(currency=usdt, kind=AccountKind.FEES)
    services.funds_settle(user=alice, currency=usdt, amount=Decimal("0.5"), destination=fees, kind=EntryKind.FEE)
    assert balance(alice, usdt, LOCKED) == Decimal("19.5")
    assert balance(bob, usdt) == Decimal(30)
    assert balance(None, usdt, AccountKind.FEES) == Decimal("0.5")
    assert list(JournalEntry.objects.values_list("kind", flat=True)) == [
        "adjustment",
        "hold",
        "release",
        "trade",
        "fee",
    ]
    assert services.ledger_audit_run().ok


@pytest.mark.django_db
@pytest.mark.parametrize("step", ["hold", "release", "settle"])
def test_holds_cannot_overdraw(alice, bob, usdt, unchanged_ledger, step):
    fund(alice, usdt, "10")
    services.funds_hold(user=alice, currency=usdt, amount=Decimal(4))
    calls = {
        "hold": lambda: services.funds_hold(user=alice, currency=usdt, amount=Decimal(7)),
        "release": lambda: services.funds_release(user=alice, currency=usdt, amount=Decimal(5)),
        "settle": lambda: services.funds_settle(
            user=alice, currency=usdt, amount=Decimal(5), destination=account(bob, usdt), kind=EntryKind.TRADE
        ),
    }
    account(bob, usdt)
    with unchanged_ledger(), pytest.raises(ServiceError) as exc:
        calls[step]()
    assert exc.value.code == "insufficient_funds"


# --- The batch form -------------------------------------------------------------------


def _trades(buyers, sellers, usdt, btc, count):
    """Trade-like postings: the buyer pays USDT from locked, the seller BTC from locked."""
    keys = [(u.pk, c.pk, k) for u in buyers + sellers for c in (usdt, btc) for k in (AVAILABLE, LOCKED)]
    accounts = services.ledger_accounts_ensure(keys=keys)

    def acc(user, currency, kind=AVAILABLE):
        return accounts[(user.pk, currency.pk, kind)]

    postings = []
    for i in range(count):
        buyer, seller = buyers[i % len(buyers)], sellers[i % len(sellers)]
        postings.append(
            Posting(
                kind=EntryKind.TRADE,
                reference=f"trade:{i}",
                idempotency_key=f"trade:{i}",
                legs=[
                    Leg(acc(buyer, usdt, LOCKED), Decimal("-10")),
                    Leg(acc(seller, usdt), Decimal("10")),
                    Leg(acc(seller, btc, LOCKED), Decimal("-0.001")),
                    Leg(acc(buyer, btc), Decimal("0.001")),
                ],
            )
        )
    return postings


@pytest.fixture
def traders(usdt, btc):
    buyers = [UserFactory() for _ in range(3)]
    sellers = [UserFactory() for _ in range(3)]
    for user in buyers:
        fund(user, usdt, "100000")
        services.funds_hold(user=user, currency=usdt, amount=Decimal(100000))
    for user in sellers:
        fund(user, btc, "10")
        services.funds_hold(user=user, currency=btc, amount=Decimal(10))
    return buyers, sellers


@pytest.mark.django_db
@pytest.mark.parametrize("count", [10, 200])
def test_the_batch_form_uses_a_bounded_number_of_queries(traders, usdt, btc, count, django_assert_max_num_queries):
    postings = _trades(*traders, usdt, btc, count)
    # Constant on MariaDB. SQLite caps a statement at 999 parameters, so Django splits
    # the multi-row INSERTs there: allow exactly those extra statements.
    extra = sum(
        -(-rows // connection.ops.bulk_batch_size(model._meta.concrete_fields[1:], range(rows))) - 1
        for model, rows in ((JournalEntry, count), (LedgerLeg, 4 * count))
    )
    with django_assert_max_num_queries(8 + extra):
        entries = services.ledger_post_batch(postings=postings)
    assert len(entries) == count
    assert [e.reference for e in entries] == [f"trade:{i}" for i in range(count)]
    assert LedgerLeg.objects.filter(entry__kind="trade").count() == 4 * count
    assert balance(traders[0][0], btc) == Decimal("0.001") * len(range(0, count, 3))
    assert services.ledger_audit_run().ok


@pytest.mark.django_db
def test_a_batch_is_all_or_nothing(traders, usdt, btc, unchanged_ledger):
    postings = _trades(*traders, usdt, btc, 5)
    buyer = traders[0][0]
    postings.append(
        Posting(
            kind=EntryKind.TRADE,
            legs=[Leg(account(buyer, usdt, LOCKED), Decimal("-1000000")), Leg(account(buyer, usdt), Decimal(1000000))],
        )
    )
    with unchanged_ledger(), pytest.raises(ServiceError) as exc:
        services.ledger_post_batch(postings=postings)
    assert exc.value.code == "insufficient_funds"
    assert exc.value.details["posting"] == 5


@pytest.mark.django_db
def test_a_batch_without_a_savepoint_posts_the_same_and_fails_its_callers_transaction(traders, usdt, btc):
    """``savepoint=False`` (the matcher's batch): no SAVEPOINT round trips, the same
    postings; a failure leaves the caller's transaction to be rolled back, not to go on."""
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            entries = services.ledger_post_batch(postings=_trades(*traders, usdt, btc, 4), savepoint=False)
        assert not [q["sql"] for q in queries.captured_queries if "SAVEPOINT" in q["sql"].upper()]
    assert [e.reference for e in entries] == [f"trade:{i}" for i in range(4)]
    assert services.ledger_audit_run().ok
    buyer = traders[0][0]
    overdraw = Posting(
        kind=EntryKind.TRADE,
        legs=[Leg(account(buyer, usdt, LOCKED), Decimal("-1000000")), Leg(account(buyer, usdt), Decimal(1000000))],
    )
    with transaction.atomic():
        with pytest.raises(ServiceError):
            services.ledger_post_batch(postings=[overdraw], savepoint=False)
        assert transaction.get_rollback()


@pytest.mark.django_db
def test_a_replayed_batch_moves_nothing_again(traders, usdt, btc):
    first = services.ledger_post_batch(postings=_trades(*traders, usdt, btc, 4))
    state = list(LedgerAccount.objects.order_by("pk").values_list("balance", flat=True))
    # the first four again plus two new ones: only the new ones move money
    again = services.ledger_post_batch(postings=_trades(*traders, usdt, btc, 6))
    assert [e.pk for e in again[:4]] == [e.pk for e in first]
    assert JournalEntry.objects.filter(kind="trade").count() == 6
    assert state != list(LedgerAccount.objects.order_by("pk").values_list("balance", flat=True))
    assert services.ledger_audit_run().ok


# --- Each posting on its own ----------------------------------------------------------


def _hold(user, currency, amount, reference=""):
    return Posting(
        kind=EntryKind.HOLD,
        reference=reference,
        legs=[Leg(account(user, currency), -Decimal(amount)), Leg(account(user, currency, LOCKED), Decimal(amount))],
    )


@pytest.mark.django_db
def test_each_posting_is_taken_in_order_and_a_refused_one_moves_nothing(alice, bob, usdt):
    fund(alice, usdt, "100")
    fund(bob, usdt, "10")
    entries_before = JournalEntry.objects.count()
    outcomes = services.ledger_post_each(
        postings=[
            _hold(alice, usdt, "60", "h:1"),
            _hold(alice, usdt, "60", "h:2"),  # 40 left: refused
            _hold(bob, usdt, "10", "h:3"),
            _hold(alice, usdt, "40", "h:4"),  # the refused one counted nothing: fits exactly
        ]
    )
    refused = outcomes[1]
    assert isinstance(refused, ServiceError)
    assert (refused.code, refused.details["currency"], refused.details["posting"]) == ("insufficient_funds", "USDT", 1)
    assert [e.reference for e in outcomes if isinstance(e, JournalEntry)] == ["h:1", "h:3", "h:4"]
    assert JournalEntry.objects.count() == entries_before + 3
    assert not JournalEntry.objects.filter(reference="h:2").exists()
    assert (balance(alice, usdt), balance(alice, usdt, LOCKED)) == (Decimal(0), Decimal(100))
    assert (balance(bob, usdt), balance(bob, usdt, LOCKED)) == (Decimal(0), Decimal(10))
    legs = list(LedgerLeg.objects.filter(entry__reference="h:4").order_by("pk").values_list("amount", "balance_after"))
    assert legs == [(Decimal(-40), Decimal(0)), (Decimal(40), Decimal(100))]
    assert services.ledger_audit_run().ok


@pytest.mark.django_db
def test_each_posting_refuses_a_bad_amount_on_its_own(alice, usdt):
    fund(alice, usdt, "100")
    outcomes = services.ledger_post_each(
        postings=[_hold(alice, usdt, "0.0000001"), _hold(alice, usdt, "5", "h:ok")]  # USDT has 6 places
    )
    assert isinstance(outcomes[0], ServiceError) and outcomes[0].code == "amount_precision"
    assert isinstance(outcomes[1], JournalEntry) and outcomes[1].reference == "h:ok"
    assert balance(alice, usdt) == Decimal(95)


@pytest.mark.django_db
def test_each_posting_all_refused_changes_nothing(alice, usdt, unchanged_ledger):
    fund(alice, usdt, "1")
    with unchanged_ledger():
        outcomes = services.ledger_post_each(postings=[_hold(alice, usdt, "2"), _hold(alice, usdt, "3")])
    assert [o.code for o in outcomes] == ["insufficient_funds", "insufficient_funds"]


@pytest.mark.django_db
def test_each_posting_replays_a_stored_key(alice, usdt):
    fund(alice, usdt, "100")
    keyed = Posting(kind=EntryKind.HOLD, legs=_hold(alice, usdt, "70").legs, idempotency_key="hold-once")
    first = services.ledger_post_each(postings=[keyed])[0]
    again = services.ledger_post_each(postings=[keyed, _hold(alice, usdt, "30")])
    assert again[0].pk == first.pk
    assert isinstance(again[1], JournalEntry)
    assert balance(alice, usdt) == Decimal(0)
    assert services.ledger_audit_run().ok


@pytest.mark.django_db
def test_an_insufficient_funds_message_names_the_shortfall_plainly(alice, usdt):
    fund(alice, usdt, "100")
    refused = services.ledger_post_each(postings=[_hold(alice, usdt, "9919999.82")])[0]
    assert refused.message == "Insufficient USDT funds: 9919899.82 more is needed in the available balance."
