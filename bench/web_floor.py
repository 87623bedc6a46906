"""What a web request costs before any of the order path's own work.

The REST goal for single orders needs the whole server (web, matcher, database) to spend
about 2 ms of CPU an order on two cores. This bench measures the fixed costs every request
pays on its way to a view, so the goal can be set against them:

1. **Through the server** (uvicorn, one worker, an open-loop load at ``--rate``): a bare
   ASGI application that reads the request and answers 201 with a small JSON body (the
   server's own cost), then Django's stack with a plain view that reads nothing
   (``GET /healthz``: the middleware, URL resolution, the hop to a request thread).
2. **In this process**, without a server or a load generator, CPU per request:

   - Django's synchronous part (request, middleware, view, response) on the calling thread;
   - the same through the web process's ASGI handler (``kootabase.asgi_handler``), which
     runs it on a request thread: one hand-over there and one back;
   - the bare hand-over: one thread hands a value to another through a queue and waits
     for it to come back.

   With ``--cpu N`` this process is pinned to CPU N, which shows what the hand-over costs
   when the two threads run on different cores (each core's cache refilled) against the
   same core.

Usage (Redis and MariaDB running; the database is not written):

    .venv/bin/python bench/web_floor.py --rate 300 --duration 10
    .venv/bin/python bench/web_floor.py --in-process-only --cpu 0

Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

from machine import speed_line

BODY = json.dumps({"id": 1, "status": "pending", "market": "ETH-USDT", "price": "2000.00"}).encode()


async def bare_app(scope: dict, receive, send) -> None:
    """The least an ASGI application does for a request: read it, answer it."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def parse_args() -> argparse.Namespace:
    import e2e_orders

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    e2e_orders.database_arguments(parser, db="kb_bench", redis_db=14)
    parser.add_argument("--rate", type=float, default=300, help="requests/s offered to the server")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--requests", type=int, default=3000, help="requests per in-process measurement")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    parser.add_argument("--in-process-only", action="store_true")
    return parser.parse_args()


def through_server(args: argparse.Namespace, env: dict[str, str]) -> None:
    import e2e_orders
    from open_loop import OpenLoop, render

    env = {**env, "PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}
    print("\n| through uvicorn, one worker | answers | achieved/s | web CPU ms/request | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for name, app, path in (
        ("bare ASGI application", "web_floor:bare_app", "/"),
        ("Django, a plain view (GET /healthz)", "kootabase.asgi:application", "/healthz"),
    ):
        argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(args.port)]
        web = e2e_orders.start([*argv, "--workers", "1", "--log-level", "warning", "--no-access-log"], env)
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{args.port}{path}", timeout=1)
                    break
                except urllib.error.HTTPError:
                    break
                except OSError:
                    time.sleep(0.1)
            request = render("GET", path, f"127.0.0.1:{args.port}", {}, b"")
            warmup = OpenLoop("127.0.0.1", args.port, [request] * int(args.rate * 2), 1 / args.rate, 64)
            asyncio.run(warmup.run())
            pids = [web.pid, *e2e_orders._children(web.pid)]
            before = e2e_orders.cpu_seconds(pids)
            load = OpenLoop("127.0.0.1", args.port, [request] * int(args.rate * args.duration), 1 / args.rate, 64)
            answers, elapsed = asyncio.run(load.run())
            cpu = e2e_orders.cpu_seconds(pids) - before
        finally:
            e2e_orders.stop(web)
        latencies = sorted(a.latency * 1000 for a in answers)
        print(
            f"| {name} | {dict(Counter(a.status for a in answers))} | {len(answers) / elapsed:,.0f} "
            f"| {cpu * 1000 / len(answers):.3f} | {e2e_orders.percentile(latencies, 0.5):.1f} "
            f"| {e2e_orders.percentile(latencies, 0.99):.1f} |",
            flush=True,
        )


def _cpu_per_call(call, n: int) -> float:
    """Microseconds of this process's CPU (every thread's) per call, best of three."""
    call(n // 10)  # warm-up
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        call(n)
        best = min(best, time.process_time() - started)
    return best / n * 1e6


def in_process(args: argparse.Namespace, env: dict[str, str]) -> None:
    os.environ.update(env)
    from kootabase.asgi import django_asgi_app as handler

    path = "/healthz"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    statuses: Counter[int] = Counter()

    def on_this_thread(n: int) -> None:
        for _ in range(n):
            statuses[handler._respond(dict(scope), io.BytesIO()).status_code] += 1

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] += 1

    async def through_handler_async(n: int) -> None:
        for _ in range(n):
            await handler(dict(scope), receive, send)

    def through_handler(n: int) -> None:
        loop.run_until_complete(through_handler_async(n))

    to_worker: queue.SimpleQueue = queue.SimpleQueue()
    back: queue.SimpleQueue = queue.SimpleQueue()

    def worker() -> None:
        while (item := to_worker.get()) is not None:
            back.put(item)

    def hand_over(n: int) -> None:
        for i in range(n):
            to_worker.put(i)
            back.get()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        rows = [
            ("Django's synchronous part, on the calling thread", _cpu_per_call(on_this_thread, args.requests)),
            ("the same through the ASGI handler (a request thread)", _cpu_per_call(through_handler, args.requests)),
            ("a hand-over to another thread and back, alone", _cpu_per_call(hand_over, args.requests * 10)),
        ]
    finally:
        to_worker.put(None)
        loop.close()
    pinned = f"pinned to CPU {args.cpu}" if args.cpu is not None else f"on any of {os.cpu_count()} CPUs"
    print(f"\n| in process ({pinned}), GET /healthz | CPU µs/request |")
    print("|---|---|")
    for name, micros in rows:
        print(f"| {name} | {micros:,.0f} |")
    assert set(statuses) == {200}, statuses


def main() -> None:
    import e2e_orders

    args = parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    env = e2e_orders.environment(args)
    if not args.in_process_only:
        through_server(args, env)
    in_process(args, env)


if __name__ == "__main__":
    print(speed_line(), flush=True)
    main()
    print(speed_line())
