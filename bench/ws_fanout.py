"""WebSocket fan-out under a trading market: many subscribers to one market's depth and
trades while the matcher trades, at several order rates.

    python bench/ws_fanout.py                                   # 1000 subscribers in 4 client processes
    python bench/ws_fanout.py --subscribers 1000 --clients 4 --rates 20,100,400 --seconds 15
    python bench/ws_fanout.py --embedded                        # SQLite, in-memory layer, one process

**Server** (the production topology of one machine): one uvicorn process serving
``kootabase.asgi`` with DEBUG off, the ETH-USDT matcher as its own process
(``manage.py run_matcher``), MariaDB (the database ``--db`` is dropped and re-created)
and Redis as the channel layer (``--redis-url``; the broker gets the next database
number). ``--embedded`` runs the old setup instead: a fresh SQLite database, the
in-memory channel layer and the matcher inside the uvicorn process.

**Load**: a thread of this process places crossing order pairs through the services
at each rate (achieved orders/s is reported: on a small machine it can fall short).

**Clients**: ``--clients`` processes share the subscribers (uvloop + aiohttp, each
subscriber on its own connection, subscribed to ``depth.ETH-USDT`` and
``trades.ETH-USDT``). Each records, for every update frame, its receive time and its
latency from the batch's publication (stamped inside its transaction, just before the
commit) to receipt; at the end they send their records here, where they are merged and
cut into one window per rate. The server, the matcher, MariaDB, Redis, the clients and
the load generator share the machine: their CPU use over each window is reported, and
the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from machine import speed_line

ROOT = Path(__file__).resolve().parents[1]
MARKET = "ETH-USDT"


# --- the server side ------------------------------------------------------------------


def environment(args: argparse.Namespace, var_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_ENV", "DJANGO_SETTINGS_MODULE"}}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "kootabase.settings",
            "DEBUG": "False",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            "KOOTABASE_VAR_DIR": var_dir,
            # As the image runs it (Dockerfile); uvicorn's own default is on.
            "UVICORN_WS_PER_MESSAGE_DEFLATE": "true" if args.deflate else "false",
        }
    )
    if not args.embedded:
        base, number = args.redis_url.rsplit("/", 1)
        env.update(
            {
                "DATABASE_URL": f"mysql://{args.mysql}/{args.db}",
                "REDIS_URL": args.redis_url,
                "CELERY_BROKER_URL": f"{base}/{int(number) + 1}",
            }
        )
    return env


def reset_database(args: argparse.Namespace, env: dict[str, str]) -> None:
    if not args.embedded:
        user, host = args.mysql.split("@")
        host, port = host.split(":")
        sql = (
            f"DROP DATABASE IF EXISTS {args.db}; "
            f"CREATE DATABASE {args.db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
        subprocess.run(["mysql", "--protocol=tcp", f"-h{host}", f"-P{port}", f"-u{user}", "-e", sql], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)


def seed(env: dict[str, str]) -> tuple[Any, Any]:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from accounts.services import user_register
    from orders import demo
    from wallets.models import Currency
    from wallets.services import adjustment_post

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


def load(maker: Any, taker: Any, rate: float, stop: threading.Event, placed: list[int]) -> None:
    """``rate`` orders per second: a resting sell then a crossing buy, prices random
    around 2000, so every pair trades and moves the book."""
    from orders.services import order_place_or_get

    rng = random.Random(7)
    interval, next_at = 2.0 / rate, time.monotonic()
    while not stop.is_set():
        price = Decimal(2000) + Decimal(rng.randint(-200, 200)) / 100
        qty = Decimal(rng.randint(60, 500)) / 10000  # above the 10 USDT minimum
        common = {"market_symbol": MARKET, "type": "limit", "price": price, "quantity": qty}
        order_place_or_get(user=maker, side="sell", **common)
        order_place_or_get(user=taker, side="buy", **common)
        placed[0] += 2
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(name: str) -> list[int]:
    found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]


# --- the client processes -------------------------------------------------------------


class Records:
    """Per update frame: receive time (Unix s) and latency (s); depth gaps by time."""

    def __init__(self) -> None:
        self.received = array("d")
        self.latency = array("d")
        self.gaps = array("d")


async def subscriber(session: Any, url: str, records: Records, on_snapshot: Any) -> None:
    import aiohttp

    async with session.ws_connect(url, origin="http://127.0.0.1", max_msg_size=0) as ws:
        await ws.send_str(json.dumps({"op": "subscribe", "channels": [f"depth.{MARKET}", f"trades.{MARKET}"]}))
        seq = None
        async for message in ws:
            now = time.time()
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(message.data)
            channel, data = frame.get("channel"), frame.get("data")
            if frame["op"] == "snapshot":
                if seq is None:
                    on_snapshot()
                seq = data["seq"]
                continue
            if frame["op"] != "update":
                continue
            if channel.startswith("depth."):
                if data["first_seq"] > seq + 1:
                    records.gaps.append(now)
                seq = max(seq, data["last_seq"])
                stamp = data.get("time")
            else:
                stamp = data[-1]["time"] if data else None
            if stamp:
                records.received.append(now)
                records.latency.append(now - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


async def client_async(url: str, count: int, conn: Any) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    records, ready, finish = Records(), asyncio.Event(), asyncio.Event()
    snapshots = [0]

    def on_snapshot() -> None:
        snapshots[0] += 1
        if snapshots[0] == count:
            ready.set()

    loop.add_reader(conn.fileno(), finish.set)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None))
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.create_task(subscriber(session, url, records, on_snapshot)))
        await asyncio.sleep(0.005)
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait([waiter, *tasks], timeout=180, return_when=asyncio.FIRST_COMPLETED)
    failed = [t for t in done if t is not waiter]
    if failed or not ready.is_set():
        conn.send(("failed", repr(failed[0].exception()) if failed else "no snapshot within 180 s"))
        await session.close()
        return
    conn.send(("ready", count))
    await finish.wait()
    loop.remove_reader(conn.fileno())
    os.set_blocking(conn.fileno(), True)  # uvloop's reader made it non-blocking; the records are large
    conn.recv()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await session.close()
    conn.send(("records", records.received.tobytes(), records.latency.tobytes(), records.gaps.tobytes()))


def client_main(url: str, count: int, conn: Any) -> None:
    import uvloop

    uvloop.run(client_async(url, count, conn))


# --- the run ------------------------------------------------------------------------


@dataclass
class Window:
    rate: float
    start: float
    end: float
    placed: int
    cpu: dict[str, float]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4, help="client processes sharing the subscribers")
    parser.add_argument("--rates", default="20,100,400", help="orders per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--embedded", action="store_true", help="SQLite, in-memory layer, matcher in the server")
    parser.add_argument("--db", default="kb_bench", help="MariaDB database to (re)create")
    parser.add_argument("--mysql", default="root@127.0.0.1:3306")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--server-args", default="", help="extra uvicorn options, e.g. '--ws-per-message-deflate false'"
    )
    parser.add_argument("--deflate", action="store_true", help="per-message deflate on (the image turns it off)")
    parser.add_argument("--profile-server", metavar="FILE", help="run the server under cProfile, writing FILE")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    var_dir = tempfile.mkdtemp(prefix="kb-bench-")
    env = environment(args, var_dir)
    reset_database(args, env)
    maker, taker = seed(env)
    port = free_port()
    log = Path(var_dir) / "servers.log"
    profile = ("-m", "cProfile", "-o", str(Path(args.profile_server).resolve())) if args.profile_server else ()
    server = start(
        [
            *(sys.executable, *profile, "-m", "uvicorn", "kootabase.asgi:application", "--port", str(port)),
            *("--log-level", "warning", *args.server_args.split()),
        ],
        env,
        log,
    )
    processes = {"server": [server.pid]}
    matcher = None
    if not args.embedded:
        matcher = start([sys.executable, "manage.py", "run_matcher", "--market", MARKET], env, log)
        processes |= {"matcher": [matcher.pid], "redis": pids_named("redis-server"), "mariadb": pids_named("mariadbd")}
    clients: list[tuple[multiprocessing.Process, Any]] = []
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        url = f"ws://127.0.0.1:{port}/ws/v1/"
        context = multiprocessing.get_context("spawn")
        shares = [args.subscribers // args.clients + (i < args.subscribers % args.clients) for i in range(args.clients)]
        for share in shares:
            parent, child = context.Pipe()
            process = context.Process(target=client_main, args=(url, share, child), daemon=True)
            process.start()
            clients.append((process, parent))
        for _, conn in clients:
            if not conn.poll(240):
                raise SystemExit("a client process did not get its snapshots in time")
            kind, detail = conn.recv()
            if kind != "ready":
                raise SystemExit(f"a subscriber failed: {detail}")
        processes["clients"] = [process.pid for process, _ in clients]
        print(f"machine: {os.cpu_count()} CPUs; load average before: {os.getloadavg()}", flush=True)
        print(f"processes: {processes}", flush=True)
        windows = []
        for rate in rates:
            halt, placed = threading.Event(), [0]
            worker = threading.Thread(target=load, args=(maker, taker, rate, halt, placed), daemon=True)
            worker.start()
            time.sleep(2)  # warm up
            cpu0 = {name: sum(cpu_seconds(p) for p in pids) for name, pids in processes.items()}
            self0, placed0, t0 = time.process_time(), placed[0], time.time()
            time.sleep(args.seconds)
            t1, placed1, self1 = time.time(), placed[0], time.process_time()
            cpu1 = {name: sum(cpu_seconds(p) for p in pids) for name, pids in processes.items()}
            halt.set()
            worker.join()
            cpu = {name: (cpu1[name] - cpu0[name]) / (t1 - t0) for name in processes}
            cpu["load generator"] = (self1 - self0) / (t1 - t0)
            windows.append(Window(rate, t0, t1, placed1 - placed0, cpu))
            time.sleep(2)
        print(f"load average after: {os.getloadavg()}", flush=True)
        received, latency, gaps = array("d"), array("d"), array("d")
        for _, conn in clients:
            conn.send("stop")
        for _, conn in clients:
            kind, *parts = conn.recv()
            for target, raw in zip((received, latency, gaps), parts, strict=True):
                target.frombytes(raw)
    finally:
        for process, _ in clients:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        stop(server)
        if matcher is not None:
            stop(matcher)
    report(args, windows, received, latency, gaps)
    shutil.rmtree(var_dir, ignore_errors=True)


def report(args: argparse.Namespace, windows: list[Window], received: array, latency: array, gaps: array) -> None:
    print(
        f"\n{args.subscribers} subscribers in {args.clients} client processes, "
        f"{'embedded' if args.embedded else 'MariaDB + Redis channel layer + run_matcher'}\n"
    )
    names = list(windows[0].cpu)
    print(
        "| orders/s offered | achieved | frames/s per subscriber | p50 ms | p99 ms | max ms | depth gaps "
        "| server CPU µs per frame | " + " | ".join(f"CPU {n}" for n in names) + " |"
    )
    print("|---" * (8 + len(names)) + "|")
    for w in windows:
        lat = sorted(latency[i] for i in range(len(received)) if w.start <= received[i] < w.end)
        elapsed = w.end - w.start
        gap_count = sum(1 for t in gaps if w.start <= t < w.end)
        print(
            f"| {w.rate:.0f} | {w.placed / elapsed:.0f} | {len(lat) / elapsed / args.subscribers:.1f} | "
            f"{pct(lat, 0.5):.0f} | {pct(lat, 0.99):.0f} | {(lat[-1] * 1000 if lat else float('nan')):.0f} | "
            f"{gap_count} | {w.cpu['server'] * elapsed / max(1, len(lat)) * 1e6:.0f} | "
            + " | ".join(f"{w.cpu[n] * 100:.0f} %" for n in names)
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    print(speed_line(), flush=True)
    main()
    print(speed_line())
