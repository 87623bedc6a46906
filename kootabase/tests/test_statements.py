"""Statements compiled once: the ORM's SQL, parameters and converted rows, without its
per-call work."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from kootabase.statements import Many, Statement
from wallets import services
from wallets.models import Currency, Transfer

AMOUNTS = ("1.5", "0.000001", "12345678.123456", "7")


@pytest.fixture
def transfers(db):
    usdt = services.currency_create(code="USDT", name="Tether", kind=Currency.Kind.CRYPTO, precision=6)
    alice = User.objects.create_user(email="alice@example.com", password=None)
    bob = User.objects.create_user(email="bob@example.com", password=None)
    start = timezone.now() - timedelta(hours=2)
    made = []
    for i, amount in enumerate(AMOUNTS):
        transfer = Transfer.objects.create(
            sender=alice, recipient=bob, currency=usdt, amount=Decimal(amount), idempotency_key=f"k{i}"
        )
        Transfer.objects.filter(pk=transfer.pk).update(created_at=start + timedelta(minutes=20 * i))
        made.append(Transfer.objects.get(pk=transfer.pk))
    return alice, usdt, made


def window(user_id, since, until, currency_id):
    return Transfer.objects.filter(
        sender_id=user_id, created_at__gte=since, created_at__lte=until, currency_id=currency_id
    ).order_by("id")


FIELDS = {
    "user_id": Transfer._meta.get_field("sender"),
    "since": Transfer._meta.get_field("created_at"),
    "until": Transfer._meta.get_field("created_at"),
    "currency_id": Transfer._meta.get_field("currency"),
}


def test_rows_and_count_equal_the_orms_for_every_window(transfers):
    alice, usdt, made = transfers
    statement = Statement(lambda **v: window(**v).values_list("id", "amount", "created_at"), **FIELDS)
    times = [t.created_at for t in made]
    for since, until in [(times[0], times[-1]), (times[1], times[2]), (times[1] + timedelta(seconds=1), times[3])]:
        values = {"user_id": alice.pk, "since": since, "until": until, "currency_id": usdt.pk}
        expected = list(window(**values).values_list("id", "amount", "created_at"))
        assert statement.rows(**values) == expected
        assert statement.count(**values) == len(expected)
    rows = statement.rows(user_id=alice.pk, since=times[0], until=times[-1], currency_id=usdt.pk)
    assert [amount for _, amount, _ in rows] == [Decimal(a) for a in AMOUNTS]  # exact, as Decimal
    assert all(isinstance(at, type(times[0])) and at.tzinfo is not None for _, _, at in rows)


def test_the_orm_builds_it_once(transfers):
    alice, usdt, made = transfers
    calls = []

    def build(**values):
        calls.append(values)
        return window(**values).values_list("id")

    statement = Statement(build, **FIELDS)
    values = {"user_id": alice.pk, "since": made[0].created_at, "until": made[-1].created_at, "currency_id": usdt.pk}
    statement.count(**values)
    built = len(calls)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert statement.count(**values) == len(AMOUNTS)
    assert len(calls) == built  # no further building
    assert len(queries.captured_queries) == 3


def test_a_query_whose_sql_depends_on_a_value_is_refused(transfers):
    statement = Statement(
        lambda user_id: Transfer.objects.filter(sender_id__in=list(range(user_id % 3 + 1))).values_list("id"),
        user_id=Transfer._meta.get_field("sender"),
    )
    with pytest.raises(ValueError, match="user_id"):
        statement.rows(user_id=1)


def test_a_value_used_twice_is_refused(transfers):
    statement = Statement(
        lambda user_id: Transfer.objects.filter(sender_id=user_id, recipient_id=user_id).values_list("id"),
        user_id=Transfer._meta.get_field("sender"),
    )
    with pytest.raises(ValueError, match="exactly once"):
        statement.rows(user_id=1)


def test_whole_rows_come_back_as_the_orms_instances(transfers):
    alice, usdt, made = transfers
    values = {"user_id": alice.pk, "since": made[0].created_at, "until": made[-1].created_at, "currency_id": usdt.pk}
    statement = Statement(lambda **v: window(**v), **FIELDS)
    got, expected = statement.objects(**values), list(window(**values))
    assert [type(t) for t in got] == [Transfer] * len(AMOUNTS)
    assert [{k: v for k, v in vars(t).items() if k != "_state"} for t in got] == [
        {k: v for k, v in vars(t).items() if k != "_state"} for t in expected
    ]
    assert [(t._state.adding, t._state.db) for t in got] == [(False, "default")] * len(AMOUNTS)
    assert got[0].recipient.email == "bob@example.com"  # relations load as usual
    for partial in (
        window(**values).values_list("id"),
        window(**values).only("id"),
        window(**values).select_related("sender"),
    ):
        with pytest.raises(TypeError, match="whole rows"):
            Statement(lambda q=partial: q).objects()


def test_a_fixed_statement_read_through_a_named_index(transfers):
    """No named values: the query is fixed. ``index`` names the index on MariaDB/MySQL,
    leaves other backends' SQL as it is, and is refused when the model has no such index."""
    alice, _, _ = transfers
    fixed = Statement(
        lambda: Transfer.objects.filter(sender_id=alice.pk).order_by("id")[:2], index="wallets_transfer_sender_time"
    )
    assert [t.pk for t in fixed.objects()] == list(
        Transfer.objects.filter(sender_id=alice.pk).order_by("id")[:2].values_list("id", flat=True)
    )
    with CaptureQueriesContext(connection) as queries:
        fixed.objects()
    hinted = "FORCE INDEX" in queries.captured_queries[0]["sql"]
    assert hinted == (connection.vendor == "mysql")
    with pytest.raises(ValueError, match="no index"):
        Statement(lambda: Transfer.objects.all(), index="no_such_index").rows()
    with pytest.raises(ValueError, match="one table"):
        Statement(lambda: Transfer.objects.select_related("sender"), index="wallets_transfer_sender_time").rows()


