"""Settlement conserves money and agrees with the trades, whatever the order flow.

Seeded random sequences of orders (limit GTC, IOC, FOK and post-only, market by quantity
or by quote amount, stop-limit, stop-market) from three users, one of them in a fee tier,
are placed through the API and cancelled at random while the matcher runs in small or
large batches and restarts (rebuilding its book from the database). After everything is
cancelled:

- no money is created or lost: per currency, the users' balances and the fee account add
  up to what was funded, and each user's balance is the funding plus their trades;
- nothing stays locked, and while the sequence runs each user's locked balance equals
  the holds left on their orders;
- every order agrees with its trades (filled quantity, quote, taker quote, fee), pays
  the floor of its rate times its notional, and has spent plus released exactly its hold;
- every trade is at the maker's price, never beyond the taker's limit, never a self trade;
- the commands the orders table records (``seq``, ``cancel_seq``), replayed in sequence
  order through the pure engine from an empty book, give exactly the stored trades.

Targeted cases check the same on flows the random ones reach rarely.
"""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest
from django.contrib.auth.models import Group

from matching.engine import EventKind, PyOrderBook
from orders.matcher import MarketMatcher
from orders.models import FeeTier, Market, Order, OrderStatus, Trade
from orders.pricing import market_spec
from orders.tests.conftest import client_of, fees_balance, recorded_commands, trader
from orders.tests.test_matching import URL, place, run_matcher
from wallets.models import AccountKind, LedgerAccount, LedgerLeg
from wallets.services import ledger_audit_run

