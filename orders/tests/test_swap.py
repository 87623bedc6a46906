"""Swaps end to end through the API and the matcher loop: quotes priced from the book
with fees, execution all or nothing, and bad input that changes nothing. Expected
amounts are worked out here from the book's prices, the lots and the fee rate."""

from __future__ import annotations

import importlib
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from django.apps import apps
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import user_freeze
from orders.matcher import MarketMatcher, matchers_run
from orders.models import Order, SwapExecution, SwapQuote, Trade
from orders.swap import EXECUTE_BATCH, swap_execute, swap_quote_create
from orders.tests.conftest import balance
from orders.tests.test_matching import assert_audit_ok, place
from wallets.models import AccountKind, Currency, JournalEntry
from wallets.tests.factories import UserFactory, fund

TAKER = Fraction("0.002")
SYMBOLS = ["BTC-USDT", "ETH-USDT"]


def run_matchers(symbols=SYMBOLS, rounds: int = 2) -> None:
    """``rounds`` turns of the multi-market matcher loop, in this process."""
    turns = iter(range(rounds))
    matchers_run(symbols=symbols, should_stop=lambda: next(turns, None) is None)


def floor(value: Fraction, places: int) -> Fraction:
    return Fraction(int(value * 10**places), 10**places)


@pytest.fixture
def btc(markets) -> Currency:
    return Currency.objects.get(code="BTC")


@pytest.fixture
def carol_client(markets) -> APIClient:
    carol = UserFactory(email="carol@example.com")
    fund(carol, Currency.objects.get(code="USDT"), "100000")
    client = APIClient()
    client.force_authenticate(carol)
    return client


@pytest.fixture
def book(bob_client, alice, btc):
    """Bob bids for 0.5 BTC at 60000 and offers 5 ETH at 2000 and 10 ETH at 2010."""
    fund(alice, btc, "1")
    place(bob_client, market="BTC-USDT", side="buy", price="60000", quantity="0.5")
    place(bob_client, side="sell", price="2000", quantity="5")
    place(bob_client, side="sell", price="2010", quantity="10")
    run_matchers()


def expected_btc_to_eth(btc_amount: Fraction) -> tuple[Fraction, Fraction, Fraction]:
    """(USDT from selling the BTC at 60000, ETH bought with it, USDT spent on it)."""
    usdt = floor(btc_amount * 60000 * (1 - TAKER), 6)
    budget = usdt / (1 + TAKER)  # notional + taker fee fit in what leg 1 gave
    eth = Fraction(0)
    notional = Fraction(0)
    for price, available in ((2000, Fraction(5)), (2010, Fraction(10))):
        take = min(available, floor((budget - notional) / price, 4))  # whole lots of 0.0001
        eth += take
        notional += take * price
        if take < available:
            break
    spent = notional + floor(notional * TAKER, 6)
    return usdt, eth, spent


def quote(client, **fields):
    body = {"from_currency": "BTC", "to_currency": "ETH", "amount": "0.3", **fields}
    return client.post("/api/v1/swap/quote", body)


