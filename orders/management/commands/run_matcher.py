"""Run the single writer of one or more markets: ``run_matcher --market ETH-USDT``.

Without ``--market`` it runs every market, halted ones too (their matcher idles until
they are resumed; see ``orders.controls``). A second process for a
market that already has a matcher exits at once with an error. SIGTERM/SIGINT stop it
after the batch in progress.

Sharded (one process per shard, as the Kubernetes StatefulSet runs it):
``run_matcher --shard-file shards.json --shard 2`` runs the markets the file assigns to
shard 2. The file maps shard numbers to market lists, ``{"0": ["ETH-USDT", "BTC-USDT"],
"1": ["SOL-USDT"]}``; a market listed under two shards is refused, and active markets
that no shard lists are named on stderr (nobody matches them). See docs/operations.md.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders.matcher import BATCH_SIZE, FencingError, MatcherLockError, matchers_run
from orders.models import Market


def shard_map_read(*, path: Path) -> dict[int, list[str]]:
    """The shard map in ``path``: shard number -> market symbols (upper case). Refuses a
    malformed file and a market assigned to two shards."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise CommandError(f"cannot read the shard file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CommandError(f"the shard file {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise CommandError(f'the shard file {path} must map shard numbers to market lists: {{"0": ["ETH-USDT"]}}')
    shards: dict[int, list[str]] = {}
    owner: dict[str, int] = {}
    for key, symbols in raw.items():
        if not (isinstance(key, str) and key.isdigit()):
            raise CommandError(f"the shard file {path}: {key!r} is not a shard number")
        if not (isinstance(symbols, list) and all(isinstance(s, str) and s.strip() for s in symbols)):
            raise CommandError(f"the shard file {path}: shard {key} must list market symbols")
        shard = int(key)
        shards[shard] = []
        for symbol in (s.strip().upper() for s in symbols):
            if symbol in owner:
                raise CommandError(
                    f"the shard file {path}: {symbol} is assigned to shards {owner[symbol]} and {shard}; "
                    "a market has exactly one writer"
                )
            owner[symbol] = shard
            shards[shard].append(symbol)
    return shards


class Command(BaseCommand):
    help = "Run the matcher (single writer) of the given markets, or of one shard of a shard map."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--market", action="append", dest="markets", help="Market symbol; repeat for more.")
        parser.add_argument("--shard-file", type=Path, help="JSON shard map: shard number -> market symbols.")
        parser.add_argument("--shard", type=int, help="This process's shard in --shard-file (a pod's ordinal).")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=BATCH_SIZE,
            help=f"Orders and cancels a batch takes at most (default {BATCH_SIZE}).",
        )

    def _symbols(self, options: dict) -> list[str]:
        if options["shard_file"] is None and options["shard"] is None:
            symbols = [m.strip().upper() for m in options["markets"] or []]
            if not symbols:
                symbols = list(Market.objects.values_list("symbol", flat=True))  # halted ones too: they resume
            return symbols
        if options["markets"]:
            raise CommandError("--market and --shard-file exclude each other")
        if options["shard_file"] is None or options["shard"] is None:
            raise CommandError("--shard-file and --shard go together")
        shards = shard_map_read(path=options["shard_file"])
        if options["shard"] not in shards:
            raise CommandError(f"shard {options['shard']} is not in {options['shard_file']} (shards: {sorted(shards)})")
        assigned = {symbol for symbols in shards.values() for symbol in symbols}
        unassigned = Market.objects.filter(status=Market.Status.ACTIVE).exclude(symbol__in=assigned)
        for symbol in unassigned.order_by("symbol").values_list("symbol", flat=True):
            self.stderr.write(f"warning: active market {symbol} is in no shard of {options['shard_file']}")
        return shards[options["shard"]]

    def handle(self, *args, **options) -> None:
        symbols = self._symbols(options)
        if not symbols:
            raise CommandError("no market to run")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(f"matcher running for {', '.join(symbols)}")
        try:
            matchers_run(symbols=symbols, should_stop=lambda: stopping, batch_size=options["batch_size"])
        except MatcherLockError as exc:
            raise CommandError(str(exc)) from exc
        except FencingError as exc:
            raise CommandError(f"stopped: {exc}") from exc
        except Market.DoesNotExist as exc:
            raise CommandError(f"unknown market in {symbols}") from exc
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
