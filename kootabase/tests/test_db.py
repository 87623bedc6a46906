"""rows_update and rows_insert write exactly what the ORM would, in chunks the backend accepts."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounts.models import User
from kootabase.db import row_update_where, rows_insert, rows_update
from orders.models import Market


@pytest.mark.django_db
def test_rows_update_writes_exact_decimals_and_text():
    from orders import demo

    demo.seed()
    rows = list(Market.objects.order_by("pk"))
    rows[0].tick_size, rows[1].tick_size = Decimal("0.000000000000000001"), Decimal("123456789.5")
    rows[0].status, rows[1].status = Market.Status.HALTED, Market.Status.CANCEL_ONLY
    rows_update(Market, rows, ["tick_size", "status"])
    fresh = list(Market.objects.order_by("pk").values_list("tick_size", "status"))
    assert fresh == [(Decimal("0.000000000000000001"), "halted"), (Decimal("123456789.5"), "cancel-only")]


@pytest.mark.django_db
def test_rows_update_splits_large_updates():
    users = [User(email=f"u{i}@example.com") for i in range(1200)]
    User.objects.bulk_create(users)
    users = list(User.objects.order_by("pk"))
    for i, user in enumerate(users):
        user.name, user.phone_number = f"name {i}", "" if i % 2 else "+14155550123"
    rows_update(User, users, ["name", "phone_number"])
    assert list(User.objects.order_by("pk").values_list("name", flat=True)) == [f"name {i}" for i in range(1200)]
    assert User.objects.filter(phone_number="+14155550123").count() == 600


@pytest.mark.django_db
def test_rows_insert_stores_what_bulk_create_stores_and_sets_primary_keys():
    from audit.models import AuditEvent

    def event(i: int) -> AuditEvent:
        return AuditEvent(action=f"test.{i}", target_type="thing", target_id=str(i), details={"n": i, "d": "0.1"})

    fast, orm = [event(i) for i in range(5)], [event(i) for i in range(5)]
    rows_insert(AuditEvent, fast)
    AuditEvent.objects.bulk_create(orm)
    fields = ("action", "target_type", "target_id", "details")
    stored = list(AuditEvent.objects.order_by("pk").values_list(*fields))
    assert stored[:5] == stored[5:]
    assert all(e.created_at is not None and not e._state.adding for e in fast)  # auto_now_add filled
    if fast[0].pk is not None:  # the backend returns inserted rows
        assert [e.pk for e in fast] == list(AuditEvent.objects.order_by("pk").values_list("pk", flat=True))[:5]


@pytest.mark.django_db
def test_rows_insert_splits_large_inserts():
    users = [User(email=f"bulk{i}@example.com", password="!") for i in range(1200)]
    rows_insert(User, users)
    assert User.objects.filter(email__startswith="bulk").count() == 1200


@pytest.mark.django_db
def test_values_that_need_escaping_are_stored_as_given():
    """On MySQL/MariaDB the values are written into the statement's text
    (kootabase.db._mysql_render): quotes, backslashes, percent signs, NUL, non-ASCII,
    booleans and NULL must come back exactly as given."""
    from audit.models import AuditEvent

    texts = ["O'Brien", 'say "hi"', "back\\slash", "100% %s %%", "nul\x00byte", "snow ☃ 😀", "", "--; DROP"]
    users = [User(email=f"esc{i}@example.com", password="!", name=text) for i, text in enumerate(texts)]
    rows_insert(User, users)
    stored = list(User.objects.filter(email__startswith="esc").order_by("email"))
    assert [u.name for u in stored] == texts
    for user in stored:
        user.name, user.is_active = user.name[::-1] + "'\\", False
    rows_update(User, stored, ["name", "is_active"])
    assert list(User.objects.filter(email__startswith="esc").order_by("email").values_list("name", "is_active")) == [
        (text[::-1] + "'\\", False) for text in texts
    ]
    event = AuditEvent(action="test.escape", target_type="", target_id="", details={"q": "'%s\\", "n": None})
    rows_insert(AuditEvent, [event])
    assert AuditEvent.objects.get(action="test.escape").details == {"q": "'%s\\", "n": None}


@pytest.mark.django_db
def test_rows_update_writes_only_what_changed_since_before():
    """``before`` holds what the rows hold: a value equal to it is left out of the
    statement (the row keeps its column), a column no row changed is not written."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    User.objects.bulk_create([User(email=f"b{i}@example.com", name=f"stored {i}") for i in range(3)])
    users = list(User.objects.filter(email__startswith="b").order_by("pk"))
    before = {user.pk: (user.name, user.phone_number) for user in users}
    users[0].name = "changed"
    users[1].name = "not written"
    before[users[1].pk] = ("not written", "")  # as if the row held it already
    with CaptureQueriesContext(connection) as queries:
        rows_update(User, users, ["name", "phone_number"], before=before)
    assert list(User.objects.filter(email__startswith="b").order_by("pk").values_list("name", flat=True)) == [
        "changed",
        "stored 1",
        "stored 2",
    ]
    [update] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert "phone_number" not in update


