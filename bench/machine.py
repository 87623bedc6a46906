"""How fast this machine runs Python right now, next to a benchmark's results.

The shared machines the benchmarks run on change speed by a factor of two or more from one
hour to the next (the same drain has measured 5,400 and 2,300 orders/s). Every benchmark
prints this reference first: a fixed single-threaded workload of the kinds the server's
hot paths do (attribute and dict access, Decimal arithmetic, string formatting, JSON),
timed as the best of several runs. Results are comparable across runs and machines only
with their reference beside them: a result measured at 200 ms is not one measured at 100.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal

ROUNDS = 5


class _Row:
    __slots__ = ("price", "quantity", "side")

    def __init__(self, price: Decimal, quantity: Decimal, side: str) -> None:
        self.price, self.quantity, self.side = price, quantity, side


def _workload() -> int:
    tick = Decimal("0.01")
    book: dict[Decimal, Decimal] = {}
    rows = []
    for i in range(40_000):
        row = _Row(Decimal(2000) + tick * (i % 300), Decimal(i % 97 + 1) / 1000, "buy" if i & 1 else "sell")
        book[row.price] = book.get(row.price, Decimal(0)) + row.quantity
        rows.append(f"{row.side}:{row.price}:{row.quantity:f}")
    text = json.dumps({"rows": rows[:5000], "book": {str(k): str(v) for k, v in book.items()}})
    return len(json.loads(text)["rows"]) + len(rows)


def reference_ms() -> float:
    """The workload's best time of ``ROUNDS`` runs, in milliseconds."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        _workload()
        best = min(best, time.process_time() - started)
    return best * 1000


def speed_line() -> str:
    return f"machine reference (bench/machine.py): {reference_ms():.0f} ms"


if __name__ == "__main__":
    print(speed_line())
