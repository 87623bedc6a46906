"""The matcher's settling work in one process: where a batch's time goes.

A backlog of limit orders (the order mix of ``e2e_orders.py``) is placed once through the
placement service and kept as a dump; every run restores it and drains it with
``MarketMatcher.run_once`` in this process, against MariaDB. It reports the drain's wall
time, the thread's CPU time, the time spent waiting on each kind of statement (the
statement's round trip and the server's work, plus the driver's decoding of the rows it
returns), and, with ``--profile``, a CPU profile of the drain.

``e2e_orders.py`` measures the same settling on the production topology (the matcher as
its own process, its start-up excluded); this one is for finding where the time goes.

Usage (MariaDB and Redis running locally; the database is dropped and re-created):

    .venv/bin/python bench/matcher_drain.py --backlog 5000 --runs 3
    .venv/bin/python bench/matcher_drain.py --runs 1 --profile tottime
    .venv/bin/python bench/matcher_drain.py --reuse --runs 5    # the backlog placed by an earlier run
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import subprocess
import sys
import time
from pathlib import Path

import e2e_orders
from machine import speed_line

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    e2e_orders.database_arguments(parser, db="kb_drain", redis_db=13)
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=0, help="0: the matcher's own")
    parser.add_argument("--profile", metavar="SORT", help="print a CPU profile sorted by SORT (tottime, cumulative)")
    parser.add_argument(
        "--reuse", action="store_true", help="restore the dump an earlier run left (same --users, --backlog, --seed)"
    )
    return parser.parse_args()


def mysql(args: argparse.Namespace, *extra: str, stdin: Path | None = None, stdout: Path | None = None) -> None:
    user, address = args.mysql.split("@")
    host, port = address.split(":")
    tool = "mysqldump" if stdout is not None else "mysql"
    with (stdin or stdout or Path("/dev/null")).open("rb" if stdin is not None else "wb") as stream:
        subprocess.run(
            [tool, "--protocol=tcp", f"-h{host}", f"-P{port}", f"-u{user}", *extra],
            stdin=stream if stdin is not None else None,
            stdout=stream if stdout is not None else None,
            check=True,
        )


def place_backlog(args: argparse.Namespace, dump: Path) -> None:
    """Create the users and the backlog; keep the database as ``dump``."""
    users = e2e_orders.seed_users(args.users)
    e2e_orders.backlog_place(users, args.backlog, args.seed)
    mysql(args, args.db, stdout=dump)


def drain(args: argparse.Namespace) -> tuple[int, float, float, dict[str, float], cProfile.Profile | None]:
    from django.db import connection

    from kootabase.events import broadcasts_flush
    from orders.matcher import MarketMatcher

    matcher = MarketMatcher(symbol=e2e_orders.MARKET, **({"batch_size": args.batch_size} if args.batch_size else {}))
    matcher.start()
    waits: dict[str, float] = {}

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            kind = " ".join(sql.split()[:3])[:48]
            waits[kind] = waits.get(kind, 0.0) + time.perf_counter() - started

    profile = cProfile.Profile(time.thread_time) if args.profile else None
    gc.freeze()  # as run_matcher does after start-up
    done = 0
    try:
        with connection.execute_wrapper(timed):
            wall, cpu = time.perf_counter(), time.thread_time()
            if profile is not None:
                profile.enable()
            while worked := matcher.run_once():
                done += worked
            if profile is not None:
                profile.disable()
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        broadcasts_flush()
    finally:
        matcher.stop()
    return done, wall, cpu, waits, profile


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    env = e2e_orders.django_on_fresh_database(args)
    dump = Path(env["KOOTABASE_VAR_DIR"]) / f"{args.db}-{args.users}u-{args.backlog}o-{args.seed}.sql"
    dump.parent.mkdir(parents=True, exist_ok=True)
    if not (args.reuse and dump.exists()):
        place_backlog(args, dump)
    from django.db import connection

    from kootabase import catalog

    for run in range(1, args.runs + 1):
        connection.close()
        mysql(args, args.db, stdin=dump)
        catalog.forget_all()  # what this process remembers of the database it just replaced (ledger ids too)
        done, wall, cpu, waits, profile = drain(args)
        waited = sum(waits.values())
        print(
            f"run {run}: {done} orders in {wall:.3f} s = {done / wall:,.0f} orders/s; "
            f"CPU {cpu:.3f} s ({cpu / done * 1000:.3f} ms/order); "
            f"statements {waited:.3f} s ({waited / done * 1000:.3f} ms/order)"
        )
        for kind, seconds in sorted(waits.items(), key=lambda item: -item[1])[:10]:
            print(f"    {seconds * 1000:8.1f} ms  {kind}")
        if profile is not None:
            pstats.Stats(profile).sort_stats(args.profile).print_stats(40)


if __name__ == "__main__":
    print(speed_line(), flush=True)
    main()
    print(speed_line())
