"""Market controls (orders.controls): what each does to the market and its matcher, who may
use it, and what it writes to the audit trail. Orders are placed through the API and
matched by the real matcher."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from guardian.shortcuts import assign_perm

from accounts.models import User
from accounts.roles import ADMIN, MARKET_OPERATOR, SUPPORT
from accounts.tests.helpers import staff_member
from audit import actions
from audit.models import AuditEvent
from kootabase.errors import PermissionDenied, ServiceError
from orders.controls import (
    market_may_operate,
    market_operators,
    market_operators_set,
    market_orders_cancel_all,
    market_status_set,
    markets_operated_by,
)
from orders.matcher import MarketMatcher, MarketStatusChanged
from orders.models import Market, MatcherState, Order, Trade
from orders.tests.conftest import balance, world_state
from orders.tests.test_matching import URL, assert_audit_ok, place, run_matcher
from wallets.models import AccountKind

HALTED, CANCEL_ONLY, ACTIVE = Market.Status.HALTED, Market.Status.CANCEL_ONLY, Market.Status.ACTIVE


@pytest.fixture
def operator(eth_usdt) -> User:
    """A market operator assigned ETH-USDT only."""
    user = staff_member("operator@example.com", MARKET_OPERATOR)
    assign_perm("orders.operate_market", user, eth_usdt)
    return User.objects.get(pk=user.pk)


@pytest.fixture
def btc_usdt(markets) -> Market:
    return markets["BTC-USDT"]


def status_of(market: Market) -> str:
    return Market.objects.get(pk=market.pk).status


def market_events(market: Market) -> list[tuple[str, int | None, dict]]:
    return list(
        AuditEvent.objects.filter(target_type="orders.market", target_id=str(market.pk))
        .order_by("id")
        .values_list("action", "actor_id", "details")
    )


def order(body: dict) -> Order:
    return Order.objects.get(pk=body["id"])


# --- Halt and resume -----------------------------------------------------------------------


def test_halt_stops_the_matcher_keeps_the_book_and_resume_continues_in_order(
    alice_client, bob_client, alice, bob, usdt, eth, eth_usdt, operator
):
    sell = place(alice_client, side="sell", price="2000", quantity="1")
    run_matcher()
    buy = place(bob_client, side="buy", price="2000", quantity="1")  # accepted before the halt
    lower = place(bob_client, side="buy", price="1999", quantity="1")

    assert market_status_set(market=eth_usdt, status=HALTED, actor=operator, reason="price feed incident") is True
    assert status_of(eth_usdt) == HALTED

    refused = bob_client.post(
        URL, {"market": "ETH-USDT", "type": "limit", "side": "buy", "price": "1", "quantity": "1"}
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "market_halted")
    assert bob_client.delete(f"{URL}/{lower['id']}").status_code == 202  # a cancel is still accepted, and waits

    before = world_state()
    run_matcher()
    assert world_state() == before  # the matcher did nothing: no trade, no fill, no release
    assert (order(sell).status, order(buy).status, order(lower).status) == ("open", "pending", "pending")
    assert MatcherState.objects.get(market=eth_usdt).last_seq == 1

    assert market_status_set(market=eth_usdt, status=ACTIVE, actor=operator, reason="feed fixed") is True
    run_matcher()
    assert (order(sell).status, order(buy).status) == ("filled", "filled")
    cancelled = order(lower)
    assert (cancelled.status, cancelled.reject_reason, cancelled.seq) == ("cancelled", "user_cancel", None)
    assert Trade.objects.count() == 1
    assert balance(bob, usdt, AccountKind.LOCKED) == 0 and balance(bob, eth) == Decimal(101)
    assert_audit_ok()

    assert market_events(eth_usdt) == [
        (actions.MARKET_HALTED, operator.pk, {"reason": "price feed incident", "from": "active", "to": "halted"}),
        (actions.MARKET_RESUMED, operator.pk, {"reason": "feed fixed", "from": "halted", "to": "active"}),
    ]


def test_setting_the_status_a_market_has_changes_and_records_nothing(eth_usdt, operator):
    assert market_status_set(market=eth_usdt, status=ACTIVE, actor=operator, reason="just in case") is False
    assert market_events(eth_usdt) == []


def test_cancel_only_performs_cancels_and_matches_nothing(alice_client, bob_client, alice, eth, eth_usdt, operator):
    sell = place(alice_client, side="sell", price="2000", quantity="1")
    run_matcher()
    crossing = place(bob_client, side="buy", price="2000", quantity="1")
    waiting = place(bob_client, side="buy", price="1500", quantity="1")

    market_status_set(market=eth_usdt, status=CANCEL_ONLY, actor=operator, reason="delisting")
    refused = alice_client.post(
        URL, {"market": "ETH-USDT", "type": "limit", "side": "sell", "price": "9", "quantity": "1"}
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "market_cancel_only")
    assert alice_client.delete(f"{URL}/{sell['id']}").status_code == 202
    assert bob_client.delete(f"{URL}/{waiting['id']}").status_code == 202

    run_matcher()
    assert order(sell).status == "cancelled"  # the resting order left the book, its hold released
    assert (balance(alice, eth), balance(alice, eth, AccountKind.LOCKED)) == (Decimal(100), 0)
    assert order(waiting).status == "cancelled" and order(waiting).seq is None  # never reached the book
    assert order(crossing).status == "pending"  # not matched, not entered: it waits
    assert Trade.objects.count() == 0
    assert_audit_ok()
    assert [e[0] for e in market_events(eth_usdt)] == [actions.MARKET_CANCEL_ONLY]


def test_a_batch_worked_out_before_a_halt_is_rolled_back_and_runs_after_the_resume(
    alice_client, bob_client, eth_usdt, operator
):
    """The matcher checks the status again, under the market row's lock, in the batch's
    transaction: nothing it worked out while the market was active commits after a halt."""
    sell = place(alice_client, side="sell", price="2000", quantity="1")
    run_matcher()
    buy = order(place(bob_client, side="buy", price="2000", quantity="1"))
    matcher = MarketMatcher(symbol="ETH-USDT")
    matcher.start()
    try:
        market_status_set(market=eth_usdt, status=HALTED, actor=operator, reason="incident")
        before = world_state()
        with pytest.raises(MarketStatusChanged), transaction.atomic():
            matcher.apply_in_transaction([buy])  # the book fills it in memory; the commit is refused
        matcher.rebuild()
        assert world_state() == before
        assert matcher.run_once() == 0  # halted: no work taken
        market_status_set(market=eth_usdt, status=ACTIVE, actor=operator, reason="over")
        assert matcher.run_once() == 1
    finally:
        matcher.stop()
    assert (order(sell).status, Order.objects.get(pk=buy.pk).status) == ("filled", "filled")
    assert Trade.objects.count() == 1
    assert_audit_ok()


# --- Cancel all open orders ---------------------------------------------------------------


def test_cancel_all_cancels_every_live_order_of_the_market_and_releases_the_holds(
    alice_client, bob_client, alice, bob, usdt, eth, eth_usdt, btc_usdt, operator
):
    resting = place(alice_client, side="sell", price="2100", quantity="1")
    stop = place(alice_client, side="buy", type="stop-limit", stop_price="2500", price="2500", quantity="1")
    bids = place(bob_client, side="buy", price="1900", quantity="2")
    asked = place(bob_client, side="buy", price="1800", quantity="1")
    run_matcher()
    assert bob_client.delete(f"{URL}/{asked['id']}").status_code == 202  # the user's own cancel, not yet performed
    pending = place(alice_client, side="buy", price="1000", quantity="1")
    other = place(alice_client, market="BTC-USDT", side="buy", price="30000", quantity="0.001")
    assert order(stop).status == "untriggered"

    assert market_orders_cancel_all(market=eth_usdt, actor=operator, reason="delisting ETH-USDT") == 4
    run_matcher()

    for body in (resting, stop, bids, pending):
        cancelled = order(body)
        assert (cancelled.status, cancelled.reject_reason, cancelled.hold_left) == ("cancelled", "market_cancel", 0)
    assert (order(asked).status, order(asked).reject_reason) == ("cancelled", "user_cancel")
    assert balance(bob, usdt, AccountKind.LOCKED) == 0 and balance(bob, usdt) == Decimal(100000)
    assert balance(alice, eth, AccountKind.LOCKED) == 0 and balance(alice, eth) == Decimal(100)
    untouched = order(other)  # another market: not asked
    assert (untouched.status, untouched.cancel_requested) == ("pending", False)
    assert balance(alice, usdt, AccountKind.LOCKED) == untouched.hold_left
    assert_audit_ok()
    assert market_events(eth_usdt) == [
        (
            actions.MARKET_ORDERS_CANCELLED,
            operator.pk,
            {"reason": "delisting ETH-USDT", "orders": 4, "status": "active"},
        )
    ]


def test_cancel_all_on_a_halted_market_waits_until_it_is_cancel_only(alice_client, eth_usdt, operator):
    resting = place(alice_client, side="sell", price="2100", quantity="1")
    run_matcher()
    market_status_set(market=eth_usdt, status=HALTED, actor=operator, reason="incident")
    assert market_orders_cancel_all(market=eth_usdt, actor=operator, reason="unwind") == 1
    run_matcher()
    assert (order(resting).status, order(resting).cancel_requested) == ("open", True)
    market_status_set(market=eth_usdt, status=CANCEL_ONLY, actor=operator, reason="let them out")
    run_matcher()
    assert (order(resting).status, order(resting).reject_reason) == ("cancelled", "market_cancel")
    assert_audit_ok()


# --- Who may -------------------------------------------------------------------------------


def test_an_operator_assigned_one_market_cannot_touch_another(alice_client, eth_usdt, btc_usdt, operator):
    place(alice_client, market="BTC-USDT", side="buy", price="30000", quantity="0.001")
    before = world_state()
    for control in (
        lambda: market_status_set(market=btc_usdt, status=HALTED, actor=operator, reason="not mine"),
        lambda: market_status_set(market=btc_usdt, status=CANCEL_ONLY, actor=operator, reason="not mine"),
        lambda: market_orders_cancel_all(market=btc_usdt, actor=operator, reason="not mine"),
    ):
        with pytest.raises(PermissionDenied) as refused:
            control()
        assert (refused.value.code, refused.value.status) == ("market_operation_forbidden", 403)
    assert status_of(btc_usdt) == ACTIVE
    assert world_state() == before
    assert market_events(btc_usdt) == []
    assert list(markets_operated_by(user=operator)) == [eth_usdt]


def test_staff_without_the_permission_are_refused_and_nothing_changes(alice_client, eth_usdt, markets):
    place(alice_client, side="sell", price="2100", quantity="1")
    support = staff_member("support@example.com", SUPPORT)
    unassigned = staff_member("idle-operator@example.com", MARKET_OPERATOR)
    not_staff = User.objects.create_user(email="holder@example.com", password="x")
    assign_perm("orders.operate_market", not_staff)  # a permission without staff status counts for nothing
    before = world_state()
    for actor in (support, unassigned, User.objects.get(pk=not_staff.pk)):
        with pytest.raises(PermissionDenied):
            market_status_set(market=eth_usdt, status=HALTED, actor=actor, reason="no")
        with pytest.raises(PermissionDenied):
            market_orders_cancel_all(market=eth_usdt, actor=actor, reason="no")
        assert list(markets_operated_by(user=actor)) == []
    assert status_of(eth_usdt) == ACTIVE
    assert world_state() == before
    assert not AuditEvent.objects.filter(target_type="orders.market").exists()


def test_the_admin_role_operates_every_market(eth_usdt, btc_usdt):
    admin = staff_member("admin-staff@example.com", ADMIN)
    for market in (eth_usdt, btc_usdt):
        assert market_may_operate(user=admin, market=market)
        market_status_set(market=market, status=HALTED, actor=admin, reason="emergency")
        assert status_of(market) == HALTED
    assert set(markets_operated_by(user=admin)) == {eth_usdt, btc_usdt}


def test_a_control_needs_a_reason_and_a_known_status(eth_usdt, operator):
    for status, reason, code in ((HALTED, "  ", "reason_required"), ("closed", "why", "status_invalid")):
        with pytest.raises(ServiceError) as refused:
            market_status_set(market=eth_usdt, status=status, actor=operator, reason=reason)
        assert refused.value.code == code
    with pytest.raises(ServiceError) as refused:
        market_orders_cancel_all(market=eth_usdt, actor=operator, reason="")
    assert refused.value.code == "reason_required"
    assert status_of(eth_usdt) == ACTIVE
    assert market_events(eth_usdt) == []


# --- Assigning markets to operators ---------------------------------------------------------


def test_an_admin_assigns_and_removes_operators_and_it_is_audited(eth_usdt, btc_usdt, operator):
    admin = staff_member("admin-staff@example.com", ADMIN)
    second = staff_member("second-operator@example.com", MARKET_OPERATOR)
    added, removed = market_operators_set(market=btc_usdt, operators=[operator, second], actor=admin, reason="cover")
    assert (added, removed) == (["operator@example.com", "second-operator@example.com"], [])
    operator = User.objects.get(pk=operator.pk)
    assert market_may_operate(user=operator, market=btc_usdt)
    added, removed = market_operators_set(market=btc_usdt, operators=[second], actor=admin, reason="back")
    assert (added, removed) == ([], ["operator@example.com"])
    assert list(market_operators(market=btc_usdt)) == [second]
    assert not market_may_operate(user=User.objects.get(pk=operator.pk), market=btc_usdt)
    assert market_may_operate(user=User.objects.get(pk=operator.pk), market=eth_usdt)  # the other grant stays
    assert [(e[0], e[1], e[2]["added"], e[2]["removed"]) for e in market_events(btc_usdt)] == [
        (actions.MARKET_OPERATORS_CHANGED, admin.pk, ["operator@example.com", "second-operator@example.com"], []),
        (actions.MARKET_OPERATORS_CHANGED, admin.pk, [], ["operator@example.com"]),
    ]


def test_only_market_operators_are_assigned_and_only_by_who_may(btc_usdt, operator):
    admin = staff_member("admin-staff@example.com", ADMIN)
    support = staff_member("support@example.com", SUPPORT)
    with pytest.raises(ServiceError) as refused:
        market_operators_set(market=btc_usdt, operators=[support], actor=admin, reason="wrong role")
    assert refused.value.code == "not_a_market_operator"
    for actor in (operator, support):  # an operator cannot widen their own reach
        with pytest.raises(PermissionDenied):
            market_operators_set(market=btc_usdt, operators=[operator], actor=actor, reason="me too")
    assert list(market_operators(market=btc_usdt)) == []
    assert market_events(btc_usdt) == []
