from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import User
from kootabase.errors import ServiceError
from orders.models import Market, Order
from orders.services import Placement, order_place_or_get, orders_place_many, place_request
from orders.tests.conftest import balance, client_of
from orders.tests.test_matching import run_matcher
from wallets.models import AccountKind, Currency, JournalEntry
from wallets.services import ledger_audit_run
from wallets.tests.factories import UserFactory, fund

URL = "/api/v1/orders"


def limit(**overrides):
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2000", "quantity": "1.5"}
    body.update(overrides)
    return body


def test_limit_buy_holds_quote_plus_the_highest_fee(alice_client, alice, usdt):
    response = alice_client.post(URL, limit(client_order_id="a-1"))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending"
    assert (body["price"], body["quantity"], body["filled_quantity"], body["fee_currency"]) == (
        "2000",
        "1.5",
        "0",
        "USDT",
    )
    order = Order.objects.get(pk=body["id"])
    assert order.hold_amount == order.hold_left == Decimal("3006")  # 3000 x 1.002
    assert balance(alice, usdt) == Decimal("100000") - Decimal("3006")
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("3006")
    entry = JournalEntry.objects.get(reference=f"order:{order.pk}")
    assert entry.kind == "hold"


def test_limit_sell_holds_base(alice_client, alice, eth):
    response = alice_client.post(URL, limit(side="sell", quantity="2"))
    assert response.status_code == 201
    assert balance(alice, eth, AccountKind.LOCKED) == Decimal(2)
    assert Order.objects.get().hold_currency == eth


def test_market_buy_by_quote_amount_holds_that_amount(alice_client, alice, usdt):
    response = alice_client.post(URL, {"market": "ETH-USDT", "side": "buy", "type": "market", "quote_amount": "100"})
    assert response.status_code == 201, response.json()
    assert response.json()["time_in_force"] == "ioc"
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal(100)


def test_market_buy_by_quantity_holds_as_a_limit_at_the_protection_price(alice_client, alice, usdt):
    response = alice_client.post(URL, {"market": "ETH-USDT", "side": "buy", "type": "market", "quantity": "1"})
    assert response.status_code == 400
    assert response.json()["code"] == "protection_price_required"
    response = alice_client.post(
        URL, {"market": "ETH-USDT", "side": "buy", "type": "market", "quantity": "1", "price": "2100"}
    )
    assert response.status_code == 201
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("2104.2")


def test_stop_limit_is_stored_pending_and_holds_as_its_limit(alice_client, alice, usdt):
    response = alice_client.post(URL, limit(type="stop-limit", stop_price="2100", price="2110", quantity="1"))
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "pending"
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("2114.22")


def test_repeated_client_order_id_returns_the_existing_order(alice_client, alice, usdt):
    first = alice_client.post(URL, limit(client_order_id="same"))
    second = alice_client.post(URL, limit(client_order_id="same"))
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Order.objects.count() == 1
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("3006")
    different = alice_client.post(URL, limit(client_order_id="same", price="1999"))
    assert different.status_code == 409
    assert different.json()["code"] == "client_order_id_conflict"


def test_a_repeat_answers_with_the_stored_order_even_when_a_new_order_would_be_refused(alice, usdt, eth_usdt):
    fields = {"market_symbol": "ETH-USDT", "side": "buy", "type": "limit", "price": Decimal(2000)}
    first = order_place_or_get(user=alice, client_order_id="r-1", quantity=Decimal("1.5"), **fields)
    assert first.created
    # Frozen, its market halted, its funds spent: a new order would be refused now.
    User.objects.filter(pk=alice.pk).update(frozen_at=timezone.now())
    alice.refresh_from_db()
    market = Market.objects.get(pk=eth_usdt.pk)
    market.status = Market.Status.HALTED
    market.save()
    with pytest.raises(ServiceError) as refused:
        order_place_or_get(user=alice, client_order_id="r-2", quantity=Decimal("1.5"), **fields)
    assert refused.value.code == "account_frozen"

    again = order_place_or_get(user=alice, client_order_id="r-1", quantity=Decimal("1.5"), **fields)
    assert (again.order.pk, again.created) == (first.order.pk, False)
    with pytest.raises(ServiceError) as conflict:
        order_place_or_get(user=alice, client_order_id="r-1", quantity=Decimal(2), **fields)
    assert conflict.value.code == "client_order_id_conflict"
    with pytest.raises(ServiceError) as unknown:
        order_place_or_get(
            user=alice, client_order_id="r-1", quantity=Decimal("1.5"), **{**fields, "market_symbol": "NO-SUCH"}
        )
    assert unknown.value.code == "unknown_market"
    assert Order.objects.count() == 1
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("3006")


