"""WebSocket fan-out under a trading market: many subscribers to one market's depth and
trades while the matcher trades, at several order rates.

    python bench/ws_fanout.py                                   # 1000 subscribers, rates 20,100,400
    python bench/ws_fanout.py --subscribers 200 --rates 50 --seconds 10

Runs embedded (a fresh SQLite database under a temporary directory; the matcher runs
inside the one uvicorn process, from its lifespan). Orders are placed through the
services by a thread of this process; the subscribers are asyncio WebSocket clients in
this process. Reported per rate: frames received per subscriber per second, delivery
latency from the batch's publication (stamped inside its transaction, just before the
commit) to receipt (p50/p99/max), and the server process's CPU use (user + system).
"Cost stays flat" means the server's CPU does not grow with the order rate, because depth
diffs are merged to at most 20 per second per market. The load average is printed: the
clients, the load generator and the server share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_django(var_dir: str) -> None:
    os.environ["KOOTABASE_VAR_DIR"] = var_dir
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kootabase.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def seed() -> tuple[object, object]:
    from django.core.management import call_command

    from accounts.services import user_register
    from orders import demo
    from wallets.models import Currency
    from wallets.services import adjustment_post

    call_command("migrate", verbosity=0)
    demo.seed()
    users = []
    for name in ("maker", "taker"):
        user = user_register(email=f"{name}@bench.example", password="bench-password-123", name=name)
        for code, amount in (("USDT", "100000000"), ("ETH", "1000000")):
            adjustment_post(
                user=user,
                currency=Currency.objects.get(code=code),
                amount=Decimal(amount),
                direction="credit",
                reason="bench",
                actor="bench",
            )
        users.append(user)
    return users[0], users[1]


def load(maker, taker, rate: float, stop: threading.Event) -> None:
    """``rate`` orders per second: a resting sell then a crossing buy, prices random
    around 2000, so every pair trades and moves the book."""
    from orders.services import order_place_or_get

    rng = random.Random(7)
    interval, next_at = 2.0 / rate, time.monotonic()
    while not stop.is_set():
        price = Decimal(2000) + Decimal(rng.randint(-200, 200)) / 100
        qty = Decimal(rng.randint(60, 500)) / 10000  # above the 10 USDT minimum
        common = {"market_symbol": "ETH-USDT", "type": "limit", "price": price, "quantity": qty}
        order_place_or_get(user=maker, side="sell", **common)
        order_place_or_get(user=taker, side="buy", **common)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stats:
    def __init__(self) -> None:
        self.frames = 0
        self.latencies: list[float] = []
        self.gaps = 0

    def reset(self) -> None:
        self.frames, self.latencies, self.gaps = 0, [], 0


async def subscriber(url: str, stats: Stats, ready: asyncio.Event, counter: list[int], total: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, origin="http://127.0.0.1", max_queue=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["depth.ETH-USDT", "trades.ETH-USDT"]}))
        seq = None
        async for text in ws:
            frame = json.loads(text)
            now = time.time()
            channel, data = frame.get("channel"), frame.get("data")
            if frame["op"] == "snapshot":
                seq = data["seq"]
                counter[0] += 1
                if counter[0] == total:
                    ready.set()
                continue
            if frame["op"] != "update":
                continue
            stats.frames += 1
            if channel.startswith("depth."):
                if data["first_seq"] > seq + 1:
                    stats.gaps += 1
                seq = max(seq, data["last_seq"])
                stamp = data.get("time")
            else:
                stamp = data[-1]["time"] if data else None
            if stamp:
                stats.latencies.append(now - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def main_async(args: argparse.Namespace, server: subprocess.Popen, url: str, maker, taker) -> list[str]:
    stats, ready, counter = Stats(), asyncio.Event(), [0]
    tasks = []
    for _ in range(args.subscribers):
        tasks.append(asyncio.create_task(subscriber(url, stats, ready, counter, args.subscribers)))
        await asyncio.sleep(0.002)
    done, _ = await asyncio.wait(
        [asyncio.ensure_future(ready.wait()), *tasks], timeout=120, return_when=asyncio.FIRST_COMPLETED
    )
    for task in done:
        if task in tasks:
            task.result()  # a subscriber failed: show why
    rows = []
    for rate in args.rates:
        stop = threading.Event()
        worker = threading.Thread(target=load, args=(maker, taker, rate, stop), daemon=True)
        worker.start()
        await asyncio.sleep(2)  # warm up
        stats.reset()
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        await asyncio.sleep(args.seconds)
        cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
        stop.set()
        worker.join()
        elapsed = t1 - t0
        rows.append(
            f"| {rate:>5} | {args.subscribers} | {stats.frames / elapsed / args.subscribers:6.1f} | "
            f"{pct(stats.latencies, 0.5):6.1f} | {pct(stats.latencies, 0.99):6.1f} | "
            f"{max(stats.latencies, default=0) * 1000:6.1f} | {(cpu1 - cpu0) / elapsed * 100:5.0f} % | {stats.gaps} |"
        )
        print(rows[-1], flush=True)
        await asyncio.sleep(2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rates", default="20,100,400", help="orders per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    var_dir = tempfile.mkdtemp(prefix="kb-bench-")
    setup_django(var_dir)
    maker, taker = seed()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "kootabase.asgi:application", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env={**os.environ},
    )
    try:
        time.sleep(4)
        print(f"load average before: {os.getloadavg()}", flush=True)
        print("| orders/s | subscribers | frames/s per subscriber | p50 ms | p99 ms | max ms | server CPU | gaps |")
        print("|---|---|---|---|---|---|---|---|")
        asyncio.run(main_async(args, server, f"ws://127.0.0.1:{port}/ws/v1/", maker, taker))
        print(f"load average after: {os.getloadavg()}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
