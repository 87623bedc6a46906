"""The market controls in the back office: buttons and actions show only what the staff
member may do, each asks for a reason, runs the control and leaves an audit event; the
status cannot be edited in the form."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from accounts.models import User
from accounts.roles import ADMIN, MARKET_OPERATOR, SUPPORT
from accounts.tests.helpers import admin_login, staff_member
from audit import actions
from audit.models import AuditEvent
from orders.controls import market_may_operate, market_status_set
from orders.models import Market, Order
from orders.tests.conftest import world_state
from orders.tests.test_matching import place, run_matcher


@pytest.fixture
def btc_usdt(markets) -> Market:
    return markets["BTC-USDT"]


@pytest.fixture
def operator(eth_usdt) -> User:
    user = staff_member("operator@example.com", MARKET_OPERATOR)
    assign_perm("orders.operate_market", user, eth_usdt)
    return user


@pytest.fixture
def operator_client(operator) -> Client:
    return admin_login(Client(), operator)


def _control(market: Market, control: str) -> str:
    return f"/admin/orders/market/{market.pk}/control/{control}/"


def _status(market: Market) -> str:
    return Market.objects.get(pk=market.pk).status


def test_the_page_of_an_assigned_market_shows_its_controls_and_another_market_none(operator_client, eth_usdt, btc_usdt):
    page = operator_client.get(f"/admin/orders/market/{eth_usdt.pk}/change/").content.decode()
    for control in ("halt", "cancel-only", "cancel-orders"):
        assert _control(eth_usdt, control) in page
    assert _control(eth_usdt, "resume") not in page  # it is active already
    assert f"/admin/orders/market/{eth_usdt.pk}/operators/" not in page  # the admin's
    other = operator_client.get(f"/admin/orders/market/{btc_usdt.pk}/change/").content.decode()
    assert "/control/" not in other


def test_an_operator_halts_their_market_with_a_reason(operator_client, operator, eth_usdt):
    page = operator_client.get(_control(eth_usdt, "halt"))
    assert page.status_code == 200 and b"ETH-USDT is active" in page.content
    response = operator_client.post(
        _control(eth_usdt, "halt"), {"reason": "matching looks wrong"}, REMOTE_ADDR="192.0.2.7"
    )
    assert response.status_code == 302
    assert _status(eth_usdt) == Market.Status.HALTED
    event = AuditEvent.objects.get(action=actions.MARKET_HALTED)
    assert (event.actor, event.target_id, event.ip) == (operator, str(eth_usdt.pk), "192.0.2.7")
    assert event.details == {"reason": "matching looks wrong", "from": "active", "to": "halted"}
    page = operator_client.get(f"/admin/orders/market/{eth_usdt.pk}/change/").content.decode()
    assert _control(eth_usdt, "resume") in page and _control(eth_usdt, "halt") not in page


def test_no_reason_no_change(operator_client, eth_usdt):
    response = operator_client.post(_control(eth_usdt, "halt"), {"reason": " "})
    assert response.status_code == 200 and b"This field is required" in response.content
    assert _status(eth_usdt) == Market.Status.ACTIVE
    assert not AuditEvent.objects.filter(action__startswith="market.").exists()


def test_an_operator_cannot_halt_a_market_not_assigned_to_them(operator_client, btc_usdt):
    for control in ("halt", "cancel-only", "cancel-orders"):
        assert operator_client.get(_control(btc_usdt, control)).status_code == 403
        assert operator_client.post(_control(btc_usdt, control), {"reason": "mine now"}).status_code == 403
    assert _status(btc_usdt) == Market.Status.ACTIVE
    assert not AuditEvent.objects.filter(action__startswith="market.").exists()


def test_the_status_is_read_only_in_the_form(operator_client, operator, eth_usdt):
    market_status_set(market=eth_usdt, status=Market.Status.HALTED, actor=operator, reason="incident")
    response = operator_client.post(
        f"/admin/orders/market/{eth_usdt.pk}/change/",
        {
            "status": "active",
            "min_notional": "20",
            "maker_fee_rate": "0.001",
            "taker_fee_rate": "0.002",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    market = Market.objects.get(pk=eth_usdt.pk)
    assert (market.status, market.min_notional) == ("halted", Decimal(20))


def test_an_operator_edits_only_the_markets_assigned_to_them(operator_client, btc_usdt):
    before = Market.objects.values_list("min_notional", "maker_fee_rate").get(pk=btc_usdt.pk)
    page = operator_client.get(f"/admin/orders/market/{btc_usdt.pk}/change/")
    assert page.status_code == 200 and 'name="maker_fee_rate"' not in page.content.decode()  # view only
    response = operator_client.post(
        f"/admin/orders/market/{btc_usdt.pk}/change/",
        {"min_notional": "99", "maker_fee_rate": "0", "taker_fee_rate": "0"},
    )
    assert response.status_code == 403
    assert Market.objects.values_list("min_notional", "maker_fee_rate").get(pk=btc_usdt.pk) == before


def test_cancel_all_from_the_admin_goes_through_the_matcher(operator_client, alice_client, eth_usdt):
    resting = place(alice_client, side="sell", price="2100", quantity="1")
    run_matcher()
    page = operator_client.get(_control(eth_usdt, "cancel-orders"))
    assert b"with 1 live order(s)" in page.content
    assert operator_client.post(_control(eth_usdt, "cancel-orders"), {"reason": "bad prices"}).status_code == 302
    assert Order.objects.get(pk=resting["id"]).status == "open"  # asked; the matcher performs it
    run_matcher()
    cancelled = Order.objects.get(pk=resting["id"])
    assert (cancelled.status, cancelled.reject_reason, cancelled.hold_left) == ("cancelled", "market_cancel", 0)
    event = AuditEvent.objects.get(action=actions.MARKET_ORDERS_CANCELLED)
    assert event.details["orders"] == 1 and event.details["reason"] == "bad prices"


def test_changelist_actions_run_on_the_markets_the_operator_may_operate_only(operator_client, eth_usdt, btc_usdt):
    selected = {"action": "halt_selected", "_selected_action": [eth_usdt.pk, btc_usdt.pk]}
    confirm = operator_client.post("/admin/orders/market/", selected)
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "ETH-USDT (active)" in text and "left out: BTC-USDT" in text
    assert _status(eth_usdt) == _status(btc_usdt) == Market.Status.ACTIVE  # nothing before the confirmation
    response = operator_client.post("/admin/orders/market/", {**selected, "apply": "yes", "reason": "incident"})
    assert response.status_code == 302
    assert (_status(eth_usdt), _status(btc_usdt)) == (Market.Status.HALTED, Market.Status.ACTIVE)
    assert list(AuditEvent.objects.values_list("action", "target_id")) == [(actions.MARKET_HALTED, str(eth_usdt.pk))]


def test_the_actions_are_offered_only_to_who_may_operate_a_market(eth_usdt):
    idle = admin_login(Client(), staff_member("idle@example.com", MARKET_OPERATOR))
    page = idle.get("/admin/orders/market/").content.decode()
    assert "halt_selected" not in page and "cancel_orders_selected" not in page
    forged = idle.post("/admin/orders/market/", {"action": "halt_selected", "_selected_action": [eth_usdt.pk]})
    assert "admin/control_confirm.html" not in [t.name for t in forged.templates]  # back to the list
    assert _status(eth_usdt) == Market.Status.ACTIVE
    admin = admin_login(Client(), staff_member("admin-staff@example.com", ADMIN))
    assert "halt_selected" in admin.get("/admin/orders/market/").content.decode()


def test_an_admin_assigns_a_market_to_an_operator(eth_usdt, btc_usdt, operator):
    admin = admin_login(Client(), staff_member("admin-staff@example.com", ADMIN))
    page = admin.get(f"/admin/orders/market/{btc_usdt.pk}/operators/").content.decode()
    assert "operator@example.com" in page
    response = admin.post(
        f"/admin/orders/market/{btc_usdt.pk}/operators/", {"operators": [operator.pk], "reason": "holiday cover"}
    )
    assert response.status_code == 302
    assert market_may_operate(user=User.objects.get(pk=operator.pk), market=btc_usdt)
    event = AuditEvent.objects.get(action=actions.MARKET_OPERATORS_CHANGED)
    assert event.details == {"reason": "holiday cover", "added": ["operator@example.com"], "removed": []}


def test_a_non_operator_cannot_be_assigned_a_market(btc_usdt):
    admin = admin_login(Client(), staff_member("admin-staff@example.com", ADMIN))
    support = staff_member("support@example.com", SUPPORT)
    before = world_state()
    response = admin.post(f"/admin/orders/market/{btc_usdt.pk}/operators/", {"operators": [support.pk], "reason": "x"})
    assert response.status_code == 200  # the form refuses the choice
    assert not market_may_operate(user=User.objects.get(pk=support.pk), market=btc_usdt)
    assert world_state() == before
    assert not AuditEvent.objects.filter(action=actions.MARKET_OPERATORS_CHANGED).exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"maker_fee_rate": "-0.001"}, "maker_fee_rate must be in [0, 1)"),
        ({"taker_fee_rate": "1"}, "taker_fee_rate must be in [0, 1)"),
    ],
)
def test_a_market_with_a_rate_out_of_range_is_refused(operator_client, eth_usdt, change, message):
    before = Market.objects.values_list("maker_fee_rate", "taker_fee_rate").get(pk=eth_usdt.pk)
    form = {"min_notional": "10", "maker_fee_rate": "0.001", "taker_fee_rate": "0.002", **change}
    response = operator_client.post(f"/admin/orders/market/{eth_usdt.pk}/change/", form)
    assert response.status_code == 200 and message in response.content.decode()
    assert Market.objects.values_list("maker_fee_rate", "taker_fee_rate").get(pk=eth_usdt.pk) == before


def test_a_new_market_whose_sizes_do_not_fit_its_currencies_is_refused(markets):
    from wallets.models import Currency

    root = User.objects.create_superuser(email="root@example.com", password="pw-root-12345")
    admin = admin_login(Client(), root)
    eth, usdt = Currency.objects.get(code="ETH"), Currency.objects.get(code="USDT")
    form = {
        "symbol": "ETH-USDT2",
        "base": eth.pk,
        "quote": usdt.pk,
        "tick_size": "0.0001",  # x lot 0.0001 = 1e-8 USDT, finer than USDT's 6 places
        "lot_size": "0.0001",
        "min_notional": "10",
        "maker_fee_rate": "0.001",
        "taker_fee_rate": "0.002",
        "status": "active",
    }
    response = admin.post("/admin/orders/market/add/", form)
    assert response.status_code == 200 and "is not a multiple of 1e-6" in response.content.decode()
    assert not Market.objects.filter(symbol="ETH-USDT2").exists()
    response = admin.post("/admin/orders/market/add/", {**form, "tick_size": "0.01"})
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert Market.objects.filter(symbol="ETH-USDT2").exists()


def test_a_fee_tier_with_a_negative_rate_is_refused(operator_client, eth_usdt):
    from django.contrib.auth.models import Group

    from orders.models import FeeTier

    vip = Group.objects.create(name="vip")
    tier = FeeTier.objects.create(
        group=vip, market=eth_usdt, maker_fee_rate=Decimal("0.0005"), taker_fee_rate=Decimal("0.001")
    )
    form = {"group": vip.pk, "market": eth_usdt.pk, "maker_fee_rate": "-0.0001", "taker_fee_rate": "0.001"}
    response = operator_client.post(f"/admin/orders/feetier/{tier.pk}/change/", form)
    assert response.status_code == 200 and "maker_fee_rate must be in [0, 1)" in response.content.decode()
    assert FeeTier.objects.get().maker_fee_rate == Decimal("0.0005")
    response = operator_client.post(f"/admin/orders/feetier/{tier.pk}/change/", {**form, "maker_fee_rate": "0"})
    assert response.status_code == 302
    assert FeeTier.objects.get().maker_fee_rate == 0