def test_a_refused_order_leaves_its_client_order_id_free(alice_client, alice, usdt, unchanged):
    with unchanged():
        refused = alice_client.post(URL, limit(client_order_id="again", quantity="9999"))
    assert (refused.status_code, refused.json()["code"]) == (400, "insufficient_funds")
    placed = alice_client.post(URL, limit(client_order_id="again"))
    assert placed.status_code == 201
    assert Order.objects.get().client_order_id == "again"


def test_client_order_ids_differing_in_case_are_two_orders(alice_client, alice, usdt):
    """On every backend, MariaDB's case-blind default collations included."""
    lower = alice_client.post(URL, limit(client_order_id="abc"))
    upper = alice_client.post(URL, limit(client_order_id="ABC"))
    assert (lower.status_code, upper.status_code) == (201, 201), upper.json()
    assert lower.json()["id"] != upper.json()["id"]
    again = alice_client.post(URL, limit(client_order_id="ABC"))
    assert (again.status_code, again.json()["id"]) == (200, upper.json()["id"])
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("6012")


def test_client_order_ids_are_per_user(alice_client, bob_client):
    assert alice_client.post(URL, limit(client_order_id="x")).status_code == 201
    assert bob_client.post(URL, limit(client_order_id="x")).status_code == 201
    assert Order.objects.count() == 2


def test_fee_tier_lowers_the_hold(alice_client, alice, usdt, eth_usdt):
    from django.contrib.auth.models import Group

    from orders.models import FeeTier

    vip = Group.objects.create(name="vip")
    FeeTier.objects.create(group=vip, maker_fee_rate=Decimal("0.0005"), taker_fee_rate=Decimal("0.001"))
    alice.groups.add(vip)
    assert alice_client.post(URL, limit()).status_code == 201
    order = Order.objects.get()
    assert (order.maker_fee_rate, order.taker_fee_rate, order.hold_amount) == (
        Decimal("0.0005"),
        Decimal("0.001"),
        Decimal("3003"),
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (limit(price="2000.001"), 400, "price_not_on_tick"),
        (limit(quantity="0.00001"), 400, "quantity_not_on_lot"),
        (limit(price="1", quantity="1"), 400, "below_min_notional"),
        (limit(price="0.0000000000000000001"), 400, "price_max_decimal_places"),
        (limit(market="DOGE-USDT"), 400, "unknown_market"),
        (limit(quantity="1000"), 400, "insufficient_funds"),
        (limit(side="sell", quantity="1000"), 400, "insufficient_funds"),
        (limit(price=None), 400, "price_required"),
        (limit(quantity=None), 400, "quantity_required"),
        (limit(post_only=True, time_in_force="ioc"), 400, "post_only_requires_gtc"),
        (limit(stop_price="2100"), 400, "stop_price_not_allowed"),
        (limit(type="stop-limit"), 400, "stop_price_required"),
        (limit(type="stop-limit", stop_price="2100.005"), 400, "stop_price_not_on_tick"),
        (limit(price="-5"), 400, "price_not_positive"),
        (limit(quantitiy="1"), 400, "unknown_field"),
        ({"market": "ETH-USDT", "side": "buy", "type": "market"}, 400, "quantity_or_quote_amount"),
        ({"market": "ETH-USDT", "side": "buy", "type": "market", "quote_amount": "5"}, 400, "below_min_notional"),
        (
            {"market": "ETH-USDT", "side": "buy", "type": "market", "quote_amount": "10.0000001"},
            400,
            "quote_amount_precision",
        ),
        ({"market": "ETH-USDT", "side": "sell", "type": "market", "quote_amount": "50"}, 400, "quantity_required"),
        # each in range, but a buy's hold (price x quantity x (1 + fee)) beyond any balance
        (limit(price="1000000000", quantity="1000000000"), 400, "amount_out_of_range"),
        (limit(side="sell", price="1000000000", quantity="1000000000"), 400, "amount_out_of_range"),
        (
            {
                "market": "ETH-USDT",
                "side": "buy",
                "type": "market",
                "quantity": "1",
                "price": "2100",
                "time_in_force": "fok",
            },
            400,
            "time_in_force_not_allowed",
        ),
        (limit(type="stop-limit", stop_price="2100", post_only=True), 400, "post_only_not_allowed"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(alice_client, unchanged, body, status, code):
    body = {k: v for k, v in body.items() if v is not None}
    with unchanged():
        response = alice_client.post(URL, body)
    assert response.status_code == status, response.json()
    assert response.json()["code"] == code
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    ("market_status", "code"), [("halted", "market_halted"), ("cancel-only", "market_cancel_only")]
)
def test_closed_market_refuses_orders(alice_client, eth_usdt, unchanged, market_status, code):
    Market.objects.filter(pk=eth_usdt.pk).update(status=market_status)
    with unchanged():
        response = alice_client.post(URL, limit())
    assert (response.status_code, response.json()["code"]) == (409, code)


def test_batch_places_each_order_on_its_own(alice_client, alice, usdt, unchanged):
    response = alice_client.post(
        URL + "/batch",
        {"orders": [limit(client_order_id="b1"), limit(price="2000.001"), limit(quantity="9999"), {"market": 1}]},
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400, 400, 400]
    assert results[0]["order"]["client_order_id"] == "b1"
    assert [r["error"]["code"] for r in results[1:]] == ["price_not_on_tick", "insufficient_funds", "side_required"]
    assert Order.objects.count() == 1
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("3006")


def test_a_batch_item_that_is_not_an_order_is_refused_alone(alice_client, alice, usdt):
    response = alice_client.post(URL + "/batch", {"orders": [limit(client_order_id="b1"), "x", None, 5, [1]]})
    assert response.status_code == 200, response.json()
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400, 400, 400, 400]
    assert [r["error"]["code"] for r in results[1:]] == ["body_invalid", "body_null", "body_invalid", "body_invalid"]
    assert Order.objects.count() == 1


