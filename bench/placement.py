"""The web tier's placement work in one process: where a batch's CPU goes.

Orders of the seeded mix of ``e2e_orders.py`` are placed through ``orders_place_many``
(what ``POST /api/v1/orders/batch`` and the web process's group placement run) in groups
of ``--batch``, the users in turn, against MariaDB, with no matcher running: the orders
stay ``pending``. It reports the thread's CPU time per order and the time spent waiting
on statements, and, with ``--profile``, a CPU profile of the placements. HTTP, Django's
request handling and the answer's rendering are not in it: ``e2e_orders.py`` measures
the whole request.

Usage (MariaDB and Redis running locally; the database is dropped and re-created):

    .venv/bin/python bench/placement.py --orders 4000 --batch 20 --runs 3
    .venv/bin/python bench/placement.py --runs 1 --profile tottime
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

import e2e_orders
from machine import speed_line

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    e2e_orders.database_arguments(parser, db="kb_place", redis_db=12)
    parser.add_argument("--orders", type=int, default=4000, help="orders per run")
    parser.add_argument("--batch", type=int, default=20, help="orders per orders_place_many call")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", metavar="SORT", help="print a CPU profile sorted by SORT (tottime, cumulative)")
    return parser.parse_args()


def requests_of(args: argparse.Namespace, users: list, run: int) -> list[list]:
    """The run's orders as ``PlaceRequest`` groups, made before the clock starts."""
    from orders.services import place_request

    rng = random.Random(args.seed + run)
    groups, group = [], []
    for i in range(args.orders):
        fields = e2e_orders.order_mix(rng)
        group.append(
            place_request(
                user=users[i % len(users)],
                market_symbol=fields["market"],
                side=fields["side"],
                type=fields["type"],
                price=Decimal(fields["price"]),
                quantity=Decimal(fields["quantity"]),
                client_order_id=f"p{run}-{i}",
            )
        )
        if len(group) == args.batch:
            groups.append(group)
            group = []
    return [*groups, group] if group else groups


def place(groups: list[list], profile: cProfile.Profile | None) -> tuple[int, float, float, float, int]:
    from django.db import connection

    from kootabase.events import broadcasts_flush
    from orders.services import Placement, orders_place_many

    waited = 0.0

    def timed(execute, sql, params, many, context):
        nonlocal waited
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            waited += time.perf_counter() - started

    placed = refused = 0
    with connection.execute_wrapper(timed):
        wall, cpu = time.perf_counter(), time.thread_time()
        if profile is not None:
            profile.enable()
        for group in groups:
            for outcome in orders_place_many(requests=group):
                if isinstance(outcome, Placement):
                    placed += 1
                else:
                    refused += 1
        if profile is not None:
            profile.disable()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    broadcasts_flush()
    return placed, wall, cpu, waited, refused


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    e2e_orders.django_on_fresh_database(args)
    users = e2e_orders.seed_users(args.users)
    gc.freeze()  # as the web process does after start-up
    for run in range(1, args.runs + 1):
        groups = requests_of(args, users, run)
        profile = cProfile.Profile(time.thread_time) if args.profile else None
        placed, wall, cpu, waited, refused = place(groups, profile)
        print(
            f"run {run}: {placed} orders placed ({refused} refused) in groups of {args.batch}, {wall:.3f} s; "
            f"CPU {cpu:.3f} s ({cpu / max(placed, 1) * 1000:.3f} ms/order); "
            f"statements {waited:.3f} s ({waited / max(placed, 1) * 1000:.3f} ms/order)"
        )
        if profile is not None:
            pstats.Stats(profile).sort_stats(args.profile).print_stats(45)


if __name__ == "__main__":
    print(speed_line(), flush=True)
    main()
    print(speed_line())