@pytest.mark.django_db
def test_rows_insert_gives_the_rows_of_a_call_one_time():
    """``auto_now_add`` times are one time for the call, as a database default gives the
    rows of one statement; the objects carry it, and it is stored as given."""
    from audit.models import AuditEvent

    events = [AuditEvent(action=f"test.time.{i}", target_type="", target_id="", details={}) for i in range(3)]
    rows_insert(AuditEvent, events)
    assert len({event.created_at for event in events}) == 1
    stored = set(AuditEvent.objects.filter(action__startswith="test.time.").values_list("created_at", flat=True))
    assert stored == {events[0].created_at}


@pytest.mark.django_db
def test_rows_update_writes_times_and_keys_exactly():
    """The same time object on many rows is converted once and stored on each; distinct
    times keep their microseconds."""
    from datetime import UTC, datetime, timedelta

    User.objects.bulk_create([User(email=f"t{i}@example.com") for i in range(4)])
    users = list(User.objects.filter(email__startswith="t").order_by("pk"))
    shared = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    for i, user in enumerate(users):
        user.frozen_at = shared if i % 2 else shared + timedelta(microseconds=i)
    rows_update(User, users, ["frozen_at"])
    assert list(User.objects.filter(email__startswith="t").order_by("pk").values_list("frozen_at", flat=True)) == [
        user.frozen_at for user in users
    ]


@pytest.mark.django_db
def test_row_update_where_writes_and_counts_what_the_orms_update_does():
    """Rows matched, not rows changed (a value written again counts); exact decimals,
    times, text and NULL; a condition that matches nothing writes nothing."""
    from datetime import UTC, datetime

    from orders import demo

    demo.seed()
    eth, btc = Market.objects.order_by("pk")[:2]
    kept = Market.objects.filter(pk=btc.pk).values_list("tick_size", "status").get()
    values = {"tick_size": Decimal("0.000000000000000001"), "status": Market.Status.HALTED}
    assert row_update_where(Market, where={"id": eth.pk, "symbol": eth.symbol}, values=values) == 1
    assert row_update_where(Market, where={"id": eth.pk, "symbol": eth.symbol}, values=values) == 1  # unchanged
    assert row_update_where(Market, where={"id": eth.pk, "symbol": "NO-SUCH"}, values={"status": "active"}) == 0
    assert Market.objects.filter(pk=eth.pk).values_list("tick_size", "status").get() == (
        Decimal("0.000000000000000001"),
        "halted",
    )
    assert Market.objects.filter(pk=btc.pk).values_list("tick_size", "status").get() == kept
    user = User.objects.create(email="w@example.com", name="x")
    moment = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    assert row_update_where(User, where={"id": user.pk}, values={"frozen_at": moment, "name": "O'Brien \\ ü"}) == 1
    assert User.objects.filter(pk=user.pk).values_list("frozen_at", "name").get() == (moment, "O'Brien \\ ü")
    assert row_update_where(User, where={"id": user.pk}, values={"frozen_at": None}) == 1
    assert User.objects.get(pk=user.pk).frozen_at is None
    with pytest.raises(ValueError, match="NULL"):
        row_update_where(User, where={"frozen_at": None}, values={"name": "y"})
    with pytest.raises(TypeError, match="no column attribute"):
        row_update_where(User, where={"id": user.pk}, values={"nope": 1})


