"""The deposit scanner of one network: follows new blocks, records deposits, credits them
once they are final.

One run (``scanner_run``):

1. **Read the chain** (no transaction open): the head, the block at the stored height
   (to compare its hash with the stored one), then up to ``BLOCKCHAIN_SCAN_BATCH_BLOCKS``
   new blocks with their native transfers and the listed tokens' ``Transfer`` logs.
   A mismatch walks back through the stored hashes to the last common block: the fork.
2. **Apply** in one transaction that begins by locking the network's ``ScannerState`` row
   (``SELECT ... FOR UPDATE NOWAIT`` on MySQL/MariaDB, the IMMEDIATE write lock on
   SQLite) and checking that the height is still the one step 1 started from. A second
   scanner of the same network therefore either gives up at once (busy) or finds the
   height moved and does nothing: one scanner per network at a time, and never the same
   blocks applied twice.
   - After a reorganisation, pending deposits of the orphaned blocks become ``orphaned``
     (revived if their transaction shows up again in the new branch); a credited one, or
     a fork deeper than the confirmation depth, raises a ``ChainAlert``.
   - New deposits are stored once (unique on network + tx hash + log index).
   - Pending deposits with enough confirmations are credited through the ledger, one
     posting each with the key ``deposit:{network}:{tx_hash}:{log_index}``, then
     screened by the AML rules (``aml.services.deposits_screen``): a flagged deposit's
     amount is held in the same transaction, until compliance decides.
   - The block hashes are stored (the last ``max(2 x confirmations, 64)`` are kept).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from aml.services import deposits_screen
from blockchain.chains import adapter_for
from blockchain.chains.base import Block, ChainAdapter, Transfer
from blockchain.hdwallet import hot_wallet
from blockchain.models import (
    Asset,
    BlockRecord,
    ChainAlert,
    Deposit,
    DepositAddress,
    DepositStatus,
    Network,
    ScannerState,
)
from blockchain.services import chain_alert, raw_to_amount, scanner_state_ensure
from wallets.locks import retry_on_deadlock
from wallets.models import AMOUNT_LIMIT, AccountKind, EntryKind
from wallets.services import Leg, Posting, ledger_accounts_ensure, ledger_post_batch

logger = logging.getLogger(__name__)

MIN_KEPT_BLOCKS = 64


@dataclass
class ScanResult:
    network: str
    busy: bool = False
    height: int = 0
    head: int = 0
    fork: int | None = None
    found: int = 0
    credited: int = 0
    orphaned: int = 0
    alerts: list[str] = field(default_factory=list)


def _kept_blocks(network: Network) -> int:
    return max(2 * network.confirmations, MIN_KEPT_BLOCKS)


def _find_fork(network: Network, adapter: ChainAdapter, height: int) -> int:
    """The last block the stored hashes and the chain agree on (``height`` when no reorg)."""
    stored = dict(
        BlockRecord.objects.filter(network=network, number__lte=height)
        .order_by("-number")
        .values_list("number", "hash")[: _kept_blocks(network) + 1]
    )
    number = height
    while number in stored:
        if adapter.block(number).hash == stored[number]:
            return number
        number -= 1
    if number == height:
        return height  # nothing stored yet (a new scanner): nothing to compare with
    return number  # deeper than what is kept: the caller raises an alert


def _fetch(adapter: ChainAdapter, network: Network, start: int, end: int) -> tuple[list[Block], list[Transfer]]:
    """Blocks start..end that chain onto each other, and the token transfers in them."""
    blocks: list[Block] = []
    for number in range(start, end + 1):
        block = adapter.block(number)
        if blocks and block.parent_hash != blocks[-1].hash:
            break  # the chain moved under us: stop here, the next run sees the reorg
        blocks.append(block)
    if not blocks:
        return [], []
    contracts = list(
        Asset.objects.filter(network=network).exclude(contract_address="").values_list("contract_address", flat=True)
    )
    hashes = {b.number: b.hash for b in blocks}
    logs = adapter.token_transfers(from_block=blocks[0].number, to_block=blocks[-1].number, contracts=contracts)
    mismatch = [t.block_number for t in logs if hashes.get(t.block_number) != t.block_hash]
    if mismatch:  # the logs come from another branch than the blocks: keep what agrees
        blocks = [b for b in blocks if b.number < min(mismatch)]
        logs = [t for t in logs if t.block_number < min(mismatch)]
    native = [t for b in blocks for t in b.transfers]
    return blocks, native + logs


def _lock_state(network: Network) -> ScannerState | None:
    """The network's scanner state, locked for this transaction; None if another scanner has it."""
    rows = ScannerState.objects.filter(network=network)
    if connection.features.has_select_for_update_nowait:
        try:
            with transaction.atomic():
                return rows.select_for_update(nowait=True).get()
        except DatabaseError:
            return None
    return rows.select_for_update().get()


