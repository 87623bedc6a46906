"""Matching engine benchmark: throughput, latency and memory per resting order.

Usage (from the repository root)::

    python bench/engine.py                      # every engine available, full run
    python bench/engine.py --commands 200000 --memory-orders 100000   # quick run

The command stream is generated once with a fixed seed and replayed through
each engine with full event output.  Its mix is modelled on exchange-core's
published benchmark: mostly order moves (price amendments) and placements,
some quantity reductions, cancels, IOC and market orders; about 1,000 resting
orders over about 750 price levels; a few percent of commands trade.

Reported per engine: commands per second (a plain loop over ``apply``),
p50 / p99 / p99.9 latency per command (``perf_counter_ns`` around each call,
timer overhead included), events per command, and bytes per resting order
with 1,000,000 resting orders (tracemalloc, book only).  The same place/cancel
stream is also run through ``lightmatchingengine`` from PyPI when it is
installed (``pip install -r bench/requirements.txt``), as an outside reference.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import speed_line

from matching.engine import (
    BUY,
    IOC,
    SELL,
    Amend,
    Cancel,
    Cancelled,
    Filled,
    NativeOrderBook,
    PlaceLimit,
    PlaceMarket,
    PyOrderBook,
    Trade,
)

MID = 1_000_000  # ticks
SPREAD_RANGE = 800  # resting prices within MID +- this many ticks
TARGET_RESTING = 1_000
OWNERS = 500


class StreamGenerator:
    """Builds a realistic command stream by running it through the pure engine."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.book = PyOrderBook()
        self.seq = 0
        self.next_id = 1
        self.live: list[int] = []
        self.index: dict[int, int] = {}
        self.commands: list[Any] = []
        self.trading_commands = 0

    # -- live order bookkeeping ---------------------------------------------
    def _add_live(self, oid: int) -> None:
        if oid not in self.index:
            self.index[oid] = len(self.live)
            self.live.append(oid)

    def _drop_live(self, oid: int) -> None:
        i = self.index.pop(oid, None)
        if i is None:
            return
        last = self.live.pop()
        if last != oid:
            self.live[i] = last
            self.index[last] = i

    def _apply(self, cmd: Any) -> None:
        self.commands.append(cmd)
        events = self.book.apply(cmd)
        touched = {cmd.order_id}
        traded = False
        for ev in events:
            if type(ev) is Trade:
                traded = True
            elif type(ev) in (Filled, Cancelled):
                touched.add(ev.order_id)
        self.trading_commands += traded
        for oid in touched:
            if self.book.order(oid) is None:
                self._drop_live(oid)
            else:
                self._add_live(oid)

    # -- command choices ----------------------------------------------------
    def _new_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _passive_price(self, side: int) -> int:
        offset = self.rng.randint(1, SPREAD_RANGE)
        return MID - offset if side == BUY else MID + offset

    def _aggressive_price(self, side: int) -> int:
        top = self.book.top()
        if side == BUY:
            base = top.ask_price if top.ask_price is not None else MID + 1
            return base + self.rng.randint(0, 3)
        base = top.bid_price if top.bid_price is not None else MID - 1
        return base - self.rng.randint(0, 3)

    def place(self, aggressive: bool = False, tif: int = 1) -> None:
        side = self.rng.choice((BUY, SELL))
        price = self._aggressive_price(side) if aggressive else self._passive_price(side)
        qty = self.rng.randint(1, 100)
        self._apply(PlaceLimit(self._new_seq(), self._new_id(), self.rng.randint(1, OWNERS), side, price, qty, tif))

    def market(self) -> None:
        side = self.rng.choice((BUY, SELL))
        if self.rng.random() < 0.3:
            cmd = PlaceMarket(
                self._new_seq(), self._new_id(), self.rng.randint(1, OWNERS), side, quote=MID * self.rng.randint(1, 50)
            )
        else:
            owner = self.rng.randint(1, OWNERS)
            cmd = PlaceMarket(self._new_seq(), self._new_id(), owner, side, qty=self.rng.randint(1, 60))
        self._apply(cmd)

    def move(self) -> None:
        oid = self.rng.choice(self.live)
        o = self.book.order(oid)
        assert o is not None
        price = o.price + self.rng.choice((-1, 1)) * self.rng.randint(1, 15)
        if abs(price - MID) > SPREAD_RANGE:
            price = self._passive_price(o.side)
        self._apply(Amend(self._new_seq(), oid, price, o.filled + o.remaining))

    def reduce(self) -> None:
        oid = self.rng.choice(self.live)
        o = self.book.order(oid)
        assert o is not None
        if o.remaining < 2:
            self.cancel(oid)
            return
        new_remaining = self.rng.randint(1, o.remaining - 1)
        self._apply(Amend(self._new_seq(), oid, o.price, o.filled + new_remaining))

    def cancel(self, oid: int | None = None) -> None:
        if oid is None:
            oid = self.rng.choice(self.live)
        self._apply(Cancel(self._new_seq(), oid))

    def fill_book(self) -> None:
        while len(self.live) < TARGET_RESTING:
            self.place()

    def step(self) -> None:
        r = self.rng.random()
        n = len(self.live)
        if r < 0.42:
            self.move()
        elif r < 0.50:
            self.reduce()
        elif r < 0.62:
            if n > TARGET_RESTING * 0.9:
                self.cancel()
            else:
                self.place()
        elif r < 0.94:
            if n < TARGET_RESTING * 1.1:
                self.place(aggressive=self.rng.random() < 0.03)
            else:
                self.cancel()
        elif r < 0.97:
            self.place(aggressive=True, tif=IOC)
        else:
            self.market()