@pytest.mark.django_db
def test_model_from_db_builds_what_django_builds():
    """``Order.from_db`` (kootabase.db.model_from_db) gives an instance equal, field by
    field and in its state, to Django's own; a read with deferred columns takes Django's
    path and still loads them on access."""
    from django.db.models import Model

    from orders import demo
    from orders.models import Order
    from wallets.models import Currency

    demo.seed()
    user = User.objects.create(email="reader@example.com")
    market = Market.objects.get(symbol="ETH-USDT")
    quote = Currency.objects.get(code="USDT")
    order = Order.objects.create(
        user=user,
        client_order_id="c1",
        market=market,
        side="buy",
        type="limit",
        price=Decimal("100.5"),
        quantity=Decimal("0.25"),
        maker_fee_rate=Decimal("0.001"),
        taker_fee_rate=Decimal("0.002"),
        hold_currency=quote,
        hold_amount=Decimal("25.2"),
        hold_left=Decimal("25.2"),
    )
    fast = Order.objects.get(pk=order.pk)
    columns = [f.attname for f in Order._meta.concrete_fields]
    row = Order.objects.filter(pk=order.pk).values_list(*columns).get()
    slow = Model.from_db.__func__(Order, "default", columns, row)
    assert {k: v for k, v in vars(fast).items() if k != "_state"} == {
        k: v for k, v in vars(slow).items() if k != "_state"
    }
    assert (fast._state.adding, fast._state.db) == (False, "default") == (slow._state.adding, slow._state.db)
    assert fast.market == market and fast.user == user  # relations load as usual
    deferred = Order.objects.only("pk", "status").get(pk=order.pk)
    assert deferred.get_deferred_fields() and deferred.price == Decimal("100.5")
    names, row = ["id", "user_id", "status"], (order.pk, user.pk, "open")  # a partial row, in field order
    partial, django_partial = Order.from_db("default", names, row), Model.from_db.__func__(Order, "default", names, row)
    assert vars(partial).keys() == vars(django_partial).keys()
    assert {k: v for k, v in vars(partial).items() if k != "_state"} == {
        k: v for k, v in vars(django_partial).items() if k != "_state"
    }
    assert partial.get_deferred_fields() == django_partial.get_deferred_fields()
    assert (partial.user_id, partial.status, partial._state.adding) == (user.pk, "open", False)
    assert partial.price == Decimal("100.5")  # loaded on access


def test_model_build_builds_what_the_constructor_builds():
    """``model_build`` gives the instance ``cls(**values)`` gives: the values given, the
    constant defaults, a callable default called for each instance; unknown names refused."""
    from audit.models import AuditEvent
    from kootabase.db import model_build
    from orders.models import SwapQuote, Trade

    values = {"market_id": 1, "trade_no": 7, "price": Decimal("10.5"), "taker_side": "buy"}
    fast, slow = model_build(Trade, values), Trade(**values)
    assert {k: v for k, v in vars(fast).items() if k != "_state"} == {
        k: v for k, v in vars(slow).items() if k != "_state"
    }
    assert (fast._state.adding, fast._state.db) == (True, None)
    first, second = model_build(AuditEvent, {"action": "a"}), model_build(AuditEvent, {"action": "b"})
    assert first.details == {} and first.details is not second.details  # default=dict, called each time
    quotes = [model_build(SwapQuote, {}) for _ in range(2)]
    assert quotes[0].pk != quotes[1].pk  # default=uuid.uuid4
    with pytest.raises(TypeError, match="no fields"):
        model_build(Trade, {"markt_id": 1})


