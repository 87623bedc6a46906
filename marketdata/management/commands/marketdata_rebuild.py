"""Recompute candles, depth and ticker inputs from the trades table and the resting orders:
``marketdata_rebuild [--market ETH-USDT ...]`` (no ``--market``: every market).

Safe while the matcher runs: the rebuild holds the market's ``MarketState`` row lock, which
the matcher's batches take too, and live feeds resync from a new snapshot."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata.services import marketdata_rebuild
from orders.models import Market


class Command(BaseCommand):
    help = "Rebuild the market-data aggregates (candles, depth, tickers) from trades and resting orders."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--market", action="append", dest="markets", help="Market symbol; repeat for more.")

    def handle(self, *args, **options) -> None:
        symbols = [m.strip().upper() for m in options["markets"] or []]
        markets = Market.objects.select_related("base", "quote").order_by("symbol")
        if symbols:
            markets = markets.filter(symbol__in=symbols)
            missing = set(symbols) - {m.symbol for m in markets}
            if missing:
                raise CommandError(f"unknown market {', '.join(sorted(missing))}")
        for market in markets:
            state = marketdata_rebuild(market=market)
            self.stdout.write(f"{market.symbol}: rebuilt up to trade {state.last_trade_no}, seq {state.seq}")
