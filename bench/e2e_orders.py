"""End-to-end order benchmark on the production topology of one machine.

Processes: uvicorn with several workers (production settings), the ETH-USDT matcher
(``manage.py run_matcher``), MariaDB and Redis. Two measurements:

1. **Matcher settling rate**: with the matcher stopped, a backlog of orders (about half
   of them crossing) is placed through the placement service; then the matcher starts
   on the halted market, and from the moment the market resumes the time to drain the
   backlog gives its settled orders/s against MariaDB (and its CPU over the drain).
2. **REST under an open-loop load**: a load generator sends ``POST /api/v1/orders`` at a
   fixed arrival rate (seeded order mix, many users, JWT auth), stepping the offered
   rate up. Latency is measured from each request's *planned* send time, so a stalled
   server cannot hide queueing (no coordinated omission). For every step it reports the
   achieved rate, request→response p50/p99/p99.9, and request→fill-committed latency of
   the orders that traded on arrival (the trade row's commit time minus the planned send
   time; one clock, one machine). ``--batch N`` sends the orders N to a request through
   ``POST /api/v1/orders/batch`` (as a market maker or a bot would), at the same offered
   orders/s. Before the steps, ``--warmup`` seconds of load at the first rate (not
   counted) take the server past its first requests.

Usage (MariaDB and Redis running locally; the database is dropped and re-created):

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/e2e_orders.py --rates 250,500,1000,1500 --duration 15

Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from machine import speed_line

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MARKET = "ETH-USDT"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    database_arguments(parser, db="kb_bench", redis_db=14)
    parser.add_argument("--workers", type=int, default=3, help="uvicorn workers")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--backlog", type=int, default=10000, help="orders for the matcher settling run")
    parser.add_argument("--rates", default="250,500,1000,1500", help="offered orders/s, one step each")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per step")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="orders per request: 1 sends POST /api/v1/orders, more sends that many to POST /api/v1/orders/batch",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="seconds of load at the first rate before the measured steps, not counted",
    )
    parser.add_argument("--skip-settle", action="store_true")
    parser.add_argument("--settle-only", action="store_true", help="only the matcher settling run")
    return parser.parse_args()


def database_arguments(parser: argparse.ArgumentParser, *, db: str, redis_db: int) -> None:
    """The options of a bench that runs Django on a MariaDB database of its own: the
    database, the servers, the users it seeds and the seed of its order mix."""
    parser.add_argument("--db", default=db, help="MariaDB database to (re)create")
    parser.add_argument("--mysql", default="root@127.0.0.1:3306")
    parser.add_argument("--redis-url", default=f"redis://127.0.0.1:6379/{redis_db}")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)


def django_on_fresh_database(args: argparse.Namespace) -> dict[str, str]:
    """Drop, re-create and migrate ``args.db``, set Django up on it in this process, and
    return the environment the bench's other processes run with."""
    env = environment(args)
    reset_database(args, env)
    setup_django(env)
    return env