def generate(n: int, seed: int) -> tuple[list[Any], list[Any], dict[str, float]]:
    """Return (warm-up commands, measured commands, stream statistics)."""
    gen = StreamGenerator(seed)
    gen.fill_book()
    warmup = gen.commands
    gen.commands = []
    gen.trading_commands = 0
    levels = []
    for i in range(n):
        gen.step()
        if i % 1000 == 0:
            bids, asks = gen.book.depth(1_000_000)
            levels.append(len(bids) + len(asks))
    kinds: dict[str, int] = {}
    for cmd in gen.commands:
        name = type(cmd).__name__
        if name == "PlaceLimit" and cmd.tif == IOC:
            name = "PlaceLimit-IOC"
        elif name == "Amend":
            name = "Amend(move or reduce)"
        kinds[name] = kinds.get(name, 0) + 1
    stats = {
        "resting_orders_end": float(len(gen.live)),
        "avg_price_levels": sum(levels) / len(levels),
        "trading_command_share": gen.trading_commands / n,
        **{f"share {k}": v / n for k, v in sorted(kinds.items())},
    }
    return warmup, gen.commands, stats


def place_cancel_stream(n: int, seed: int) -> tuple[list[Any], list[Any]]:
    """Non-crossing placements and cancels around ~1,000 resting orders."""
    rng = random.Random(seed)
    live: list[int] = []
    cmds: list[Any] = []
    for i in range(n + TARGET_RESTING):
        seq = i + 1
        if live and (len(live) > TARGET_RESTING or (i >= TARGET_RESTING and rng.random() < 0.5)):
            j = rng.randrange(len(live))
            live[j], live[-1] = live[-1], live[j]
            cmds.append(Cancel(seq, live.pop()))
        else:
            side = rng.choice((BUY, SELL))
            offset = rng.randint(1, SPREAD_RANGE)
            price = MID - offset if side == BUY else MID + offset
            cmds.append(PlaceLimit(seq, seq, rng.randint(1, OWNERS), side, price, rng.randint(1, 100)))
            live.append(seq)
    return cmds[:TARGET_RESTING], cmds[TARGET_RESTING:]


# -- measurement -------------------------------------------------------------


def percentile(sorted_values: list[int], q: float) -> float:
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


def measure(make_book: Callable[[], Any], warmup: list[Any], cmds: list[Any], repeat: int) -> dict[str, float]:
    perf, cpu = time.perf_counter, time.process_time
    best = best_cpu = float("inf")
    events = 0
    for _ in range(repeat):
        book = make_book()
        for c in warmup:
            book.apply(c)
        apply = book.apply
        gc.collect()
        gc.freeze()
        t0, c0 = perf(), cpu()
        for c in cmds:
            apply(c)
        best = min(best, perf() - t0)
        best_cpu = min(best_cpu, cpu() - c0)
        gc.unfreeze()
    # latency pass: same stream, each call timed
    book = make_book()
    for c in warmup:
        book.apply(c)
    apply = book.apply
    clock = time.perf_counter_ns
    lat = [0] * len(cmds)
    gc.collect()
    gc.freeze()
    for i, c in enumerate(cmds):
        t = clock()
        events += len(apply(c))
        lat[i] = clock() - t
    gc.unfreeze()
    overhead = min(_timer_overhead() for _ in range(5))
    lat.sort()
    return {
        "commands_per_s": len(cmds) / best,
        "commands_per_cpu_s": len(cmds) / best_cpu,
        "p50_us": percentile(lat, 0.50) / 1000,
        "p99_us": percentile(lat, 0.99) / 1000,
        "p999_us": percentile(lat, 0.999) / 1000,
        "max_us": lat[-1] / 1000,
        "timer_overhead_us": overhead / 1000,
        "events_per_command": events / len(cmds),
    }