def test_swap_through_two_markets(alice_client, alice, bob, btc, eth, usdt, book):
    usdt_between, eth_out, usdt_spent = expected_btc_to_eth(Fraction("0.3"))
    assert (usdt_between, eth_out) == (17964, Fraction("8.9443"))

    response = quote(alice_client)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["from_currency"], body["to_currency"], body["from_amount"], body["status"]) == (
        "BTC",
        "ETH",
        "0.3",
        "open",
    )
    assert Fraction(body["to_amount"]) == eth_out
    assert body["route"] == [{"market": "BTC-USDT", "side": "sell"}, {"market": "ETH-USDT", "side": "buy"}]

    response = alice_client.post("/api/v1/swap", {"quote_id": body["id"], "slippage": "0.01"})
    assert response.status_code == 202, response.json()
    swap = response.json()
    assert (swap["status"], swap["from_amount"], swap["to_amount"]) == ("pending", "0.3", None)
    assert Fraction(swap["min_to_amount"]) == floor(eth_out * Fraction("0.99"), 18)
    assert balance(alice, btc, AccountKind.LOCKED) == Decimal("0.3")

    run_matchers(rounds=1)

    done = alice_client.get(f"/api/v1/swap/{swap['id']}").json()
    assert (done["status"], done["reason"]) == ("completed", "")
    assert Fraction(done["to_amount"]) == eth_out
    legs = [Order.objects.get(pk=pk) for pk in done["order_ids"]]
    assert [(o.market.symbol, o.side, o.type, o.status) for o in legs] == [
        ("BTC-USDT", "sell", "market", "filled"),
        ("ETH-USDT", "buy", "market", "filled"),
    ]
    assert [o.hold_left for o in legs] == [0, 0]
    assert Trade.objects.filter(market__symbol="BTC-USDT").count() == 1
    assert Trade.objects.filter(market__symbol="ETH-USDT").count() == 2
    assert balance(alice, btc) == Decimal("0.7")
    assert balance(alice, btc, AccountKind.LOCKED) == 0
    assert Fraction(balance(alice, eth)) == 100 + eth_out
    assert Fraction(balance(alice, usdt)) == 100000 + usdt_between - usdt_spent  # the unspent budget came back
    assert balance(alice, usdt, AccountKind.LOCKED) == 0
    assert SwapQuote.objects.get().status == "executed"
    assert_audit_ok()


