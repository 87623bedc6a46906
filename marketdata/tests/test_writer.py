"""The matcher's market-data writer: once it knows what it stored, a batch writes without
reading anything back; a rebuild or a rolled-back batch makes it read afresh; and what it
maintains always equals a rebuild from the trades."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from marketdata.models import Candle, DepthLevel, MarketState
from marketdata.services import MarketDataWriter, marketdata_rebuild
from marketdata.tests.conftest import place
from matching.engine import Top
from orders.models import Trade

pytestmark = pytest.mark.django_db


def aggregates() -> tuple:
    """What the writer and the rebuild both produce, ``seq`` apart."""
    return (
        list(
            Candle.objects.order_by("interval", "open_time").values_list(
                "interval", "open_time", "open", "high", "low", "close", "base_volume", "quote_volume", "trade_count"
            )
        ),
        sorted(DepthLevel.objects.values_list("side", "ticks", "price", "quantity")),
        MarketState.objects.values_list(
            "last_price", "last_trade_no", "best_bid", "best_bid_quantity", "best_ask", "best_ask_quantity"
        ).get(),
    )


def rebuilt(market) -> tuple:
    """The aggregates as a rebuild computes them (the rebuild is rolled back after)."""
    with pytest.raises(RuntimeError), transaction.atomic():
        marketdata_rebuild(market=market)
        found = aggregates()
        raise RuntimeError("undo")
    return found


@pytest.fixture
def batch(matcher, django_capture_on_commit_callbacks):
    """Run one matcher batch and its commit callbacks, as a real commit would."""

    def run() -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return matcher.run_once()

    return run


def marketdata_statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "marketdata_" in q["sql"]]


def test_a_writer_that_knows_what_it_stored_writes_without_reading(alice_client, bob_client, batch, markets):
    for price in ("2001", "2002", "2003"):
        place(alice_client, side="sell", price=price, quantity="1")
    place(alice_client, side="buy", price="1999", quantity="2")
    assert batch() == 4  # the first batch locks and reads the state
    place(bob_client, side="buy", price="2002", quantity="1.5")
    assert batch() == 1  # the first trades: their candles are read (none yet)
    place(bob_client, side="sell", price="1999", quantity="0.5")
    place(bob_client, side="buy", price="2003", quantity="0.5")
    with CaptureQueriesContext(connection) as queries:
        assert batch() == 2
    statements = marketdata_statements(queries)
    assert not [sql for sql in statements if sql.startswith("SELECT")], statements
    # the state, the changed levels (a level gone, so a delete too) and the candles
    assert len(statements) <= 4, statements
    assert aggregates() == rebuilt(markets["ETH-USDT"])
    state = MarketState.objects.get()
    assert (state.best_bid, state.best_ask, state.last_trade_no) == (1999, 2003, 4)


def test_a_rebuild_between_batches_makes_the_writer_read_afresh(alice_client, bob_client, batch, markets):
    place(alice_client, side="sell", price="2001", quantity="3")
    batch()
    place(bob_client, side="buy", price="2001", quantity="1")
    batch()  # the writer now knows this minute's candles
    # The trades move to yesterday and the aggregates are rebuilt: this minute has no candle now.
    Trade.objects.update(created_at=Trade.objects.get().created_at - timedelta(days=1))
    seq = marketdata_rebuild(market=markets["ETH-USDT"]).seq
    place(bob_client, side="buy", price="2001", quantity="0.5")
    batch()
    assert MarketState.objects.get().seq == seq + 1
    assert aggregates() == rebuilt(markets["ETH-USDT"])
    today = Candle.objects.filter(interval="1m").order_by("open_time").last()
    assert (today.trade_count, today.base_volume) == (1, D("0.5"))  # the new trade alone


def test_a_rolled_back_batch_is_not_remembered(markets, django_capture_on_commit_callbacks):
    market = markets["ETH-USDT"]
    writer = MarketDataWriter(market)
    bid = (20_000_000, 100)  # 2000 in ticks of 0.0001, 1 in lots of 0.01

    def apply(trades: list[Trade], quantity: int) -> None:
        writer.apply_batch(trades=trades, levels={("buy", bid[0]): quantity}, top=Top(bid[0], quantity, None, None))

    with django_capture_on_commit_callbacks(execute=True):
        apply([], bid[1])
    # A batch with a trade that rolls back; a rebuild then brings seq to where it would have been.
    moment = MarketState.objects.get().updated_at

    def trade(quantity: str) -> Trade:
        made = Trade(market=market, trade_no=1, price=2000, quantity=D(quantity), quote_amount=2000 * D(quantity))
        made.taker_side, made.created_at = "buy", moment
        return made

    with pytest.raises(RuntimeError), django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        apply([trade("1")], 50)
        raise RuntimeError("the batch fails")
    marketdata_rebuild(market=market)
    # The matcher's next trade is number 1 again: folded in as new, not taken for the old one.
    with django_capture_on_commit_callbacks(execute=True):
        apply([trade("0.2")], 80)
    assert MarketState.objects.values_list("seq", "last_trade_no").get() == (3, 1)
    assert list(Candle.objects.values_list("interval", "trade_count", "base_volume")) == [
        (interval, 1, D("0.2")) for interval in ("1d", "1h", "1m")
    ]