def test_model_build_keeps_a_related_instance_as_the_constructor_does():
    """A relation given by name with its instance sets the key attribute and keeps the
    instance, so reading it back costs no query; ``None`` clears it; a bare key under the
    relation's name is refused."""
    from accounts.models import User
    from kootabase.db import model_build
    from orders.models import Market, Order
    from wallets.models import Currency

    user, market, quote = User(pk=41, email="a@example.com"), Market(pk=7, symbol="X-Y"), Currency(pk=3, code="Y")
    values = {"user": user, "market": market, "hold_currency": quote, "side": "buy", "price": Decimal("1.5")}
    fast, slow = model_build(Order, values), Order(**values)
    plain = {k: v for k, v in vars(fast).items() if k not in ("_state", "client_order_id")}
    assert plain == {k: v for k, v in vars(slow).items() if k not in ("_state", "client_order_id")}
    assert (fast.user_id, fast.market_id, fast.hold_currency_id) == (41, 7, 3)
    # No database here: a relation that had to be read would fail.
    assert fast.user is user and fast.market is market and fast.hold_currency is quote
    assert model_build(Order, {"stop_price": None, "market": None}).market_id is None
    with pytest.raises(TypeError, match="takes an instance"):
        model_build(Order, {"market": 7})


@pytest.mark.django_db
def test_reads_through_a_named_index_return_what_the_queryset_returns():
    """``exists_using_index`` gives the queryset's own answer; on MariaDB/MySQL the
    statement names the index. An index the model does not declare is refused rather than
    sent. (Rows read through an index: ``kootabase.statements.Statement(index=...)``.)"""
    from django.db import connection
    from django.db.models import Exists

    from audit.models import AuditEvent
    from kootabase.db import exists_using_index, sql_using_index

    index = "audit_target_idx"
    AuditEvent.objects.bulk_create(
        [AuditEvent(action=f"test.{i}", target_type="thing", target_id=str(i % 2), details={}) for i in range(6)]
    )
    evens = AuditEvent.objects.filter(target_type="thing", target_id="0").order_by("-pk")[:2]
    sql, _ = sql_using_index(evens, index)
    assert ("FORCE INDEX" in sql) == (connection.vendor == "mysql")
    for target_id, expected in (("1", True), ("7", False)):
        matching = AuditEvent.objects.filter(target_type="thing", target_id=target_id)
        flags = AuditEvent.objects.annotate(named=exists_using_index(matching, index), plain=Exists(matching))
        assert [tuple(map(bool, row)) for row in flags.values_list("named", "plain")[:1]] == [(expected, expected)]
    with pytest.raises(ValueError, match="no index"):
        sql_using_index(evens, "no_such_index")


# --- writes_streamed ------------------------------------------------------------------


def _names(prefix: str) -> list[str]:
    return list(User.objects.filter(email__startswith=prefix).order_by("pk").values_list("name", flat=True))


@pytest.mark.django_db
def test_streamed_writes_land_in_order_and_a_read_sees_them():
    """Rows written, then rewritten, inside the block: each statement runs after the one
    before, and a read in the block waits for the write in flight."""
    from django.db import transaction

    from kootabase.db import writes_streamed

    users = [User(email=f"stream{i}@example.com", password="!", name="before") for i in range(300)]
    with transaction.atomic(), writes_streamed():
        rows_insert(User, users, keys=False)  # sent without waiting
        assert all(user.pk is None for user in users)
        stored = list(User.objects.filter(email__startswith="stream").order_by("email"))
        assert len(stored) == 300
        for user in stored:
            user.name = f"first {user.email}"
        rows_update(User, stored, ["name"])  # two statements (200 rows each at most), streamed
        for user in stored:
            user.name = f"second {user.email}"
        rows_update(User, stored, ["name"])  # after the first, so it wins
    assert sorted(_names("stream")) == sorted(f"second stream{i}@example.com" for i in range(300))


@pytest.mark.django_db(transaction=True)
@pytest.mark.mariadb
def test_a_streamed_write_that_fails_raises_in_the_block_and_rolls_back():
    from django.db import IntegrityError, connection, transaction

    from kootabase.db import _streams, writes_streamed

    rows_insert(User, [User(email="taken@example.com", password="!")])
    with pytest.raises(IntegrityError), transaction.atomic(), writes_streamed():
        rows_insert(User, [User(email="fresh@example.com", password="!")], keys=False)
        rows_insert(User, [User(email="taken@example.com", password="!")], keys=False)  # a duplicate
        assert _streams[id(connection)].in_flight  # Python goes on while the duplicate is in flight
    assert not User.objects.filter(email="fresh@example.com").exists()  # the whole transaction is undone
    assert User.objects.filter(email="taken@example.com").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.mariadb
