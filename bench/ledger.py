"""Ledger throughput against the configured database (meant for MariaDB).

Measures:
- transfers per second through ``wallets.services.transfer_create`` (the full service:
  validation, idempotency row, locks, legs, balances, commit) with 1 and 2 worker
  processes, each transferring between random pairs of a pool of funded users;
- postings per second through ``ledger_post_batch``: trade-like entries of 4 legs
  (two currencies, locked -> available), many entries per transaction.

A "posting" is one leg (one line of a journal entry), as in double-entry bookkeeping;
entries per second are printed too.

Usage (the database is migrated and a bench currency and users are created in it):

    DATABASE_URL=mysql://root@127.0.0.1:3306/kb_ledger .venv/bin/python bench/ledger.py
    .venv/bin/python bench/ledger.py --workers 1 2 4 --seconds 10 --batch-size 2000
    .venv/bin/python bench/ledger.py --workers 2 --threads 1 2 4   # threads per process, as a web process's
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kootabase.settings")
os.environ.setdefault("DEBUG", "false")  # no query log in memory

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402
from machine import speed_line  # noqa: E402

from accounts.models import User  # noqa: E402
from aml.models import RuleParameter  # noqa: E402
from kootabase.errors import ServiceError  # noqa: E402
from kyc.services import kyc_level_set  # noqa: E402
from kyc.tiers import MAX_LEVEL  # noqa: E402
from wallets import services  # noqa: E402
from wallets.models import AccountKind, Currency, EntryKind  # noqa: E402
from wallets.services import Leg, Posting  # noqa: E402

QUOTE, BASE = "BNCHQ", "BNCHB"  # bench-only currencies, so the bench never touches real balances


def setup(users: int) -> list[int]:
    call_command("migrate", verbosity=0, interactive=False)
    # Each bench user sends dozens of transfers a run, more than the AML velocity default
    # (100 an hour) lets through: lift it in the bench's database, so every transfer stays
    # on the clean path and still pays for its screening (the parameters and the count).
    RuleParameter.objects.filter(rule="velocity", kind="transfer").update(count=10**9)
    currencies = {}
    for code, precision in ((QUOTE, 6), (BASE, 8)):
        currencies[code] = Currency.objects.filter(code=code).first() or services.currency_create(
            code=code, name=f"Bench {code}", kind=Currency.Kind.CRYPTO, precision=precision
        )
    ids = []
    for i in range(users):
        email = f"bench{i}@bench.kootabase.local"
        user = User.objects.filter(email=email).first() or User.objects.create_user(email=email, password=None)
        ids.append(user.pk)
        # Bench users send more than KYC tier 0 allows, in a currency without a price: the
        # top tier (no limit) keeps every transfer on the clean path, still paying for the
        # check (the user's row lock and the tier read).
        kyc_level_set(user=user, level=MAX_LEVEL, actor=None, reason="bench")
        for code, currency in currencies.items():
            services.adjustment_post(
                user=user,
                currency=currency,
                amount=Decimal(10**9),
                direction="credit",
                reason="bench funds",
                actor="bench",
                idempotency_key=f"bench:{email}:{code}",
            )
    return ids


def server_cpu_seconds() -> float | None:
    """CPU time used so far by a local MariaDB/MySQL server (None if not found)."""
    for name in ("mariadbd", "mysqld"):
        try:
            pid = subprocess.run(["pidof", name], capture_output=True, text=True, check=False).stdout.split()
            if pid:
                fields = Path(f"/proc/{pid[0]}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
    return None


def _transfer_loop(user_ids: list[int], users: dict, deadline: float, seed: int, counts: list[int]) -> None:
    """One thread's transfers until ``deadline`` (its own database connection, as each of
    a web process's request threads has)."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    done = refused = 0
    while time.perf_counter() < deadline:
        sender, recipient = rng.sample(user_ids, 2)
        try:
            services.transfer_create(
                sender=users[sender],
                recipient_email=users[recipient].email,
                currency_code=QUOTE,
                amount=Decimal(rng.randint(1, 10**6)).scaleb(-6),
                idempotency_key=f"{run}-{done + refused}",
            )
            done += 1
        except ServiceError:
            refused += 1
    with _counts_lock:
        counts[0] += done
        counts[1] += refused
    connections.close_all()


_counts_lock = threading.Lock()


def transfer_worker(
    args: tuple[list[int], float, int, int, multiprocessing.Barrier],
) -> tuple[int, int, float, float]:
    user_ids, seconds, threads, seed, barrier = args
    connections.close_all()  # never share the parent's connection
    users = {u.pk: u for u in User.objects.filter(pk__in=user_ids)}
    connections.close_all()
    counts = [0, 0]
    barrier.wait()
    start, cpu_start = time.perf_counter(), time.process_time()
    deadline = start + seconds
    runners = [
        threading.Thread(target=_transfer_loop, args=(user_ids, users, deadline, seed * 100 + i, counts))
        for i in range(threads)
    ]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start  # every thread's CPU
    return counts[0], counts[1], elapsed, cpu