def test_batch_is_limited_to_fifty(alice_client, unchanged):
    with unchanged():
        response = alice_client.post(URL + "/batch", {"orders": [limit()] * 51})
    assert response.status_code == 400
    assert response.json()["code"] == "orders_max_length"


def test_placement_needs_authentication(api_client, markets):
    assert api_client.post(URL, limit()).status_code == 401


# --- Many orders in one transaction ---------------------------------------------------


def _request(user, **overrides):
    fields = {"side": "buy", "type": "limit", "price": Decimal(2000), "quantity": Decimal("1.5"), **overrides}
    return place_request(user=user, market_symbol=fields.pop("market", "ETH-USDT"), **fields)


def test_many_orders_are_placed_as_if_one_after_the_other(alice, bob, usdt, eth):
    outcomes = orders_place_many(
        requests=[
            _request(alice, quantity=Decimal(30), client_order_id="m-1"),  # 60,120 USDT
            _request(bob, side="sell", quantity=Decimal(2)),
            _request(alice, quantity=Decimal(30), client_order_id="m-2"),  # 39,880 left: refused
            _request(alice, price=Decimal("2000.001")),  # off the tick
            _request(alice, quantity=Decimal(19), client_order_id="m-3"),  # 38,076: fits
        ]
    )
    assert [isinstance(o, Placement) for o in outcomes] == [True, True, False, False, True]
    assert (outcomes[2].code, outcomes[3].code) == ("insufficient_funds", "price_not_on_tick")
    assert all(o.created for o in outcomes if isinstance(o, Placement))
    assert sorted(Order.objects.values_list("client_order_id", flat=True).filter(user=alice)) == ["m-1", "m-3"]
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("60120") + Decimal("38076")
    assert balance(bob, eth, AccountKind.LOCKED) == Decimal(2)
    assert JournalEntry.objects.filter(kind="hold").count() == 3
    assert ledger_audit_run().ok


def test_a_refused_order_of_many_leaves_no_row_and_its_client_order_id_free(alice, usdt):
    refused = orders_place_many(requests=[_request(alice, quantity=Decimal(9999), client_order_id="free")])[0]
    assert refused.code == "insufficient_funds"
    assert not Order.objects.exists()
    assert not JournalEntry.objects.filter(kind="hold").exists()
    assert orders_place_many(requests=[_request(alice, client_order_id="free")])[0].created


def test_an_order_beyond_the_ledger_range_is_refused_alone_among_many(alice, bob, usdt):
    """One user's order too big for any balance, placed with another user's (as placement
    groups concurrent requests): only that one is refused."""
    innocent, huge = orders_place_many(
        requests=[
            _request(bob, client_order_id="innocent"),
            _request(alice, price=Decimal(1000000000), quantity=Decimal(1000000000)),
        ]
    )
    assert innocent.created and huge.code == "amount_out_of_range"
    assert list(Order.objects.values_list("client_order_id", flat=True)) == ["innocent"]