def environment(args: argparse.Namespace) -> dict[str, str]:
    """The real servers with DEBUG off. Development settings supply the secrets the
    order path never reads (the blockchain's, for one); production adds only HTTPS
    redirects and secure cookies, which do not change the cost of a request."""
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_ENV", "DJANGO_SETTINGS_MODULE"}}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "kootabase.settings",
        "DEBUG": "False",
        "DATABASE_URL": f"mysql://{args.mysql}/{args.db}",
        "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": args.redis_url.rsplit("/", 1)[0] + "/15",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "THROTTLE_USER": "1000000/min",
        "THROTTLE_IP": "100000000/min",
        "LOG_LEVEL": "WARNING",
        "KOOTABASE_VAR_DIR": "/tmp/kootabase-bench",
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def reset_database(args: argparse.Namespace, env: dict[str, str]) -> None:
    user, host = args.mysql.split("@")
    host, port = host.split(":")
    subprocess.run(
        [
            "mysql",
            "--protocol=tcp",
            f"-h{host}",
            f"-P{port}",
            f"-u{user}",
            "-e",
            f"DROP DATABASE IF EXISTS {args.db}; CREATE DATABASE {args.db} CHARACTER SET utf8mb4 "
            "COLLATE utf8mb4_unicode_ci",
        ],
        check=True,
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def seed_users(n: int) -> list:
    from accounts.models import User
    from orders import demo as orders_demo
    from wallets.models import Currency
    from wallets.services import adjustment_post

    orders_demo.seed()
    usdt, eth = Currency.objects.get(code="USDT"), Currency.objects.get(code="ETH")
    users = []
    for i in range(n):
        user = User.objects.create_user(email=f"bench{i}@example.com", password="bench-password-1")
        for currency, amount in ((usdt, "10000000"), (eth, "10000")):
            adjustment_post(
                user=user,
                currency=currency,
                amount=Decimal(amount),
                direction="credit",
                reason="bench funds",
                actor="bench",
            )
        users.append(user)
    return users


def order_mix(rng: random.Random) -> dict[str, str]:
    """Limit orders around 2000 USDT; about a third cross the spread and trade at once."""
    side = rng.choice(("buy", "sell"))
    offset = rng.randint(1, 300) / 100
    crossing = rng.random() < 0.35
    price = Decimal(2000) + (Decimal(str(offset)) if (side == "buy") == crossing else -Decimal(str(offset)))
    quantity = Decimal(rng.randint(6, 100)) / 1000  # 12-200 USDT: above the 10 USDT minimum notional
    return {"market": MARKET, "side": side, "type": "limit", "price": f"{price:.2f}", "quantity": f"{quantity}"}


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = Path(env["KOOTABASE_VAR_DIR"]) / f"bench-{Path(argv[2] if argv[1] == '-m' else argv[1]).stem}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _pids_named(name: str) -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used per component between two readings: where an order's cost goes,
    whatever else the machine is doing (the load generator runs beside the server)."""

    def __init__(self, web: subprocess.Popen, matcher: subprocess.Popen) -> None:
        self.groups = {
            "web": [web.pid, *_children(web.pid)],
            "matcher": [matcher.pid],
            "mariadb": _pids_named("mariadbd"),
            "redis": _pids_named("redis-server"),
        }

    def read(self) -> dict[str, float]:
        readings = {name: cpu_seconds(pids) for name, pids in self.groups.items()}
        times = os.times()
        readings["load generator"] = times.user + times.system
        return readings


def wait_drained(timeout: float = 120) -> float:
    from orders.models import Order

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not Order.objects.filter(status="pending").exists():
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit("the matcher did not drain its backlog")


def backlog_place(users: list, count: int, seed: int) -> None:
    """``count`` orders of the seeded mix, placed through the placement service, the
    users in turn (with the matcher stopped, they wait as ``pending``)."""
    from orders.services import order_place

    rng = random.Random(seed)
    for i in range(count):
        fields = order_mix(rng)
        order_place(
            user=users[i % len(users)],
            market_symbol=MARKET,
            side=fields["side"],
            type="limit",
            price=Decimal(fields["price"]),
            quantity=Decimal(fields["quantity"]),
        )


def settle_run(args: argparse.Namespace, env: dict[str, str], users: list) -> tuple[int, float, int, float]:
    from orders.models import Market, MatcherState, Trade

    backlog_place(users, args.backlog, args.seed)
    trades_before = Trade.objects.count()
    # The matcher starts on a halted market: it takes the market, rebuilds its book and
    # waits. The clock starts when the market resumes, so the rate is the settling alone,
    # not the process's start-up (Django's set-up, about a second of CPU).
    Market.objects.filter(symbol=MARKET).update(status=Market.Status.HALTED)
    epoch = MatcherState.objects.filter(market__symbol=MARKET).values_list("epoch", flat=True).first() or 0
    launched = time.monotonic()
    matcher = start([sys.executable, "manage.py", "run_matcher", "--market", MARKET], env)
    try:
        while not MatcherState.objects.filter(market__symbol=MARKET, epoch__gt=epoch).exists():
            if time.monotonic() - launched > 60 or matcher.poll() is not None:
                raise SystemExit("the matcher did not take the market")
            time.sleep(0.05)
        time.sleep(0.5)  # the book rebuilt; halted, the matcher only polls
        cpu_before = cpu_seconds([matcher.pid])
        Market.objects.filter(symbol=MARKET).update(status=Market.Status.ACTIVE)
        elapsed = wait_drained()
        cpu = cpu_seconds([matcher.pid]) - cpu_before
    finally:
        stop(matcher)
    return args.backlog, elapsed, Trade.objects.count() - trades_before, cpu


async def load_step(
    rate: float,
    duration: float,
    tokens: list[str],
    port: int,
    rng: random.Random,
    connections: int,
    batch: int = 1,
    label: str = "b",
) -> tuple[list[dict], float]:
    """Offer ``rate`` orders/s for ``duration`` s; returns one result per order. With
    ``batch`` > 1 the orders go ``batch`` to a request (``POST /api/v1/orders/batch``),
    the requests at ``rate / batch`` per second, and each order's latency is its request's.
    The requests are rendered before the clock starts (bench/open_loop.py)."""
    from open_loop import OpenLoop, render

    host = "127.0.0.1"
    path = "/api/v1/orders" if batch == 1 else "/api/v1/orders/batch"
    requests = []
    for i in range(int(rate * duration / batch)):
        bodies = [{**order_mix(rng), "client_order_id": f"{label}{int(rate)}-{i}-{j}"} for j in range(batch)]
        payload = bodies[0] if batch == 1 else {"orders": bodies}
        headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}", "Content-Type": "application/json"}
        requests.append(render("POST", path, f"{host}:{port}", headers, json.dumps(payload).encode()))
    generator = OpenLoop(host, port, requests, batch / rate, connections)
    answers, elapsed = await generator.run()
    if generator.lost_after_idle:
        idle = ", ".join(f"{seconds:.3f}" for seconds in sorted(generator.lost_after_idle))
        lost = len(generator.lost_after_idle)
        print(f"  {lost} request(s) lost with their connection, which had been idle for (s): {idle}")
    results: list[dict] = []
    for i, answer in enumerate(answers):
        try:
            body = json.loads(answer.body) if answer.body else {}
        except ValueError:
            body = {}
        if batch == 1:
            outcomes = [(answer.status, body.get("id"))]
        elif answer.status == 200:
            outcomes = [(r["status"], (r["order"] or {}).get("id")) for r in body["results"]]
        else:
            outcomes = [(answer.status, None)] * batch
        for order_status, order_id in outcomes:
            results.append(
                {
                    "i": i,
                    "status": order_status,
                    "latency": answer.latency,
                    "planned_wall": generator.planned_wall(i),
                    "order_id": order_id,
                }
            )
    return results, elapsed


def errors_by_status(results: list[dict]) -> str:
    counts = Counter(r["status"] for r in results if r["status"] != 201)
    return ", ".join(f"{status or 'conn'}: {n}" for status, n in sorted(counts.items())) or "0"


def fill_latencies(results: list[dict]) -> list[float]:
    """Planned send → commit of the first trade in which the order was the taker."""
    from django.db.models import Min

    from orders.models import Trade

    by_order = {r["order_id"]: r for r in results if r["order_id"]}
    firsts = (
        Trade.objects.filter(taker_order_id__in=list(by_order))
        .values("taker_order_id")
        .annotate(first=Min("created_at"))
    )
    return [row["first"].timestamp() - by_order[row["taker_order_id"]]["planned_wall"] for row in firsts]


def main() -> None:
    args = parse_args()
    env = django_on_fresh_database(args)
    from accounts.services import tokens_issue

    print(f"seeding {args.users} users ...", flush=True)
    users = seed_users(args.users)
    if not args.skip_settle:
        print(f"matcher settling run: {args.backlog} orders ...", flush=True)
        n, elapsed, trades, cpu = settle_run(args, env, users)
        print(
            f"| matcher settling | {n} orders, {trades} trades | {elapsed:.2f} s | **{n / elapsed:,.0f} orders/s** "
            f"| matcher CPU {cpu:.2f} s |"
        )
    if args.settle_only:
        return

    tokens = [tokens_issue(user=u)["access"] for u in users]
    base = f"http://127.0.0.1:{args.port}"
    web = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "kootabase.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env,
    )
    matcher = start([sys.executable, "manage.py", "run_matcher", "--market", MARKET], env)
    try:
        import urllib.request

        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        rng = random.Random(args.seed + 1)
        meter = CpuMeter(web, matcher)
        costs = []
        rates = [float(r) for r in args.rates.split(",")]
        if args.warmup > 0:
            # A server that has just started pays once per process for what it then keeps
            # (database connections, a thread pool, the URL resolver, each token's first
            # verification): a few hundred ms on the first requests. Those belong to the
            # start-up, not to the rate.
            asyncio.run(load_step(rates[0], args.warmup, tokens, args.port, rng, args.connections, args.batch, "w"))
            wait_drained()
        print(
            "\n| offered/s | achieved/s | ok | errors (status: count) | p50 ms | p99 ms | p99.9 ms "
            "| fill p50 ms | fill p99 ms |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for step, rate in enumerate(rates):
            before = meter.read()
            results, elapsed = asyncio.run(
                load_step(rate, args.duration, tokens, args.port, rng, args.connections, args.batch, f"s{step}-")
            )
            ok = [r for r in results if r["status"] == 201]
            latencies = [r["latency"] * 1000 for r in results]
            wait_drained()
            after = meter.read()
            costs.append((rate, {k: (after[k] - before[k]) * 1000 / max(len(ok), 1) for k in after}))
            fills = [f * 1000 for f in fill_latencies(ok)]
            print(
                f"| {rate:,.0f} | {len(ok) / elapsed:,.0f} | {len(ok)} | {errors_by_status(results)} | "
                f"{percentile(latencies, 0.5):.1f} | {percentile(latencies, 0.99):.1f} | "
                f"{percentile(latencies, 0.999):.1f} | {percentile(fills, 0.5):.1f} | {percentile(fills, 0.99):.1f} |",
                flush=True,
            )
        print("\nCPU per placed order (ms), by process group, over each step and its drain:\n")
        names = list(costs[0][1]) if costs else []
        print("| offered/s | " + " | ".join(names) + " | server total |")
        print("|---|" + "---|" * (len(names) + 1))
        for rate, cost in costs:
            server = sum(v for k, v in cost.items() if k != "load generator")
            print(f"| {rate:,.0f} | " + " | ".join(f"{cost[k]:.2f}" for k in names) + f" | {server:.2f} |")
    finally:
        stop(web)
        stop(matcher)


if __name__ == "__main__":
    print(speed_line(), flush=True)
    main()
    print(speed_line())
