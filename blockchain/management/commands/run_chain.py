"""Serve the embedded chain to the other processes of the embedded run (see
``blockchain.chains.embedded``). The chain lives in memory: every start is a fresh chain,
so the embedded networks' scanners and nonces start over with it."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from blockchain.chains.embedded import embedded_chain, serve
from blockchain.chains.embedded_constants import CHAIN_ID
from blockchain.models import BlockRecord, Network, ScannerState, WalletNonce


class Command(BaseCommand):
    help = "Run the in-process EVM as a local JSON-RPC node (embedded run only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=settings.BLOCKCHAIN_EMBEDDED_CHAIN_PORT)
        parser.add_argument("--block-time", type=float, default=2.0)

    def handle(self, *args, **options) -> None:
        if settings.PRODUCTION:
            raise CommandError("production has no embedded chain: configure ETH_RPC_URL")
        head = embedded_chain().w3.eth.block_number
        embedded = Network.objects.filter(chain_id=CHAIN_ID).exclude(name__in=settings.BLOCKCHAIN_RPC_URLS)
        BlockRecord.objects.filter(network__in=embedded).delete()
        WalletNonce.objects.filter(network__in=embedded).delete()
        ScannerState.objects.filter(network__in=embedded).update(height=head, head=head)
        serve(port=options["port"], block_time=options["block_time"])