def scanner_run(*, network_id: int, max_blocks: int | None = None) -> ScanResult:
    """Scan the next blocks of a network once (see the module docstring)."""
    network = Network.objects.get(pk=network_id)
    result = ScanResult(network=network.name)
    if not network.is_active:
        return result
    adapter = adapter_for(network)
    state = scanner_state_ensure(network=network)
    start = state.height
    head = adapter.head()
    fork = _find_fork(network, adapter, start) if head >= start else head
    end = min(head, fork + (max_blocks or settings.BLOCKCHAIN_SCAN_BATCH_BLOCKS))
    blocks, transfers = _fetch(adapter, network, fork + 1, end)
    applied = _apply(
        network=network, start=start, head=head, fork=fork, blocks=blocks, transfers=transfers, result=result
    )
    if not applied:
        result.busy = True
    return result


@retry_on_deadlock
def _apply(
    *,
    network: Network,
    start: int,
    head: int,
    fork: int,
    blocks: list[Block],
    transfers: list[Transfer],
    result: ScanResult,
) -> bool:
    with transaction.atomic():
        state = _lock_state(network)
        if state is None or state.height != start:
            return False
        if fork < start:
            _unwind(network=network, fork=fork, depth=start - fork, result=result)
        if blocks:
            BlockRecord.objects.filter(network=network, number__gte=blocks[0].number).delete()
            BlockRecord.objects.bulk_create(
                [BlockRecord(network=network, number=b.number, hash=b.hash, parent_hash=b.parent_hash) for b in blocks]
            )
        height = blocks[-1].number if blocks else fork
        result.found = _record(network=network, transfers=transfers)
        result.credited = _credit(network=network, head=head, height=height)
        state.height, state.head, state.scanned_at = height, head, timezone.now()
        state.save(update_fields=["height", "head", "scanned_at"])
        BlockRecord.objects.filter(network=network, number__lt=height - _kept_blocks(network)).delete()
    result.height, result.head, result.fork = height, head, (fork if fork < start else None)
    return True


def _unwind(*, network: Network, fork: int, depth: int, result: ScanResult) -> None:
    """Blocks after ``fork`` are no longer on the chain."""
    orphaned = Deposit.objects.filter(network=network, block_number__gt=fork)
    result.orphaned = orphaned.filter(status=DepositStatus.PENDING).update(status=DepositStatus.ORPHANED)
    credited = list(orphaned.filter(status=DepositStatus.CONFIRMED).values_list("pk", flat=True))
    BlockRecord.objects.filter(network=network, number__gt=fork).delete()
    logger.warning("%s: reorganisation of %d block(s) after block %d", network.name, depth, fork)
    if credited or depth >= network.confirmations:
        message = (
            f"Reorganisation of {depth} block(s) after block {fork}, the confirmation depth is "
            f"{network.confirmations}; credited deposits in dropped blocks: {credited or 'none'}."
        )
        chain_alert(
            network=network,
            kind=ChainAlert.Kind.DEEP_REORG,
            message=message,
            details={"fork": fork, "depth": depth, "credited_deposits": credited},
        )
        result.alerts.append(message)