def test_a_market_buy_budget_beyond_the_engine_range_is_refused(markets):
    """A market whose quote unit (tick x lot) is 1e-16 ETH: 1000 ETH is more than 2**63
    units, which the engine cannot take."""
    eth, btc = Currency.objects.get(code="ETH"), Currency.objects.get(code="BTC")
    Market.objects.create(
        symbol="BTC-ETH",
        base=btc,
        quote=eth,
        tick_size=Decimal("0.00000001"),
        lot_size=Decimal("0.00000001"),
        min_notional=Decimal("0.001"),
    )
    whale = UserFactory(email="whale@example.com")
    fund(whale, eth, "2000")
    response = client_of(whale).post(
        URL, {"market": "BTC-ETH", "side": "buy", "type": "market", "quote_amount": "1000"}
    )
    assert (response.status_code, response.json()["code"]) == (400, "quote_amount_out_of_range")
    assert not Order.objects.exists()
    assert balance(whale, eth, AccountKind.LOCKED) == 0


@pytest.mark.parametrize(
    "change",
    [
        {"side": "sell", "price": "1.001", "quantity": "1"},  # different, and itself invalid
        {"time_in_force": "ioc"},
        {"post_only": True},
        {"type": "stop-limit", "stop_price": "2100"},
    ],
)
def test_a_repeat_that_asks_for_a_different_order_is_a_conflict(alice_client, alice, usdt, change):
    first = alice_client.post(URL, limit(client_order_id="same"))
    assert first.status_code == 201
    response = alice_client.post(URL, limit(client_order_id="same", **change))
    assert (response.status_code, response.json()["code"]) == (409, "client_order_id_conflict"), response.json()
    assert Order.objects.count() == 1


def test_a_repeated_client_order_id_in_a_batch_keeps_the_batch_order_for_funds(alice_client, alice):
    """A refused order retried smaller in the same batch is placed before the orders after
    it, as if the batch were placed one order after the other."""
    response = alice_client.post(
        URL + "/batch",
        {
            "orders": [
                limit(client_order_id="d", quantity="60"),  # 120,120 USDT and the fee: refused
                limit(client_order_id="d", quantity="30"),  # fits, placed in turn
                limit(quantity="30"),  # no longer fits
            ]
        },
    )
    assert [r["status"] for r in response.json()["results"]] == [400, 201, 400]
    assert Order.objects.get().client_order_id == "d"


def test_a_client_order_id_twice_in_one_call_is_placed_once(alice, usdt):
    first, same, different = orders_place_many(
        requests=[
            _request(alice, client_order_id="twice"),
            _request(alice, client_order_id="twice"),
            _request(alice, client_order_id="twice", price=Decimal(1999)),
        ]
    )
    assert (first.created, same.created, same.order.pk) == (True, False, first.order.pk)
    assert different.code == "client_order_id_conflict"
    assert Order.objects.count() == 1
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("3006")


def test_a_stored_client_order_id_among_many_is_a_repeat_and_the_others_are_placed(alice, bob, usdt):
    stored = order_place_or_get(user=alice, market_symbol="ETH-USDT", **_request(alice).fields, client_order_id="old")
    again, new, other = orders_place_many(
        requests=[
            _request(alice, client_order_id="old"),
            _request(alice, client_order_id="new"),
            _request(bob, client_order_id="old"),  # client_order_ids are per user
        ]
    )
    assert (again.created, again.order.pk) == (False, stored.order.pk)
    assert new.created and other.created
    assert Order.objects.count() == 3
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("6012")


@pytest.mark.parametrize("count", [2, 40])
def test_many_orders_take_a_bounded_number_of_queries(alice, bob, count, django_assert_max_num_queries):
    requests = [_request(alice if i % 2 else bob, quantity=Decimal("0.01")) for i in range(count)]
    orders_place_many(requests=requests[:1])  # the ledger accounts' ids are then known to the process
    # Constant on MariaDB; SQLite's cap of 999 parameters splits the orders' INSERT.
    from django.db import connection

    fields = Order._meta.concrete_fields[1:]
    extra = -(-count // connection.ops.bulk_batch_size(fields, range(count))) - 1
    with django_assert_max_num_queries(9 + extra):  # 9: with the users' rows locked against a freeze
        outcomes = orders_place_many(requests=requests)
    assert all(o.created for o in outcomes)


def test_batch_endpoint_places_many_users_orders_in_order(alice_client, alice, usdt):
    response = alice_client.post(
        URL + "/batch",
        {
            "orders": [
                limit(client_order_id="x1", quantity="30"),
                limit(client_order_id="x2", quantity="30"),
                limit(client_order_id="x1", quantity="30"),
                {"market": "ETH-USDT", "side": "buy"},
            ]
        },
    )
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400, 200, 400]
    assert results[1]["error"]["code"] == "insufficient_funds"
    assert results[2]["order"]["id"] == results[0]["order"]["id"]
    assert results[3]["error"]["code"] == "type_required"
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("60120")