def bench_transfers(user_ids: list[int], workers: int, seconds: float, threads: int = 1) -> float:
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Manager().Barrier(workers)
    server_before = server_cpu_seconds()
    with ctx.Pool(workers) as pool:
        results = pool.map(transfer_worker, [(user_ids, seconds, threads, i, barrier) for i in range(workers)])
    server_after = server_cpu_seconds()
    done = sum(r[0] for r in results)
    refused = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results)
    client_ms = sum(r[3] for r in results) / done * 1000
    server = f", server {(server_after - server_before) / done * 1000:.2f}" if server_before is not None else ""
    rate = done / elapsed
    print(
        f"transfers  workers={workers} threads={threads}  {done} in {elapsed:.1f}s  = {rate:,.0f}/s  "
        f"({refused} refused; "
        f"CPU ms per transfer: client {client_ms:.2f}{server})"
    )
    return rate


def bench_batch(user_ids: list[int], batch_size: int, batches: int) -> tuple[float, float]:
    quote, base = Currency.objects.get(code=QUOTE), Currency.objects.get(code=BASE)
    keys = [(u, c.pk, k) for u in user_ids for c in (quote, base) for k in (AccountKind.AVAILABLE, AccountKind.LOCKED)]
    accounts = services.ledger_accounts_ensure(keys=keys)
    # Hold funds so trades settle from locked, as the matcher's do.
    users = User.objects.in_bulk(user_ids)
    for u in user_ids:
        for currency in (quote, base):
            services.funds_hold(user=users[u], currency=currency, amount=Decimal(10**6))
    rng = random.Random(7)
    run = uuid.uuid4().hex[:8]
    entries = legs = 0
    elapsed = 0.0
    for b in range(batches):
        postings = []
        for i in range(batch_size):
            buyer, seller = rng.sample(user_ids, 2)
            qty, cost = Decimal(rng.randint(1, 1000)).scaleb(-8), Decimal(rng.randint(1, 1000)).scaleb(-6)
            postings.append(
                Posting(
                    kind=EntryKind.TRADE,
                    reference=f"bench-trade:{run}:{b}:{i}",
                    idempotency_key=f"bench-trade:{run}:{b}:{i}",
                    legs=[
                        Leg(accounts[(buyer, quote.pk, AccountKind.LOCKED)], -cost),
                        Leg(accounts[(seller, quote.pk, AccountKind.AVAILABLE)], cost),
                        Leg(accounts[(seller, base.pk, AccountKind.LOCKED)], -qty),
                        Leg(accounts[(buyer, base.pk, AccountKind.AVAILABLE)], qty),
                    ],
                )
            )
        start = time.perf_counter()
        services.ledger_post_batch(postings=postings)
        elapsed += time.perf_counter() - start
        entries += len(postings)
        legs += 4 * len(postings)
    print(
        f"batch      {batches} x {batch_size} entries of 4 legs in {elapsed:.2f}s  = "
        f"{legs / elapsed:,.0f} postings/s  ({entries / elapsed:,.0f} entries/s)"
    )
    return legs / elapsed, entries / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200, help="funded users transferring among each other")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="process counts to measure")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="threads per worker process, each with its own connection (as a web process's request threads)",
    )
    parser.add_argument("--seconds", type=float, default=10, help="duration of each transfer run")
    parser.add_argument("--batch-size", type=int, default=1000, help="entries per ledger_post_batch call")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--skip-audit", action="store_true")
    options = parser.parse_args()

    vendor = settings.DATABASE_VENDOR
    if vendor != "mysql":
        print(f"warning: running on {vendor}; the targets are for MariaDB (set DATABASE_URL=mysql://...)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT VERSION()" if vendor == "mysql" else "SELECT sqlite_version()")
        server = cursor.fetchone()[0]
    load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, {vendor} {server}{load}")
    user_ids = setup(options.users)
    for workers in options.workers:
        for threads in options.threads:
            bench_transfers(user_ids, workers, options.seconds, threads)
    bench_batch(user_ids, options.batch_size, options.batches)
    if not options.skip_audit:
        run = services.ledger_audit_run(store=False)
        print(f"audit      {'ok' if run.ok else 'FAILED'}: {run.entries_checked} entries, {run.legs_checked} legs")
        if not run.ok:
            sys.exit(1)


if __name__ == "__main__":
    print(speed_line(), flush=True)
    main()
    print(speed_line())