def test_direct_market_swap(alice_client, alice, eth, usdt, book):
    response = alice_client.post(
        "/api/v1/swap/quote", {"from_currency": "ETH", "to_currency": "USDT", "amount": "0.123456"}
    )
    # ETH-USDT's bids are empty: selling ETH has no liquidity.
    assert (response.status_code, response.json()["code"]) == (409, "swap_insufficient_liquidity")
    response = alice_client.post(
        "/api/v1/swap/quote", {"from_currency": "USDT", "to_currency": "ETH", "amount": "1000"}
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["route"] == [{"market": "ETH-USDT", "side": "buy"}]
    expected = floor(Fraction(1000) / (1 + TAKER) / 2000, 4)
    assert Fraction(body["to_amount"]) == expected
    swap = alice_client.post("/api/v1/swap", {"quote_id": body["id"]}).json()
    run_matchers(rounds=1)
    assert Fraction(SwapExecution.objects.get(pk=swap["id"]).to_amount) == expected
    assert Fraction(balance(alice, eth)) == 100 + expected
    assert_audit_ok()


def test_all_or_nothing_when_the_second_book_empties(alice_client, bob_client, alice, btc, book):
    body = quote(alice_client).json()
    swap = alice_client.post("/api/v1/swap", {"quote_id": body["id"]}).json()
    assert bob_client.delete("/api/v1/orders?market=ETH-USDT").status_code == 202  # before the swap runs
    entries = JournalEntry.objects.count()
    run_matchers(rounds=1)
    done = SwapExecution.objects.get(pk=swap["id"])
    assert (done.status, done.reason, done.order_ids) == ("failed", "swap_insufficient_liquidity", [])
    assert not Trade.objects.filter(market__symbol="BTC-USDT").exists()  # the first leg did not trade
    assert not Order.objects.filter(client_order_id__startswith=f"swap:{done.pk}:").exists()
    assert (balance(alice, btc), balance(alice, btc, AccountKind.LOCKED)) == (1, 0)
    assert JournalEntry.objects.filter(idempotency_key=f"swap-release:{done.pk}").exists()
    assert JournalEntry.objects.count() == entries + 3  # bob's two cancel releases and the swap's release
    assert SwapQuote.objects.get().status == "failed"
    assert_audit_ok()


def test_slippage_bound_at_execution(alice_client, carol_client, alice, btc, book):
    body = quote(alice_client).json()
    swap = alice_client.post("/api/v1/swap", {"quote_id": body["id"], "slippage": "0.001"}).json()
    # Before the swap runs, someone takes the cheaper ETH: the swap would get less than the bound.
    place(carol_client, side="buy", price="2000", quantity="5")
    run_matchers(rounds=1)
    done = SwapExecution.objects.get(pk=swap["id"])
    assert (done.status, done.reason) == ("failed", "swap_slippage_exceeded")
    assert not Trade.objects.filter(market__symbol="BTC-USDT").exists()
    assert (balance(alice, btc), balance(alice, btc, AccountKind.LOCKED)) == (1, 0)
    assert_audit_ok()


def test_markets_of_a_route_split_across_matchers(alice_client, alice, btc, book, unchanged):
    body = quote(alice_client).json()
    swap = alice_client.post("/api/v1/swap", {"quote_id": body["id"]}).json()
    run_matchers(symbols=["BTC-USDT"], rounds=1)  # this process runs the first market only
    done = SwapExecution.objects.get(pk=swap["id"])
    assert (done.status, done.reason) == ("failed", "swap_route_unavailable")
    assert (balance(alice, btc), balance(alice, btc, AccountKind.LOCKED)) == (1, 0)

    # Refused at once when the markets are known to be run by different processes.
    for symbol, owner in (("BTC-USDT", "host-a:1"), ("ETH-USDT", "host-b:2")):
        matcher = MarketMatcher(symbol=symbol, owner=owner)
        matcher.start()
        matcher.stop()
    body = quote(alice_client).json()
    with unchanged():
        response = alice_client.post("/api/v1/swap", {"quote_id": body["id"]})
    assert (response.status_code, response.json()["code"]) == (409, "swap_route_unavailable")


# --- Bad input: a 4xx with a specific code, and nothing held, stored or routed ----------------


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"to_currency": "BTC"}, 400, "swap_same_currency"),
        ({"from_currency": "NOPE"}, 400, "unknown_currency"),
        ({"to_currency": "DOGE"}, 400, "swap_no_route"),
        ({"amount": "0"}, 400, "amount_not_positive"),
        ({"amount": "-1"}, 400, "amount_not_positive"),
        ({"amount": "0.123456789"}, 400, "amount_precision"),
        ({"amount": "0.000001"}, 400, "swap_amount_too_small"),
        ({"amount": "0.0001"}, 400, "swap_amount_too_small"),  # 6 USDT: below the minimum order value
        ({"amount": "0.6"}, 409, "swap_insufficient_liquidity"),  # the bid is for 0.5 BTC
        ({"amount": "abc"}, 400, "amount_invalid"),
        ({"slippage": "0.1"}, 400, "unknown_field"),
    ],
)
def test_bad_quote_requests(alice_client, book, unchanged, fields, status, code):
    Currency.objects.create(code="DOGE", name="Doge", kind=Currency.Kind.CRYPTO, precision=8)
    with unchanged():
        response = quote(alice_client, **fields)
    assert (response.status_code, response.json()["code"]) == (status, code), response.json()
    assert not SwapQuote.objects.exists()


def test_bad_execute_requests(alice_client, carol_client, alice, btc, book, unchanged):
    mine = quote(alice_client).json()
    carols = quote(carol_client, from_currency="USDT", to_currency="ETH", amount="100").json()
    with unchanged():
        cases = [
            ({"quote_id": carols["id"]}, 404, "swap_quote_not_found"),
            ({"quote_id": "00000000-0000-0000-0000-000000000000"}, 404, "swap_quote_not_found"),
            ({"quote_id": "not-a-uuid"}, 400, "quote_id_invalid"),
            ({"quote_id": mine["id"], "slippage": "1"}, 400, "slippage_invalid"),
            ({"quote_id": mine["id"], "slippage": "-0.1"}, 400, "slippage_invalid"),
            ({"quote_id": mine["id"], "extra": 1}, 400, "unknown_field"),
        ]
        for body, status, code in cases:
            response = alice_client.post("/api/v1/swap", body)
            assert (response.status_code, response.json()["code"]) == (status, code), (body, response.json())
        assert alice_client.get("/api/v1/swap/12345").status_code == 404
    assert not SwapExecution.objects.exists()
    assert SwapQuote.objects.get(pk=mine["id"]).status == "open"


