"""GET /api/v1/positions against numbers worked out by hand, written here as literals:
a trade history of one user (buys as taker and as maker, a partly filled sell, fees on
each), the same ETH valued in USDT and in BTC, and a close the book cannot absorb whole.

Fees as docs/orders.md counts them: a buy's cost is its notional plus the fee it paid; a
sell realizes its proceeds less its fee less quantity x average cost. Rates: maker 0.1 %,
taker 0.2 % on both markets."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orders.models import Market, Order
from orders.pricing import market_check
from orders.tests.conftest import balance, client_of
from orders.tests.test_matching import assert_audit_ok, place, run_matcher
from wallets.models import AccountKind, Currency
from wallets.tests.factories import UserFactory, fund

URL = "/api/v1/positions"


@pytest.fixture
def eth_btc(markets) -> Market:
    """ETH quoted in BTC: tick 0.00001 BTC, lot 0.001 ETH (a quote unit of 1e-8 BTC)."""
    market = Market(
        symbol="ETH-BTC",
        base=Currency.objects.get(code="ETH"),
        quote=Currency.objects.get(code="BTC"),
        tick_size=Decimal("0.00001"),
        lot_size=Decimal("0.001"),
        min_notional=Decimal("0.0001"),
        maker_fee_rate=Decimal("0.001"),
        taker_fee_rate=Decimal("0.002"),
    )
    market_check(market)
    market.save()
    return market


@pytest.fixture
def pat(markets):
    """The user whose positions are read: 10000 USDT and 1 BTC, no ETH of unknown cost."""
    user = UserFactory(email="pat@example.com")
    fund(user, Currency.objects.get(code="USDT"), "10000")
    fund(user, Currency.objects.get(code="BTC"), "1")
    return user


@pytest.fixture
def history(eth_btc, pat, alice_client, bob_client, bob):
    """Alice makes the markets; Bob's trades only set the last prices. Returns Pat's
    partly filled sell."""
    pat_client = client_of(pat)
    fund(bob, Currency.objects.get(code="BTC"), "1")

    def trade(first_client, first: dict, second_client, second: dict, symbol: str = "ETH-USDT") -> dict:
        body = place(first_client, market=symbol, **first)
        run_matcher(symbol)
        place(second_client, market=symbol, **second)
        run_matcher(symbol)
        return body

    # ETH-USDT
    # 1. Pat takes Alice's ask: buys 1 at 2000 as the taker, fee 4.
    trade(
        alice_client,
        {"side": "sell", "price": "2000", "quantity": "1"},
        pat_client,
        {"side": "buy", "price": "2000", "quantity": "1"},
    )
    # 2. Alice sells into Pat's bid: Pat buys 2 at 1900 as the maker, fee 3.8.
    trade(
        pat_client,
        {"side": "buy", "price": "1900", "quantity": "2"},
        alice_client,
        {"side": "sell", "price": "1900", "quantity": "2"},
    )
    # 3. Pat offers 1 at 2050; Alice takes 0.5 of it: Pat sells 0.5 as the maker, fee 1.025.
    sell = trade(
        pat_client,
        {"side": "sell", "price": "2050", "quantity": "1"},
        alice_client,
        {"side": "buy", "price": "2050", "quantity": "0.5"},
    )
    # 4. Bob buys 0.1 from Alice at 2040: the last price.
    trade(
        alice_client,
        {"side": "sell", "price": "2040", "quantity": "0.1"},
        bob_client,
        {"side": "buy", "price": "2040", "quantity": "0.1"},
    )
    # ETH-BTC
    # 5. Pat takes Alice's ask: buys 0.5 at 0.05 BTC as the taker, fee 0.025 x 0.002 = 0.00005.
    trade(
        alice_client,
        {"side": "sell", "price": "0.05", "quantity": "0.5"},
        pat_client,
        {"side": "buy", "price": "0.05", "quantity": "0.5"},
        "ETH-BTC",
    )
    # 6. Bob buys 0.1 from Alice at 0.052: the last price.
    trade(
        alice_client,
        {"side": "sell", "price": "0.052", "quantity": "0.1"},
        bob_client,
        {"side": "buy", "price": "0.052", "quantity": "0.1"},
        "ETH-BTC",
    )
    order = Order.objects.get(pk=sell["id"])
    assert (order.status, order.filled_quantity) == ("partially_filled", Decimal("0.5"))
    return sell


def positions(client, quote: str | None = None) -> dict:
    response = client.get(URL if quote is None else f"{URL}?quote={quote}")
    assert response.status_code == 200, response.json()
    return response.json()


def no_cost(asset: str, quantity: str) -> dict:
    """A holding of unknown cost with no price in the chosen quote."""
    return {
        "asset": asset,
        "quantity": quantity,
        "available": quantity,
        "costed_quantity": "0",
        "uncosted_quantity": quantity,
        "average_cost": None,
        "last_price": None,
        "market_value": None,
        "realized_pnl": "0",
        "unrealized_pnl": "0",
    }


def test_positions_in_usdt_worked_out_by_hand(history, pat):
    # ETH bought in ETH-USDT: 1 + 2 = 3, at a cost of (2000 + 4) + (3800 + 3.8) = 5807.8;
    # average 5807.8 / 3 = 1935.9333... -> 1935.933333.
    # The sell of 0.5 at 2050: proceeds 1025 - 1.025 = 1023.975, cost out
    # 0.5 x 5807.8 / 3 = 967.9666...; realized 56.008333... -> 56.008333.
    # Left: 2.5 at a cost of 14519.5 / 3 = 4839.8333...; the 0.5 ETH bought for BTC has
    # no cost in USDT. Held: 2.5 + 0.5 = 3, of which 0.5 locked in the rest of the sell.
    # Unrealized at 2040: 2.5 x 2040 - 4839.8333... = 260.1666... -> 260.166667 (from the
    # rounded average it would be 2.5 x (2040 - 1935.933333) = 260.1666675 -> 260.166668:
    # the value is rounded once, at the end).
    # Market value: 3 x 2040 = 6120.
    # USDT left: 10000 - 2004 - 3803.8 + 1023.975 = 5216.175; BTC: 1 - 0.025 - 0.00005.
    assert positions(client_of(pat)) == {
        "quote": "USDT",
        "positions": [
            no_cost("BTC", "0.97495"),  # BTC-USDT has not traded: no price
            {
                "asset": "ETH",
                "quantity": "3",
                "available": "2.5",
                "costed_quantity": "2.5",
                "uncosted_quantity": "0.5",
                "average_cost": "1935.933333",
                "last_price": "2040",
                "market_value": "6120",
                "realized_pnl": "56.008333",
                "unrealized_pnl": "260.166667",
            },
        ],
    }
    assert balance(pat, Currency.objects.get(code="USDT")) == Decimal("5216.175")


def test_the_same_holding_valued_in_btc_counts_only_the_btc_trades(history, pat):
    # ETH bought in ETH-BTC: 0.5 at a cost of 0.025 + 0.00005 = 0.02505 BTC; average
    # 0.02505 / 0.5 = 0.0501. The 2.5 ETH from ETH-USDT have no cost in BTC; the sell in
    # ETH-USDT realizes nothing here.
    # Unrealized at 0.052: 0.5 x (0.052 - 0.0501) = 0.00095. Market value: 3 x 0.052 = 0.156.
    assert positions(client_of(pat), "btc") == {
        "quote": "BTC",
        "positions": [
            {
                "asset": "ETH",
                "quantity": "3",
                "available": "2.5",
                "costed_quantity": "0.5",
                "uncosted_quantity": "2.5",
                "average_cost": "0.0501",
                "last_price": "0.052",
                "market_value": "0.156",
                "realized_pnl": "0",
                "unrealized_pnl": "0.00095",
            },
            no_cost("USDT", "5216.175"),  # there is no USDT-BTC market
        ],
    }


def test_close_sells_what_the_book_absorbs_and_the_rest_stays(history, pat, alice_client):
    usdt, eth = Currency.objects.get(code="USDT"), Currency.objects.get(code="ETH")
    place(alice_client, side="buy", price="2030", quantity="1")
    place(alice_client, side="buy", price="2020", quantity="0.6")
    run_matcher()

    response = client_of(pat).post(f"{URL}/ETH/close")
    assert response.status_code == 201, response.json()
    body = response.json()
    # The free 2.5 ETH (the 0.5 locked in the resting sell stays where it is).
    assert (body["market"], body["side"], body["type"], body["quantity"], body["status"]) == (
        "ETH-USDT",
        "sell",
        "market",
        "2.5",
        "pending",
    )
    assert (balance(pat, eth), balance(pat, eth, AccountKind.LOCKED)) == (Decimal(0), Decimal(3))
    run_matcher()

    # The bids take 1 at 2030 and 0.6 at 2020: 1.6 sold for 2030 + 1212 = 3242, taker
    # fee 3242 x 0.002 = 6.484. The other 0.9 finds no bid: it expires and is released.
    close = Order.objects.get(pk=body["id"])
    assert (close.status, close.reject_reason, close.hold_left) == ("expired", "ioc_remainder", 0)
    assert (close.filled_quantity, close.filled_quote, close.fee_paid) == (
        Decimal("1.6"),
        Decimal(3242),
        Decimal("6.484"),
    )
    assert (balance(pat, eth), balance(pat, eth, AccountKind.LOCKED)) == (Decimal("0.9"), Decimal("0.5"))
    assert balance(pat, usdt) == Decimal("8451.691")  # 5216.175 + 3242 - 6.484

    # Realized, the history's three sells at the average 5807.8 / 3:
    #   1023.975 - 0.5 x 5807.8 / 3  (the partly filled sell)
    # + (2030 - 4.06) - 1 x 5807.8 / 3  (4.06 = 2030 x 0.002)
    # + (1212 - 2.424) - 0.6 x 5807.8 / 3  (2.424 = 6.484 - 4.06)
    # = 4259.491 - 2.1 x 5807.8 / 3 = 4259.491 - 4065.46 = 194.031.
    # Left with a cost: 3 - 0.5 - 1.6 = 0.9 at 0.9 x 5807.8 / 3 = 1742.34; held 0.9 + 0.5 = 1.4,
    # 0.5 of it (bought for BTC) of unknown cost in USDT.
    # Unrealized at 2020: 0.9 x 2020 - 1742.34 = 75.66. Market value: 1.4 x 2020 = 2828.
    eth_in_usdt = positions(client_of(pat))["positions"][1]
    assert eth_in_usdt == {
        "asset": "ETH",
        "quantity": "1.4",
        "available": "0.9",
        "costed_quantity": "0.9",
        "uncosted_quantity": "0.5",
        "average_cost": "1935.933333",
        "last_price": "2020",
        "market_value": "2828",
        "realized_pnl": "194.031",
        "unrealized_pnl": "75.66",
    }
    # In BTC the cost basis is still the 0.5 bought there; the holding is now 1.4 ETH:
    # market value 1.4 x 0.052 = 0.0728.
    eth_in_btc = positions(client_of(pat), "BTC")["positions"][0]
    assert eth_in_btc == {
        "asset": "ETH",
        "quantity": "1.4",
        "available": "0.9",
        "costed_quantity": "0.5",
        "uncosted_quantity": "0.9",
        "average_cost": "0.0501",
        "last_price": "0.052",
        "market_value": "0.0728",
        "realized_pnl": "0",
        "unrealized_pnl": "0.00095",
    }
    assert_audit_ok()