def test_an_error_while_a_write_is_in_flight_leaves_the_connection_usable():
    from django.db import transaction

    from kootabase.db import writes_streamed

    with pytest.raises(ZeroDivisionError), transaction.atomic(), writes_streamed():
        rows_insert(User, [User(email="midway@example.com", password="!")], keys=False)
        raise ZeroDivisionError  # while the write is still in flight
    assert not User.objects.filter(email="midway@example.com").exists()
    rows_insert(User, [User(email="after@example.com", password="!")])
    assert User.objects.filter(email="after@example.com").exists()


# --- writes_deferred ------------------------------------------------------------------


@pytest.mark.django_db
def test_deferred_writes_land_in_order_and_a_read_first_sends_them():
    """Queued writes go out in their order, together; a statement on the connection before
    ``launch`` sends them and waits, so it sees them (elsewhere than MariaDB they run at once)."""
    from django.db import transaction

    from kootabase.db import writes_deferred

    users = [User(email=f"deferred{i}@example.com", password="!", name="before") for i in range(300)]
    with transaction.atomic():
        writes = writes_deferred()
        try:
            rows_insert(User, users, keys=False)
            stored = list(User.objects.filter(email__startswith="deferred").order_by("email"))  # sends the insert
            assert len(stored) == 300
            for name in ("first", "second"):
                for user in stored:
                    user.name = f"{name} {user.email}"
                rows_update(User, stored, ["name"])  # two statements each: four queued
            writes.launch()  # one text
            writes.wait()
        finally:
            writes.close()
    assert sorted(_names("deferred")) == sorted(f"second deferred{i}@example.com" for i in range(300))


@pytest.mark.django_db(transaction=True)
@pytest.mark.mariadb
def test_a_deferred_write_that_fails_stops_the_rest_and_raises_at_the_wait():
    from django.db import IntegrityError, ProgrammingError, connection, transaction

    from kootabase.db import _streams, writes_deferred

    rows_insert(User, [User(email="taken@example.com", password="!")])
    with pytest.raises(IntegrityError), transaction.atomic():
        writes = writes_deferred()
        try:
            rows_insert(User, [User(email="fresh@example.com", password="!")], keys=False)
            rows_insert(User, [User(email="taken@example.com", password="!")], keys=False)  # a duplicate
            rows_insert(User, [User(email="later@example.com", password="!")], keys=False)
            writes.launch()
            assert _streams[id(connection)].in_flight == 3  # Python goes on while they run
            writes.wait()
        finally:
            writes.close()
    assert not User.objects.filter(email__in=["fresh@example.com", "later@example.com"]).exists()
    assert User.objects.filter(email="taken@example.com").count() == 1
    with pytest.raises(ProgrammingError), connection.cursor() as cursor:  # one statement a text again
        cursor.execute("SELECT 1; SELECT 2")


@pytest.mark.django_db(transaction=True)
@pytest.mark.mariadb
def test_closing_deferred_writes_in_flight_leaves_the_connection_usable():
    from django.db import transaction

    from kootabase.db import writes_deferred

    with pytest.raises(ZeroDivisionError), transaction.atomic():
        writes = writes_deferred()
        try:
            rows_insert(User, [User(email="midway@example.com", password="!")], keys=False)
            rows_insert(User, [User(email="midway2@example.com", password="!")], keys=False)
            writes.launch()
            raise ZeroDivisionError  # while the writes are in flight
        finally:
            writes.close()
    assert not User.objects.filter(email__startswith="midway").exists()
    rows_insert(User, [User(email="after@example.com", password="!")])
    assert User.objects.filter(email="after@example.com").exists()


