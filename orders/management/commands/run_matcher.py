"""Run the single writer of one or more markets: ``run_matcher --market ETH-USDT``.

Without ``--market`` it runs every market that is not halted. A second process for a
market that already has a matcher exits at once with an error. SIGTERM/SIGINT stop it
after the batch in progress.
"""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders.matcher import FencingError, MatcherLockError, matchers_run
from orders.models import Market


class Command(BaseCommand):
    help = "Run the matcher (single writer) of the given markets."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--market", action="append", dest="markets", help="Market symbol; repeat for more.")

    def handle(self, *args, **options) -> None:
        symbols = [m.strip().upper() for m in options["markets"] or []]
        if not symbols:
            symbols = list(Market.objects.exclude(status=Market.Status.HALTED).values_list("symbol", flat=True))
        if not symbols:
            raise CommandError("no market to run")
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"matcher running for {', '.join(symbols)}")
        try:
            matchers_run(symbols=symbols, should_stop=lambda: stopping)
        except MatcherLockError as exc:
            raise CommandError(str(exc)) from exc
        except FencingError as exc:
            raise CommandError(f"stopped: {exc}") from exc
        except Market.DoesNotExist as exc:
            raise CommandError(f"unknown market in {symbols}") from exc