def test_expired_used_and_unfunded_quotes(alice_client, alice, btc, book, unchanged):
    expired = quote(alice_client).json()
    SwapQuote.objects.filter(pk=expired["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    used = quote(alice_client).json()
    assert alice_client.post("/api/v1/swap", {"quote_id": used["id"]}).status_code == 202
    place(alice_client, market="BTC-USDT", side="sell", price="70000", quantity="0.6")
    unfunded = quote(alice_client).json()  # 0.3 BTC: 0.3 + 0.6 of 1 are held now
    with unchanged():
        for quote_id, status, code in (
            (expired["id"], 409, "swap_quote_expired"),
            (used["id"], 409, "swap_quote_used"),
            (unfunded["id"], 400, "insufficient_funds"),
        ):
            response = alice_client.post("/api/v1/swap", {"quote_id": quote_id})
            assert (response.status_code, response.json()["code"]) == (status, code), response.json()
    assert SwapExecution.objects.count() == 1
    assert SwapQuote.objects.get(pk=unfunded["id"]).status == "open"


def test_slippage_already_exceeded_is_refused_at_once(alice_client, carol_client, alice, book, unchanged):
    body = quote(alice_client).json()
    place(carol_client, side="buy", price="2000", quantity="5")
    run_matchers(rounds=1)  # the cheaper ETH is gone
    with unchanged():
        response = alice_client.post("/api/v1/swap", {"quote_id": body["id"], "slippage": "0"})
    assert (response.status_code, response.json()["code"]) == (409, "swap_slippage_exceeded")
    assert not SwapExecution.objects.exists()


# --- The user's own orders: a swap never trades with or cancels them --------------------------


@pytest.mark.parametrize(
    ("market", "side", "price", "refused"),
    [
        ("ETH-USDT", "sell", "1990", True),  # better than every ask leg 2 takes
        ("ETH-USDT", "sell", "2010", True),  # at the last level leg 2 takes from
        ("ETH-USDT", "sell", "2020", False),  # beyond it
        ("BTC-USDT", "buy", "60000", True),  # at the bid leg 1 sells into
        ("BTC-USDT", "buy", "59000", False),
    ],
)
def test_own_orders_in_the_way_refuse_the_quote(alice_client, book, unchanged, market, side, price, refused):
    """BTC -> ETH 0.3 sells into Bob's bid at 60000, then buys ETH at 2000 and 2010."""
    mine = place(alice_client, market=market, side=side, price=price, quantity="0.01")
    run_matchers(rounds=1)
    if refused:
        with unchanged():
            response = quote(alice_client)
        assert (response.status_code, response.json()["code"]) == (409, "swap_own_orders"), response.json()
        assert response.json()["details"]["market"] == market
        assert not SwapQuote.objects.exists()
        return
    body = quote(alice_client).json()
    swap = alice_client.post("/api/v1/swap", {"quote_id": body["id"]}).json()
    run_matchers(rounds=1)
    assert SwapExecution.objects.get(pk=swap["id"]).status == "completed"
    own = Order.objects.get(pk=mine["id"])
    assert (own.status, own.filled_quantity, own.hold_left) == ("open", 0, own.hold_amount)
    assert_audit_ok()


def test_own_order_in_the_way_refuses_the_execution_request(alice_client, book, unchanged):
    body = quote(alice_client).json()
    place(alice_client, side="sell", price="2000", quantity="1")  # after the quote
    run_matchers(rounds=1)
    with unchanged():
        response = alice_client.post("/api/v1/swap", {"quote_id": body["id"]})
    assert (response.status_code, response.json()["code"]) == (409, "swap_own_orders"), response.json()
    assert response.json()["details"]["market"] == "ETH-USDT"
    assert not SwapExecution.objects.exists()


def test_own_order_in_the_way_fails_the_pending_swap(alice_client, alice, btc, eth, book):
    body = quote(alice_client).json()
    swap = alice_client.post("/api/v1/swap", {"quote_id": body["id"]}).json()
    mine = place(alice_client, side="sell", price="1990", quantity="1")  # after the request
    run_matchers(rounds=1)  # the ask rests first, then the swap is checked
    done = SwapExecution.objects.get(pk=swap["id"])
    assert (done.status, done.reason, done.order_ids) == ("failed", "swap_own_orders", [])
    assert not Trade.objects.exists()
    own = Order.objects.get(pk=mine["id"])
    assert (own.status, own.filled_quantity, own.hold_left) == ("open", 0, 1)
    assert (balance(alice, btc), balance(alice, btc, AccountKind.LOCKED)) == (1, 0)
    assert balance(alice, eth, AccountKind.LOCKED) == 1
    assert_audit_ok()


# --- Pending swaps are read per market; a freeze stops them -------------------------------------


def test_pending_swaps_of_a_market_run_elsewhere_do_not_hold_back_this_process(alice, carol_client, book):
    """More than a round's batch of swaps wait for BTC-USDT's process (down); the ETH-USDT
    process still executes its own, newer swap."""
    for _ in range(EXECUTE_BATCH + 1):
        waiting = swap_quote_create(user=alice, from_code="BTC", to_code="USDT", amount=Decimal("0.001"))
        swap_execute(user=alice, quote_id=waiting.pk, slippage=Decimal("0.01"))
    body = quote(carol_client, from_currency="USDT", to_currency="ETH", amount="100").json()
    swap = carol_client.post("/api/v1/swap", {"quote_id": body["id"]}).json()
    run_matchers(symbols=["ETH-USDT"], rounds=1)
    done = SwapExecution.objects.select_related("market").get(pk=swap["id"])
    assert (done.status, done.market.symbol) == ("completed", "ETH-USDT"), done.reason
    others = SwapExecution.objects.exclude(pk=done.pk)
    assert set(others.values_list("status", "market__symbol")) == {("pending", "BTC-USDT")}
    assert others.count() == EXECUTE_BATCH + 1
    assert_audit_ok()


def test_migration_fills_the_market_of_existing_swaps(alice_client, book):
    swap = alice_client.post("/api/v1/swap", {"quote_id": quote(alice_client).json()["id"]}).json()
    SwapExecution.objects.update(market=None)
    migration = importlib.import_module("orders.migrations.0006_swapexecution_market")
    migration.fill_market(apps, None)
    assert SwapExecution.objects.get(pk=swap["id"]).market.symbol == "BTC-USDT"


@pytest.mark.parametrize("cancel_orders", [True, False])
def test_freeze_fails_a_pending_swap(alice_client, alice, btc, book, cancel_orders):
    body = quote(alice_client).json()
    swap = alice_client.post("/api/v1/swap", {"quote_id": body["id"]}).json()
    user_freeze(user=alice, actor=None, reason="fraud", cancel_orders=cancel_orders)
    run_matchers(rounds=1)
    done = SwapExecution.objects.get(pk=swap["id"])
    assert (done.status, done.reason, done.order_ids) == ("failed", "account_frozen", [])
    assert not Trade.objects.exists()
    assert (balance(alice, btc), balance(alice, btc, AccountKind.LOCKED)) == (1, 0)
    assert SwapQuote.objects.get().status == "failed"
    assert_audit_ok()


def test_a_freeze_after_the_check_still_stops_the_swap(alice_client, alice, btc, book):
    """The freeze commits between the matcher's check and its transaction: the transaction
    locks the user's row and sees it."""
    from orders.swap import SwapAbort, _swap_apply, _swap_check

    alice_client.post("/api/v1/swap", {"quote_id": quote(alice_client).json()["id"]})
    swap = SwapExecution.objects.select_related("user", "from_currency").get()
    matchers = [MarketMatcher(symbol=symbol) for symbol in SYMBOLS]
    for matcher in matchers:
        matcher.start()
    try:
        by_symbol = {m.symbol: m for m in matchers}
        plan = _swap_check(swap, by_symbol)  # the user is not frozen yet
        user_freeze(user=alice, actor=None, reason="fraud")
        with pytest.raises(SwapAbort) as refused:
            _swap_apply(swap, plan, by_symbol)
    finally:
        for matcher in matchers:
            matcher.stop()
    assert refused.value.code == "account_frozen"
    assert not Trade.objects.exists() and not Order.objects.filter(user=alice).exists()


# --- Swaps no matcher executes ---------------------------------------------------------------


def _execute(client, amount: str = "0.1") -> int:
    return client.post("/api/v1/swap", {"quote_id": quote(client, amount=amount).json()["id"]}).json()["id"]


def test_a_swap_no_matcher_executes_is_failed_after_its_deadline(alice_client, alice, btc, book):
    """BTC-USDT's matcher is down: the orders worker fails its swaps once overdue, and
    leaves alone those still within their grace and those a matcher finished."""
    from orders.swap import OVERDUE_AFTER, swaps_fail_overdue

    done = _execute(alice_client)
    run_matchers()
    overdue, waiting = _execute(alice_client), _execute(alice_client)
    assert balance(alice, btc, AccountKind.LOCKED) == Decimal("0.2")
    now = timezone.now()
    SwapExecution.objects.filter(pk__in=[done, overdue]).update(deadline=now - OVERDUE_AFTER - timedelta(seconds=1))
    SwapExecution.objects.filter(pk=waiting).update(deadline=now - timedelta(seconds=1))

    assert swaps_fail_overdue() == 1
    statuses = dict(SwapExecution.objects.values_list("pk", "status"))
    assert statuses == {done: "completed", overdue: "failed", waiting: "pending"}
    assert SwapExecution.objects.get(pk=overdue).reason == "swap_quote_expired"
    assert balance(alice, btc, AccountKind.LOCKED) == Decimal("0.1")  # the waiting swap's hold only
    assert JournalEntry.objects.filter(idempotency_key=f"swap-release:{overdue}").count() == 1
    assert swaps_fail_overdue() == 0  # once
    assert_audit_ok()


@pytest.mark.django_db(transaction=True)
def test_the_orders_worker_fails_overdue_swaps(alice_client, alice, btc, book):
    """Through the beat's task on a real worker consuming the orders queue."""
    import time

    from celery.contrib.testing.worker import start_worker

    from kootabase.celery import BEAT_SCHEDULE
    from kootabase.celery import app as celery_app
    from orders.swap import OVERDUE_AFTER
    from orders.tasks import swaps_fail_overdue

    assert any(entry["task"] == swaps_fail_overdue.name for entry in BEAT_SCHEDULE.values())
    assert celery_app.amqp.router.route({}, swaps_fail_overdue.name)["queue"].name == "orders"
    swap = _execute(alice_client)
    SwapExecution.objects.filter(pk=swap).update(deadline=timezone.now() - OVERDUE_AFTER - timedelta(seconds=1))
    with start_worker(celery_app, pool="solo", perform_ping_check=False, queues=["orders"], shutdown_timeout=10):
        swaps_fail_overdue.delay()
        deadline = time.monotonic() + 15
        while SwapExecution.objects.get(pk=swap).status == "pending" and time.monotonic() < deadline:
            time.sleep(0.1)
    assert SwapExecution.objects.get(pk=swap).status == "failed"
    assert balance(alice, btc, AccountKind.LOCKED) == 0