def _timer_overhead() -> int:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(10_000):
        t = clock()
        samples.append(clock() - t)
    samples.sort()
    return samples[len(samples) // 2]


def memory_per_order(make_book: Callable[[], Any], n: int) -> float:
    """Bytes allocated per resting order once ``n`` orders rest (tracemalloc)."""

    def orders() -> Iterable[Any]:
        rng = random.Random(7)
        for i in range(1, n + 1):
            side = BUY if i % 2 else SELL
            offset = 1 + (i * 7919) % 5000  # 10,000 levels
            price = MID - offset if side == BUY else MID + offset
            yield PlaceLimit(i, 10_000_000 + i, 1 + i % 100_000, side, price, rng.randint(1, 100))

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book = make_book()
    for cmd in orders():
        book.apply(cmd)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(book) == n
    return (after - before) / n


def measure_lightmatchingengine(warmup: list[Any], cmds: list[Any]) -> dict[str, float] | None:
    try:
        from lightmatchingengine.lightmatchingengine import LightMatchingEngine
    except ImportError:
        return None

    def run(timed: bool) -> tuple[float, list[int]]:
        engine = LightMatchingEngine()
        ids: dict[int, int] = {}

        def apply(c: Any) -> None:
            if type(c) is PlaceLimit:
                order, _ = engine.add_order("ETH-USDT", c.price, c.qty, c.side)
                ids[c.order_id] = order.order_id
            else:
                engine.cancel_order(ids.pop(c.order_id), "ETH-USDT")

        for c in warmup:
            apply(c)
        lat: list[int] = []
        clock = time.perf_counter_ns
        t0 = time.perf_counter()
        if timed:
            for c in cmds:
                t = clock()
                apply(c)
                lat.append(clock() - t)
        else:
            for c in cmds:
                apply(c)
        return time.perf_counter() - t0, lat

    c0 = time.process_time()
    elapsed, _ = run(False)
    cpu = time.process_time() - c0
    _, lat = run(True)
    lat.sort()
    return {
        "commands_per_s": len(cmds) / elapsed,
        "commands_per_cpu_s": len(cmds) / cpu,
        "p50_us": percentile(lat, 0.50) / 1000,
        "p99_us": percentile(lat, 0.99) / 1000,
        "p999_us": percentile(lat, 0.999) / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs per engine (best is kept)")
    parser.add_argument("--memory-orders", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["all", "py", "native"], default="all")
    args = parser.parse_args()

    engines: list[tuple[str, Callable[[], Any]]] = []
    if args.engine in ("all", "native"):
        if NativeOrderBook is None:
            print("compiled core not built: python -m matching.engine._native.build", file=sys.stderr)
        else:
            engines.append(("NativeOrderBook (compiled core)", NativeOrderBook))
    if args.engine in ("all", "py"):
        engines.append(("PyOrderBook (pure Python)", PyOrderBook))

    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"seed {args.seed}, {args.commands:,} commands")
    warmup, cmds, stats = generate(args.commands, args.seed)
    print("stream:", ", ".join(f"{k} {v:.3g}" for k, v in stats.items()))

    # sanity: every engine gives the same events on the stream
    if len(engines) > 1:
        books = [make() for _, make in engines]
        for c in warmup + cmds[:100_000]:
            first = books[0].apply(c)
            for b in books[1:]:
                assert b.apply(c) == first, c

    print()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print()
    print(
        "| engine | stream | commands/s (wall) | commands/s (CPU time) | p50 µs | p99 µs | p99.9 µs "
        "| events/cmd | bytes/resting order |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    pc_warm, pc_cmds = place_cancel_stream(min(args.commands, 300_000), args.seed)
    for name, make in engines:
        r = measure(make, warmup, cmds, args.repeat)
        mem = memory_per_order(make, args.memory_orders) if args.memory_orders else float("nan")
        print(row(name, "exchange mix", r, f"{mem:.0f}"))
        r = measure(make, pc_warm, pc_cmds, args.repeat)
        print(row(name, "place/cancel", r, ""))
    peer = measure_lightmatchingengine(pc_warm, pc_cmds)
    if peer is None:
        print("| lightmatchingengine | place/cancel | not installed (pip install -r bench/requirements.txt) |")
    else:
        print(row("lightmatchingengine 2019.1.4 (PyPI)", "place/cancel", peer, ""))
    print(f"\ntimer overhead per timed call: ~{_timer_overhead() / 1000:.2f} µs (included in latencies)")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


def row(name: str, stream: str, r: dict[str, float], mem: str) -> str:
    events = f"{r['events_per_command']:.2f}" if "events_per_command" in r else "n/a"
    return (
        f"| {name} | {stream} | {r['commands_per_s']:,.0f} | {r['commands_per_cpu_s']:,.0f} | {r['p50_us']:.2f} "
        f"| {r['p99_us']:.2f} | {r['p999_us']:.2f} | {events} | {mem} |"
    )


if __name__ == "__main__":
    print(speed_line(), flush=True)
    main()
    print(speed_line())