SYMBOL = "ETH-USDT"
FINAL = {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
# What placement may refuse in a random sequence: the order is too big for what is left, or
# too small, or its stop is no longer on the right side of the last price.
EXPECTED_REFUSALS = {"insufficient_funds", "below_min_notional", "stop_price_wrong_side"}
Q6 = Decimal("0.000001")
TICK = Decimal("0.37")  # a multiple of the 0.01 tick that gives prices odd digits
MID = Decimal("2000")


def floor6(value: Decimal) -> Decimal:
    return value.quantize(Q6, rounding=ROUND_FLOOR)


def ceil6(value: Decimal) -> Decimal:
    return value.quantize(Q6, rounding=ROUND_CEILING)


def setup_market(maker: str, taker: str, tier: tuple[str, str] | None = None) -> tuple[Market, list]:
    """ETH-USDT at the given fee rates and three funded users; the third is in a fee tier
    with the (maker, taker) rates ``tier`` when given."""
    market = Market.objects.get(symbol=SYMBOL)
    market.maker_fee_rate, market.taker_fee_rate = Decimal(maker), Decimal(taker)
    market.save()
    users = [trader(f"u{i}@example.com") for i in range(3)]
    if tier is not None:
        vip = Group.objects.create(name="vip")
        FeeTier.objects.create(
            group=vip, market=market, maker_fee_rate=Decimal(tier[0]), taker_fee_rate=Decimal(tier[1])
        )
        users[2].groups.add(vip)
    return market, users


def user_balances() -> dict[tuple[int, int, str], Decimal]:
    """Every user's balance by (user, currency, kind)."""
    out: dict[tuple[int, int, str], Decimal] = defaultdict(Decimal)
    for user_id, currency_id, kind, amount in LedgerAccount.objects.filter(user__isnull=False).values_list(
        "user_id", "currency_id", "kind", "balance"
    ):
        out[(user_id, currency_id, kind)] += amount
    return out


def cancel_everything(users) -> None:
    for user in users:
        assert client_of(user).delete(f"{URL}?market={SYMBOL}").status_code == 202
    run_matcher()


# --- The checks -----------------------------------------------------------------------------


def trade_problems(trades: list[Trade], orders: dict[int, Order]) -> list[str]:
    problems = []
    for t in trades:
        maker, taker = orders[t.maker_order_id], orders[t.taker_order_id]
        tag = f"trade {t.trade_no}"
        if t.quote_amount != t.price * t.quantity:
            problems.append(f"{tag}: quote_amount {t.quote_amount} != price x quantity")
        if t.maker_user_id == t.taker_user_id:
            problems.append(f"{tag}: self trade of user {t.maker_user_id}")
        if t.maker_fee < 0 or t.taker_fee < 0:
            problems.append(f"{tag}: negative fee {t.maker_fee}/{t.taker_fee}")
        if maker.price is not None and t.price != maker.price:
            problems.append(f"{tag}: price {t.price} is not the maker's {maker.price}")
        if taker.price is not None and (t.price > taker.price if t.taker_side == "buy" else t.price < taker.price):
            problems.append(f"{tag}: price {t.price} beyond the taker's limit {taker.price}")
        if maker.side == taker.side or taker.side != t.taker_side:
            problems.append(f"{tag}: sides {maker.side}/{taker.side}, taker side {t.taker_side}")
    return problems


def order_problems(trades: list[Trade], orders: dict[int, Order]) -> list[str]:
    sums = defaultdict(lambda: {"qty": Decimal(0), "quote": Decimal(0), "taker_quote": Decimal(0), "fee": Decimal(0)})
    for t in trades:
        for order_id, fee, is_taker in ((t.maker_order_id, t.maker_fee, False), (t.taker_order_id, t.taker_fee, True)):
            agg = sums[order_id]
            agg["qty"] += t.quantity
            agg["quote"] += t.quote_amount
            agg["fee"] += fee
            if is_taker:
                agg["taker_quote"] += t.quote_amount
    released: dict[str, Decimal] = defaultdict(Decimal)
    for reference, amount in LedgerLeg.objects.filter(entry__kind="release", amount__gt=0).values_list(
        "entry__reference", "amount"
    ):
        released[reference] += amount

    problems = []
    for o in orders.values():
        agg = sums[o.pk]
        tag = f"order {o.pk} ({o.side} {o.type} {o.time_in_force} post_only={o.post_only} {o.status})"
        if o.status not in FINAL:
            problems.append(f"{tag}: not final after cancelling everything")
        if o.hold_left != 0:
            problems.append(f"{tag}: hold_left {o.hold_left} in a final state")
        for field, key in (
            ("filled_quantity", "qty"),
            ("filled_quote", "quote"),
            ("taker_quote", "taker_quote"),
            ("fee_paid", "fee"),
        ):
            if getattr(o, field) != agg[key]:
                problems.append(f"{tag}: {field} {getattr(o, field)} != sum over its trades {agg[key]}")
        expected_fee = floor6(agg["taker_quote"] * o.taker_fee_rate) + floor6(
            (agg["quote"] - agg["taker_quote"]) * o.maker_fee_rate
        )
        if o.fee_paid != expected_fee:
            problems.append(f"{tag}: fee_paid {o.fee_paid} != floor(rate x notional) {expected_fee}")
        if o.quantity is not None:
            if o.filled_quantity > o.quantity:
                problems.append(f"{tag}: overfilled {o.filled_quantity} > {o.quantity}")
            if (o.status == OrderStatus.FILLED) != (o.filled_quantity == o.quantity):
                problems.append(f"{tag}: {o.filled_quantity} of {o.quantity} filled")
        if o.status == OrderStatus.REJECTED and o.filled_quantity:
            problems.append(f"{tag}: rejected after filling")
        if o.time_in_force == "fok" and o.status != OrderStatus.FILLED and o.filled_quantity:
            problems.append(f"{tag}: FOK partially filled")
        # Where the hold went: what was spent plus what was released is exactly what was held.
        spent = o.filled_quote + o.fee_paid if o.side == "buy" else o.filled_quantity
        back = released[f"release:{o.pk}"]
        if spent + back != o.hold_amount:
            problems.append(f"{tag}: hold {o.hold_amount} != spent {spent} + released {back}")
        if o.side == "buy" and o.quote_amount is not None and spent > o.quote_amount:
            problems.append(f"{tag}: spent {spent} above its quote amount {o.quote_amount}")
    return problems


def balance_problems(market: Market, users, funded, trades: list[Trade], orders: dict[int, Order]) -> list[str]:
    currencies = (market.quote_id, market.base_id)
    expected: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for (user_id, currency_id, _kind), amount in funded.items():
        expected[(user_id, currency_id)] += amount
    for t in trades:
        for order, fee in ((orders[t.maker_order_id], t.maker_fee), (orders[t.taker_order_id], t.taker_fee)):
            sign = 1 if order.side == "buy" else -1
            expected[(order.user_id, market.base_id)] += sign * t.quantity
            expected[(order.user_id, market.quote_id)] += -sign * t.quote_amount - fee
    now = user_balances()
    problems = []
    for user in users:
        for currency_id in currencies:
            locked = now[(user.pk, currency_id, AccountKind.LOCKED)]
            total = now[(user.pk, currency_id, AccountKind.AVAILABLE)] + locked
            if locked != 0:
                problems.append(f"user {user.pk}: {locked} of currency {currency_id} still locked")
            if total != expected[(user.pk, currency_id)]:
                problems.append(
                    f"user {user.pk} currency {currency_id}: balance {total} != funding + trades "
                    f"{expected[(user.pk, currency_id)]}"
                )
    for currency in (market.quote, market.base):
        users_total = sum((v for (_, c, _), v in now.items() if c == currency.pk), Decimal(0))
        funded_total = sum((v for (_, c, _), v in funded.items() if c == currency.pk), Decimal(0))
        if users_total + fees_balance(currency) != funded_total:
            problems.append(
                f"{currency.code}: users {users_total} + fees {fees_balance(currency)} != funded {funded_total}"
            )
    fee_sum = sum((t.maker_fee + t.taker_fee for t in trades), Decimal(0))
    if fees_balance(market.quote) != fee_sum:
        problems.append(f"fee account {fees_balance(market.quote)} != sum of the trades' fees {fee_sum}")
    if fees_balance(market.base) != 0:
        problems.append(f"fee account holds base {fees_balance(market.base)}")
    return problems


def settlement_problems(market: Market, users, funded) -> list[str]:
    """Everything the module docstring promises after the sequence, as a list of findings."""
    market = Market.objects.select_related("base", "quote").get(pk=market.pk)
    orders = Order.objects.filter(market=market).in_bulk()
    trades = list(Trade.objects.filter(market=market).order_by("trade_no"))
    problems = [
        *trade_problems(trades, orders),
        *order_problems(trades, orders),
        *balance_problems(market, users, funded, trades, orders),
    ]
    audit = ledger_audit_run(store=False)
    if not audit.ok:
        problems.append(f"ledger audit: {audit.findings}")
    return problems


def replay_problems(market: Market) -> list[str]:
    """The orders table holds every command: each order's placement (``seq``) and, when the
    matcher cancelled it in the book, its cancel (``cancel_seq``). Merged by sequence
    number and replayed through the pure engine from an empty book, they give exactly the
    stored trades and the book the matcher rebuilds."""
    rebuilt, commands = recorded_commands(market.symbol)
    problems = []
    if [c.seq for c in commands] != list(range(1, len(commands) + 1)):
        problems.append("the recorded sequence numbers are not 1, 2, 3, ...")
    book, replayed = PyOrderBook(), []
    for command in commands:
        for event in book.apply(command):
            if event[0] == EventKind.TRADE:
                replayed.append((event.maker_order_id, event.taker_order_id, event.price, event.qty))
    spec = market_spec(market)
    stored = [
        (t.maker_order_id, t.taker_order_id, spec.price_to_ticks(t.price), spec.qty_to_lots(t.quantity))
        for t in Trade.objects.filter(market=market).order_by("trade_no")
    ]
    if replayed != stored:
        first = next((i for i, (x, y) in enumerate(zip(replayed, stored, strict=False)) if x != y), None)
        first = min(len(replayed), len(stored)) if first is None else first
        problems.append(
            f"the replay differs from the stored trades at #{first}: replay {replayed[first : first + 3]}, "
            f"stored {stored[first : first + 3]} ({len(replayed)} against {len(stored)} trades)"
        )
    if book.state() != rebuilt:
        problems.append("the replayed book differs from the book rebuilt from the database")
    return problems


def assert_settled(market: Market, users, funded, label: str = "") -> None:
    """Cancel everything, then check the settlement and the replay."""
    cancel_everything(users)
    problems = settlement_problems(market, users, funded) + replay_problems(market)
    assert not problems, f"{label}\n" + "\n".join(problems[:25])


# --- Random sequences -----------------------------------------------------------------------


def random_order(rng: random.Random, last_price: Decimal) -> dict:
    """One order body as a client might send it. Only what placement accepts in principle:
    no post-only stop-limit, no FOK market order (both are refused up front)."""
    side = rng.choice(["buy", "sell"])
    up = 1 if side == "buy" else -1

    def price(k: int) -> str:
        return str(MID + k * TICK)

    def lots(low: int, high: int) -> str:
        return str(rng.randint(low, high) * Decimal("0.0001"))

    def quote(low: int, high: int) -> str:
        return str(rng.randint(low, high) * Q6)

    kind = rng.random()
    if kind < 0.55:
        tif = rng.choice(["gtc"] * 5 + ["ioc", "fok"])
        size = lots(50, 4000) if rng.random() < 0.9 else lots(40_000, 300_000)
        body = {"side": side, "type": "limit", "price": price(rng.randint(-6, 6)), "quantity": size}
        body["time_in_force"] = tif
        if tif == "gtc" and rng.random() < 0.15:
            body["post_only"] = True
        return body
    if kind < 0.75:
        if side == "buy" and rng.random() < 0.5:
            return {"side": "buy", "type": "market", "quote_amount": quote(10_000_000, 9_000_000_000)}
        body = {"side": side, "type": "market", "quantity": lots(50, 3000)}
        if side == "buy":
            body["price"] = price(rng.randint(-5, 15))  # protection price
        elif rng.random() < 0.3:
            body["price"] = price(rng.randint(-15, 5))
        return body
    stop = last_price + up * rng.randint(1, 8) * TICK
    if rng.random() < 0.5:
        return {
            "side": side,
            "type": "stop-limit",
            "stop_price": str(stop),
            "price": str(stop + up * rng.randint(-3, 6) * TICK),
            "quantity": lots(50, 2000),
            "time_in_force": rng.choice(["gtc", "gtc", "ioc", "fok"]),
        }
    if side == "buy" and rng.random() < 0.5:
        return {"side": "buy", "type": "stop-market", "stop_price": str(stop), "quote_amount": quote(10**7, 5 * 10**9)}
    body = {"side": side, "type": "stop-market", "stop_price": str(stop), "quantity": lots(50, 2000)}
    if side == "buy":
        body["price"] = str(stop + 5)
    return body


class Flow:
    """Places and cancels orders through the API and runs one matcher, restarted on request."""

    def __init__(self, users, rng: random.Random, batch_size: int) -> None:
        self.users, self.rng, self.batch_size = users, rng, batch_size
        self.clients = {user.pk: client_of(user) for user in users}
        self.matcher: MarketMatcher | None = None
        self.placed: list[tuple[int, int]] = []  # (user id, order id)

    def order(self) -> dict:
        last = Trade.objects.order_by("-trade_no").values_list("price", flat=True).first()
        return {"market": SYMBOL, **random_order(self.rng, last or MID)}

    def place_one(self) -> None:
        user = self.rng.choice(self.users)
        response = self.clients[user.pk].post(URL, self.order())
        if response.status_code == 201:
            self.placed.append((user.pk, response.json()["id"]))
        else:
            assert response.status_code == 400 and response.json()["code"] in EXPECTED_REFUSALS, response.json()

    def place_many(self) -> None:
        user = self.rng.choice(self.users)
        orders = [self.order() for _ in range(self.rng.randint(2, 8))]
        response = self.clients[user.pk].post(f"{URL}/batch", {"orders": orders})
        assert response.status_code == 200, response.json()
        for result in response.json()["results"]:
            if result["status"] == 201:
                self.placed.append((user.pk, result["order"]["id"]))
            else:
                assert result["error"]["code"] in EXPECTED_REFUSALS, result

    def cancel_one(self) -> None:
        user_id, order_id = self.rng.choice(self.placed)
        response = self.clients[user_id].delete(f"{URL}/{order_id}")
        assert response.status_code in (202, 409), response.json()

    def run(self, restart: bool = False) -> None:
        if self.matcher is None or restart:
            self.close()
            self.matcher = MarketMatcher(symbol=SYMBOL, batch_size=self.batch_size)
            self.matcher.start()
        while self.matcher.run_once():
            pass

    def close(self) -> None:
        if self.matcher is not None:
            self.matcher.stop()
            self.matcher = None


def assert_locked_equals_holds(market: Market, users) -> None:
    holds: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for user_id, currency_id, hold_left in Order.objects.values_list("user_id", "hold_currency_id", "hold_left"):
        assert hold_left >= 0
        holds[(user_id, currency_id)] += hold_left
    now = user_balances()
    for user in users:
        for currency_id in (market.quote_id, market.base_id):
            locked = now[(user.pk, currency_id, AccountKind.LOCKED)]
            assert locked == holds[(user.pk, currency_id)], f"user {user.pk}: locked {locked} != holds left"


FEE_CASES = [
    # market maker, market taker, fee tier of the third user (maker, taker)
    ("0.0013", "0.0027", ("0.0007", "0.0011")),
    ("0.003", "0.001", ("0.0005", "0.0023")),  # the maker pays more than the taker
    ("0.001", "0.002", ("0", "0")),  # the tier pays nothing
]
SEEDS = [1, 2, 3, 4, 5, 6]  # each fee case with either rhythm of the matcher
STEPS = 150


@pytest.mark.parametrize("seed", SEEDS)
def test_random_sequence_conserves_money_and_settles_exactly(markets, seed):
    rng = random.Random(seed)
    maker, taker, tier = FEE_CASES[seed % len(FEE_CASES)]
    market, users = setup_market(maker, taker, tier)
    funded = user_balances()
    # Odd seeds: the matcher runs often, in small batches. Even seeds: rarely, in batches
    # large enough that an order's placement, fills and cancel meet in one batch.
    if seed % 2:
        flow, run_chance, check_chance = Flow(users, rng, batch_size=rng.choice([1, 3, 7])), 1.0, 0.2
    else:
        flow, run_chance, check_chance = Flow(users, rng, batch_size=2000), 0.15, 0.03
    try:
        for _ in range(STEPS):
            r = rng.random()
            if r < 0.08:
                flow.place_many()
            elif r < 0.72:
                flow.place_one()
            elif r < 0.82 and flow.placed:
                flow.cancel_one()
            elif rng.random() < run_chance:
                flow.run(restart=rng.random() < 0.3)
            if rng.random() < check_chance:
                flow.run()
                assert_locked_equals_holds(market, users)
        flow.run()
    finally:
        flow.close()
    assert Trade.objects.exists(), "the sequence made no trade"
    assert_settled(market, users, funded, f"seed {seed} (fees {maker}/{taker}, tier {tier}):")


# --- Targeted cases -------------------------------------------------------------------------


def test_a_fee_tier_member_is_held_and_charged_at_the_tier_rates(markets):
    market, users = setup_market("0.001", "0.002", ("0.0002", "0.0005"))
    seller, _, vip = users
    funded = user_balances()
    place(client_of(seller), side="sell", price="1999.99", quantity="0.3333")
    buy = place(client_of(vip), side="buy", price="2000.01", quantity="0.3333")
    order = Order.objects.get(pk=buy["id"])
    assert (order.maker_fee_rate, order.taker_fee_rate) == (Decimal("0.0002"), Decimal("0.0005"))
    assert order.hold_amount == ceil6(Decimal("2000.01") * Decimal("0.3333") * Decimal("1.0005"))
    run_matcher()
    order.refresh_from_db()
    notional = Decimal("1999.99") * Decimal("0.3333")
    assert order.fee_paid == floor6(notional * Decimal("0.0005"))  # the tier's taker rate
    assert Trade.objects.get().maker_fee == floor6(notional * Decimal("0.001"))  # the market's maker rate
    assert_settled(market, users, funded)


def test_a_maker_filled_in_many_pieces_pays_the_floor_of_its_rate_on_the_total(markets):
    """The fee of an order is the floor of its rate times its whole notional, not a sum of
    floored pieces, and never exceeds what was held for it."""
    market, users = setup_market("0.0019", "0.0029")
    buyer, seller, _ = users
    funded = user_balances()
    buy = place(client_of(buyer), side="buy", price="1999.99", quantity="1.2345")
    run_matcher()
    for _ in range(7):
        place(client_of(seller), side="sell", price="1999.99", quantity="0.0051")
    run_matcher()
    place(client_of(seller), side="sell", type="market", quantity="0.0307")
    run_matcher()
    order = Order.objects.get(pk=buy["id"])
    assert order.filled_quantity == Decimal("0.0664")
    assert order.fee_paid == floor6(Decimal("1999.99") * Decimal("0.0664") * Decimal("0.0019"))
    assert_settled(market, users, funded)


def test_a_market_buy_by_quote_amount_sweeping_several_levels_spends_at_most_the_amount(markets):
    market, users = setup_market("0.0013", "0.0027")
    seller, buyer, _ = users
    funded = user_balances()
    for i, quantity in enumerate(["0.0137", "0.0211", "0.0053", "0.0999"]):
        place(client_of(seller), side="sell", price=str(Decimal("1999.97") + i * TICK), quantity=quantity)
    run_matcher()
    buy = place(client_of(buyer), side="buy", type="market", quote_amount="123.456789")
    run_matcher()
    order = Order.objects.get(pk=buy["id"])
    assert Trade.objects.filter(taker_order=order).count() > 1
    assert 0 < order.filled_quote + order.fee_paid <= Decimal("123.456789")
    assert_settled(market, users, funded)


def test_triggered_stop_orders_settle_like_any_other(markets):
    market, users = setup_market("0.001", "0.002")
    a, b, c = (client_of(user) for user in users)
    funded = user_balances()
    place(a, side="sell", price="2000", quantity="0.5")
    place(b, side="buy", price="2000", quantity="0.5")
    run_matcher()  # the last price is 2000, the book empty
    place(c, side="buy", type="stop-market", stop_price="2000.5", quote_amount="300")
    place(c, side="buy", type="stop-limit", stop_price="2000.5", price="2002", quantity="0.05")
    place(a, side="sell", price="2001", quantity="0.3")
    place(c, side="sell", type="stop-market", stop_price="1990", quantity="0.1")
    run_matcher()
    place(b, side="buy", price="2001", quantity="0.01")  # trades at 2001: the buy stops fire
    run_matcher()
    statuses = sorted(Order.objects.filter(user=users[2]).values_list("type", "status"))
    assert statuses == [("stop-limit", "filled"), ("stop-market", "filled"), ("stop-market", "untriggered")]
    assert_settled(market, users, funded)


def test_a_taker_goes_past_its_own_resting_order_to_the_next_level(markets):
    market, users = setup_market("0.001", "0.002")
    a, b, _ = users
    funded = user_balances()
    mine = place(client_of(a), side="sell", price="2000", quantity="0.2")
    place(client_of(b), side="sell", price="2000.5", quantity="0.2")
    run_matcher()
    buy = place(client_of(a), side="buy", price="2001", quantity="0.3")
    run_matcher()
    assert Order.objects.get(pk=mine["id"]).status == "cancelled"
    assert list(Trade.objects.values_list("maker_user", "taker_user", "price", "quantity")) == [
        (b.pk, a.pk, Decimal("2000.5"), Decimal("0.2"))
    ]
    assert Order.objects.get(pk=buy["id"]).status == "partially_filled"
    assert_settled(market, users, funded)
