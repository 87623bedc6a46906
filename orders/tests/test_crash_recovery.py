"""The matcher killed with SIGKILL at random moments under load loses nothing and fills
nothing twice.

A real matcher process (``manage.py run_matcher``) works on MariaDB while threads place
and cancel orders for many users; the test kills it at random instants — between
batches, mid-transaction, while it rebuilds — and starts it again. Afterwards every
order is final or resting and agrees with the trades, every locked balance equals the
holds of its owner's live orders, the ledger audit passes, and the book rebuilt from the
database equals a replay of every command the orders table records.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection, connections

from kootabase.errors import ServiceError
from orders.models import Order, OrderStatus, Trade
from orders.services import order_cancel, order_place
from orders.tests.conftest import LIVE, assert_settled_consistently
from wallets.models import Currency
from wallets.tests.factories import UserFactory, fund

ROOT = Path(__file__).resolve().parents[2]
SYMBOL = "ETH-USDT"
USERS = 8
THREADS = 4
OPS_PER_THREAD = 300
MIN_KILLS = 6


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"mysql://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 3306}/{s['NAME']}"


class MatcherProcess:
    """The market's matcher as its own OS process, started again after every kill."""

    def __init__(self, var_dir: Path, *options: str) -> None:
        self.options = options
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "DJANGO_SETTINGS_MODULE": "kootabase.settings_test",
            "KOOTABASE_VAR_DIR": str(var_dir),
        }
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> None:
        """Start it; a start refused because the dead one's lock is not yet released is retried."""
        for _ in range(50):
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "run_matcher", "--market", SYMBOL, *self.options],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                self.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                return  # running
            time.sleep(0.2)
        raise AssertionError(f"the matcher would not start: {self.proc.stderr.read().decode()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


def _trader(users: list, seed: int, errors: list[BaseException]) -> None:
    """Place and cancel orders at random around 2000 USDT, as several users."""
    rng = random.Random(seed)
    mine: list[tuple[object, int]] = []
    try:
        for _ in range(OPS_PER_THREAD):
            user = rng.choice(users)
            roll = rng.random()
            try:
                if roll < 0.25 and mine:
                    owner, order_id = mine.pop(rng.randrange(len(mine)))
                    order_cancel(user=owner, order_id=order_id)
                    continue
                side = rng.choice(["buy", "sell"])
                quantity = Decimal(rng.randint(1, 50)) / 100
                if roll < 0.35:
                    kwargs = {"type": "market", "quantity": quantity}
                    if side == "buy":
                        kwargs = {"type": "market", "quote_amount": Decimal(rng.randint(20, 400))}
                elif roll < 0.45:
                    kwargs = {"type": "limit", "time_in_force": "ioc", "quantity": quantity}
                    kwargs["price"] = Decimal(rng.randint(1990, 2010))
                else:
                    kwargs = {"type": "limit", "quantity": quantity, "price": Decimal(rng.randint(1990, 2010))}
                order = order_place(user=user, market_symbol=SYMBOL, side=side, **kwargs)
                mine.append((user, order.pk))
            except ServiceError as exc:
                # market sells with an empty book, cancels of orders that filled meanwhile
                assert exc.code in {"order_not_cancellable", "insufficient_funds"}, exc.code
            time.sleep(rng.uniform(0, 0.01))
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)
    finally:
        connections.close_all()


def _wait_until_drained(timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = Order.objects.filter(status=OrderStatus.PENDING).count()
        cancels = Order.objects.filter(cancel_requested=True, status__in=LIVE).count()
        if not pending and not cancels:
            return
        time.sleep(0.2)
    raise AssertionError("the matcher did not drain its queue")


@pytest.mark.mariadb
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "options",
    [(), ("--batch-size", "8")],
    ids=["batches", "small-batches-read-ahead"],  # small batches: full reads, so batches are read ahead in flight
)
def test_sigkilled_matcher_loses_nothing_and_fills_nothing_twice(markets, tmp_path, options):
    usdt, eth = Currency.objects.get(code="USDT"), Currency.objects.get(code="ETH")
    users = [UserFactory() for _ in range(USERS)]
    for user in users:
        fund(user, usdt, "200000")
        fund(user, eth, "100")

    matcher = MatcherProcess(tmp_path, *options)
    matcher.start()
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_trader, args=(users, 1000 + i, errors)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    killer = random.Random(20261121)
    try:
        while any(thread.is_alive() for thread in threads) or matcher.kills < MIN_KILLS:
            time.sleep(killer.uniform(0.05, 0.6))
            matcher.kill()
            matcher.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        _wait_until_drained()
    finally:
        matcher.stop()
    assert matcher.kills >= MIN_KILLS

    assert Trade.objects.count() > 20, "the load should have traded"
    assert_settled_consistently(SYMBOL)