def test_a_list_of_values_is_compiled_once_per_power_of_two(transfers):
    """A ``Many`` value (an ``__in`` list): the rows are the ORM's for every length, the
    statement is built for 1, 2, 4, 8 ... values, and a shorter list is padded."""
    _, usdt, made = transfers
    calls = []

    def build(ids, currency_id):
        calls.append(len(ids))
        return Transfer.objects.filter(pk__in=ids, currency_id=currency_id).order_by("id")

    statement = Statement(build, ids=Many(Transfer._meta.pk), currency_id=Transfer._meta.get_field("currency"))
    pks = [t.pk for t in made]
    for length in range(1, len(pks) + 1):
        for chosen in (pks[:length], pks[-length:][::-1]):
            got = statement.objects(ids=chosen, currency_id=usdt.pk)
            assert [t.pk for t in got] == sorted(chosen)
            assert [t.amount for t in got] == [Transfer.objects.get(pk=pk).amount for pk in sorted(chosen)]
    assert statement.rows(ids=[pks[0], pks[0], 987_654_321], currency_id=usdt.pk) == [
        tuple(Transfer.objects.filter(pk=pks[0]).values_list(*[f.attname for f in Transfer._meta.concrete_fields])[0])
    ]
    assert statement.count(ids=pks, currency_id=usdt.pk + 1) == 0
    assert sorted(set(calls)) == [1, 2, 4]  # 4 transfers: lists of 1, 2, 3 and 4 values
    with pytest.raises(ValueError, match="at least one"):
        statement.rows(ids=[], currency_id=usdt.pk)
    with pytest.raises(ValueError, match="at most one"):
        Statement(build, ids=Many(Transfer._meta.pk), currency_id=Many(Transfer._meta.get_field("currency")))