def _record(*, network: Network, transfers: list[Transfer]) -> int:
    """Store the transfers that pay our users' deposit addresses; returns how many are new."""
    platform = {hot_wallet().address}
    transfers = [t for t in transfers if t.from_address not in platform and t.raw_amount > 0]
    if not transfers:
        return 0
    owners = dict(
        DepositAddress.objects.filter(network=network, address__in={t.to_address for t in transfers}).values_list(
            "address", "user_id"
        )
    )
    assets = {a.contract_address: a for a in Asset.objects.select_related("currency").filter(network=network)}
    ours = [t for t in transfers if t.to_address in owners and t.contract in assets]
    existing = {
        (d.tx_hash, d.log_index): d
        for d in Deposit.objects.filter(network=network, tx_hash__in={t.tx_hash for t in ours})
    }
    new = []
    for t in ours:
        stored = existing.get((t.tx_hash, t.log_index))
        if stored is not None:
            if stored.status in (DepositStatus.PENDING, DepositStatus.ORPHANED):
                # Seen again (re-included after a reorganisation): it lives in this block now.
                stored.block_number, stored.block_hash, stored.status = t.block_number, t.block_hash, _status(stored)
                stored.save(update_fields=["block_number", "block_hash", "status", "updated_at"])
            continue
        asset = assets[t.contract]
        amount, dust = raw_to_amount(raw=t.raw_amount, asset=asset)
        if amount >= AMOUNT_LIMIT:
            chain_alert(
                network=network,
                kind=ChainAlert.Kind.DEPOSIT_REFUSED,
                message=f"Deposit {t.tx_hash}:{t.log_index} of {t.raw_amount} units is beyond the ledger's range.",
            )
            continue
        deposit = Deposit(
            network=network,
            asset=asset,
            user_id=owners[t.to_address],
            address=t.to_address,
            from_address=t.from_address,
            tx_hash=t.tx_hash,
            log_index=t.log_index,
            block_number=t.block_number,
            block_hash=t.block_hash,
            raw_amount=t.raw_amount,
            amount=amount,
        )
        deposit.status = _status(deposit)
        new.append(deposit)
        if dust:
            logger.info("%s: deposit %s carries %d units below the currency's precision", network, t.tx_hash, dust)
    Deposit.objects.bulk_create(new)
    return len(new)


def _status(deposit: Deposit) -> str:
    if not deposit.amount or deposit.amount < deposit.asset.min_deposit:
        return DepositStatus.BELOW_MINIMUM
    return DepositStatus.PENDING


def _credit(*, network: Network, head: int, height: int) -> int:
    """Credit every pending deposit that has its confirmations (and lies in scanned blocks)."""
    last_final = min(head - network.confirmations + 1, height)
    due = list(
        Deposit.objects.select_related("asset__currency")
        .filter(network=network, status=DepositStatus.PENDING, block_number__lte=last_final)
        .order_by("pk")
    )
    if not due:
        return 0
    keys = {(None, d.asset.currency_id, AccountKind.EXTERNAL) for d in due}
    keys |= {(d.user_id, d.asset.currency_id, AccountKind.AVAILABLE) for d in due}
    accounts = ledger_accounts_ensure(keys=keys)
    postings = [
        Posting(
            kind=EntryKind.DEPOSIT,
            legs=[
                Leg(accounts[(None, d.asset.currency_id, AccountKind.EXTERNAL)], d.amount.copy_negate()),
                Leg(accounts[(d.user_id, d.asset.currency_id, AccountKind.AVAILABLE)], d.amount),
            ],
            reference=d.reference,
            idempotency_key=f"deposit:{network.name}:{d.tx_hash}:{d.log_index}",
        )
        for d in due
    ]
    entries = ledger_post_batch(postings=postings)
    now = timezone.now()
    for deposit, entry in zip(due, entries, strict=True):
        deposit.status, deposit.journal_entry, deposit.credited_at = DepositStatus.CONFIRMED, entry, now
        deposit.updated_at = now
    Deposit.objects.bulk_update(due, ["status", "journal_entry", "credited_at", "updated_at"])
    deposits_screen(deposits=due)
    return len(due)