def test_many_orders_all_refused_change_nothing(alice, bob, unchanged):
    with unchanged():
        outcomes = orders_place_many(
            requests=[
                _request(alice, quantity=Decimal(9999), client_order_id="r-1"),
                _request(bob, side="sell", quantity=Decimal(1000)),
                _request(alice, market="DOGE-USDT"),
            ]
        )
    assert [o.code for o in outcomes] == ["insufficient_funds", "insufficient_funds", "unknown_market"]


def test_a_market_order_before_the_first_trade_is_valued_at_the_best_price_against_it(
    alice_client, bob_client, alice, eth, unchanged
):
    """No trade yet: the minimum order value is checked at the best bid (for a sell)."""
    assert bob_client.post(URL, limit(price="2000", quantity="1")).status_code == 201
    run_matcher()  # the bid rests
    with unchanged():
        small = alice_client.post(URL, {"market": "ETH-USDT", "side": "sell", "type": "market", "quantity": "0.001"})
    assert (small.status_code, small.json()["code"]) == (400, "below_min_notional")
    enough = alice_client.post(URL, {"market": "ETH-USDT", "side": "sell", "type": "market", "quantity": "0.01"})
    assert enough.status_code == 201, enough.json()


def test_a_refused_order_with_a_fresh_id_is_not_looked_up_as_a_repeat(alice):
    """An id the placement thread made a moment ago cannot be stored yet: a refusal is
    answered without reading the stored orders (a user's id is looked up, as a repeat)."""
    too_much = {"side": "buy", "type": "limit", "price": Decimal(2000), "quantity": Decimal(9999)}
    given = place_request(user=alice, market_symbol="ETH-USDT", client_order_id="mine", **too_much)
    fresh = given._replace(client_order_id="c0ffee", fresh_id=True)
    orders_place_many(requests=[_request(alice, quantity=Decimal("0.01"))])  # accounts known from here on
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as as_given:
        assert orders_place_many(requests=[given])[0].code == "insufficient_funds"
    with CaptureQueriesContext(connection) as as_fresh:
        assert orders_place_many(requests=[fresh])[0].code == "insufficient_funds"
    assert len(as_fresh) == len(as_given) - 1
    assert not any("client_order_id" in query["sql"] and "SELECT" in query["sql"] for query in as_fresh)


@pytest.mark.mariadb
@pytest.mark.django_db(transaction=True)
def test_a_batch_split_at_a_repeated_id_answers_for_its_committed_part_when_the_rest_fails(
    alice_client, alice, eth, usdt
):
    """A repeated client_order_id splits a batch into two transactions. When the second
    fails for a reason of the server's (here its ledger rows stay locked elsewhere past the
    lock wait), the first is committed: the answer says so, order by order, and the rest
    is ``placement_failed`` (503), placed nowhere, to be sent again."""
    import threading

    from django.db import connection, transaction

    from wallets.models import LedgerAccount

    holding, release = threading.Event(), threading.Event()

    def hold_alices_eth() -> None:
        try:
            with transaction.atomic():
                list(LedgerAccount.objects.select_for_update().filter(user=alice, currency=eth))
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_alices_eth)
    holder.start()
    try:
        assert holding.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
        response = alice_client.post(
            URL + "/batch",
            {
                "orders": [
                    limit(client_order_id="d", quantity="1"),  # a buy: USDT, free
                    limit(client_order_id="d", quantity="1"),  # the repeat starts the second part
                    limit(client_order_id="e", side="sell", price="2100", quantity="1"),  # ETH: locked
                ]
            },
        )
    finally:
        release.set()
        holder.join(10)
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = DEFAULT")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 503, 503]
    assert results[0]["order"]["client_order_id"] == "d"
    assert [r["error"]["code"] for r in results[1:]] == ["placement_failed", "placement_failed"]
    assert list(Order.objects.values_list("client_order_id", flat=True)) == ["d"]
    assert balance(alice, eth, AccountKind.LOCKED) == 0
    assert balance(alice, usdt, AccountKind.LOCKED) == Decimal("2004")  # the buy's hold: 2000 and the fee
    assert ledger_audit_run().ok
    again = alice_client.post(
        URL + "/batch", {"orders": [limit(client_order_id="e", side="sell", price="2100", quantity="1")]}
    )
    assert again.json()["results"][0]["status"] == 201  # sent again, placed