def test_values_are_written_as_they_are_only_where_django_prepares_them():
    """The shortcuts that write a string, a boolean or a null without the field's
    preparation are for fields whose preparation is Django's own: a field that transforms
    its values (the chain's raw amounts check and normalise theirs) is prepared as the ORM
    prepares it."""
    from accounts.models import User as Account
    from blockchain.models import OutgoingTx
    from kootabase.db import _prepared_by_django
    from orders.models import Order

    for field in ("side", "client_order_id", "post_only", "seq", "user", "created_at"):
        assert _prepared_by_django(Order._meta.get_field(field)), field
    assert _prepared_by_django(Account._meta.get_field("email"))
    assert not _prepared_by_django(OutgoingTx._meta.get_field("raw_amount"))
    assert not _prepared_by_django(Order._meta.get_field("price"))  # the ledger's MoneyField, its own shortcut


_SPELLINGS = [
    "1.5",
    "-2.25",
    "0.000000000000000001",
    "-0.000000000000000001",
    "999999999999999999.999999999999999999",
    "-999999999999999999.999999999999999999",
    "1000000000000000000",  # out of range
    "-1000000000000000000",
    "0.0000000000000000001",  # a 19th place
    "1.5000000000000000000000",  # exact, spelled with more places than the column has
    "1.50",
    "1E+2",
    "1E-18",
    "1E-19",
    "12345E-22",
    "NaN",
    "Infinity",
    "-Infinity",
    "0",
    "-0.000",
]


def assert_text_is_what_the_field_prepares(value: Decimal) -> None:
    """Values writes a Decimal that fits its column as written straight as text; the value
    stored, and what is refused, are exactly those of the field's own preparation."""
    from django.db import connection

    from kootabase.db import _decimal_text
    from wallets.models import MoneyField

    field = MoneyField()
    text = _decimal_text(value, field.max_digits - field.decimal_places, field.decimal_places)
    try:
        prepared = field.get_db_prep_value(value, connection)
    except ValueError:
        assert text is None
    else:
        assert text is None or Decimal(text) == Decimal(prepared)


@pytest.mark.parametrize("spelling", _SPELLINGS)
def test_an_amounts_sql_text_is_what_its_field_prepares(spelling):
    assert_text_is_what_the_field_prepares(Decimal(spelling))


@given(st.decimals(allow_nan=True, allow_infinity=True, places=None))
def test_an_amounts_sql_text_is_what_its_field_prepares_for_any_decimal(value):
    assert_text_is_what_the_field_prepares(value)


def test_an_amount_that_fits_as_written_is_its_own_text():
    from kootabase.db import _decimal_text

    assert _decimal_text(Decimal("1.50"), 18, 18) == "1.50"
    assert _decimal_text(Decimal("-12345.000000000000000001"), 18, 18) == "-12345.000000000000000001"
    assert _decimal_text(Decimal("1E+2"), 18, 18) == "100"
    assert _decimal_text(Decimal("1.5000000000000000000000"), 18, 18) == "1.5"  # arithmetic's trailing zeros
    assert _decimal_text(Decimal("7.0000000000000000000000"), 18, 18) == "7"
    assert _decimal_text(Decimal("1.0000000000000000001"), 18, 18) is None  # the field refuses it


@pytest.mark.django_db(transaction=True)
def test_a_statements_values_are_made_once_per_link_to_the_server():
    """A hot statement's column converters are made once per connection and statement (a
    placement of one order would otherwise make them for every statement: 35 columns an
    order row), and made again once the connection has reconnected: the text they write
    is escaped by the link they were made on."""
    from django.db import connection

    from kootabase.db import values_for

    fields = [Market._meta.get_field("symbol"), Market._meta.get_field("tick_size")]
    connection.ensure_connection()
    first = values_for(connection, ("test", Market), fields)
    assert values_for(connection, ("test", Market), fields) is first
    assert values_for(connection, ("other", Market), fields) is not first
    link = connection.connection
    connection.close()  # (SQLite keeps an in-memory test database's link open)
    connection.ensure_connection()
    again = values_for(connection, ("test", Market), fields)
    assert (again is first) == (connection.connection is link)
    # and the statements that use them still write after the reconnection
    users = [User(email=f"v{i}@example.com") for i in range(3)]
    rows_insert(User, users)
    connection.close()
    more = [User(email=f"w{i}@example.com") for i in range(3)]
    rows_insert(User, more)
    assert User.objects.filter(email__in=[u.email for u in users + more]).count() == 6
