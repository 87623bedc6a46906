"""Signing, sending and following the platform's own transactions; the withdrawal pipeline
from ``approved`` to ``confirmed``.

Crash safety rests on one rule: **a transaction is stored before it is sent.**

- ``tx_sign`` allocates the nonce from ``WalletNonce`` under a row lock (never below the
  node's pending count), signs, and stores the signed bytes and their hash in the same
  transaction that moves the withdrawal to ``signing``.
- ``tx_send`` sends the stored bytes. A crash before, during or after the send leaves
  the withdrawal in ``signing`` with its bytes: the next run sends the *same bytes*
  again, which the node takes as a no-op if it has them (same hash). A withdrawal that
  has a transaction is never signed again with another nonce.
- A fee bump re-signs the *same nonce* with higher fees; the earlier hash is kept in
  ``previous_hashes`` and a receipt for any of them counts. Only one can be mined.
- ``tx_track`` follows receipts: mined, then confirmed after the network's
  confirmations, or failed (reverted). A mined transaction that disappears (reorg) is
  sent again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from eth_account.signers.local import LocalAccount

from blockchain.chains import adapter_for
from blockchain.chains.base import ChainAdapter, ChainError, FeeQuote, NonceConsumed, SignedTx
from blockchain.hdwallet import account_at, hot_wallet
from blockchain.models import (
    Asset,
    ChainAlert,
    DepositAddress,
    Network,
    OutgoingTx,
    WalletNonce,
    Withdrawal,
    WithdrawalStatus,
)
from blockchain.services import amount_to_raw, chain_alert, withdrawal_fail, withdrawal_settle
from wallets.locks import retry_on_deadlock

logger = logging.getLogger(__name__)

FEE_BUMP_NUMERATOR, FEE_BUMP_DENOMINATOR = 5, 4  # +25%: nodes want at least +10% to replace


# --- Transactions ---------------------------------------------------------------------


def _nonce_allocate(*, network: Network, address: str, adapter: ChainAdapter) -> int:
    """The next nonce of ``address`` (inside the caller's transaction, under a row lock)."""
    rows = WalletNonce.objects.select_for_update().filter(network=network, address=address)
    row = rows.first()
    if row is None:
        try:
            with transaction.atomic():
                WalletNonce.objects.create(network=network, address=address, next_nonce=0)
        except IntegrityError:
            pass
        row = rows.get()
    nonce = max(row.next_nonce, adapter.nonce(address))
    row.next_nonce = nonce + 1
    row.save(update_fields=["next_nonce"])
    return nonce


def signer_for(*, network: Network, address: str) -> LocalAccount:
    """The key of one of the platform's addresses: the hot wallet or a deposit address."""
    if address == hot_wallet().address:
        return hot_wallet()
    path = DepositAddress.objects.filter(network=network, address=address).values_list("derivation_path", flat=True)
    return account_at(path.get())


def tx_sign(
    *,
    network: Network,
    purpose: str,
    signer: LocalAccount,
    to: str,
    asset: Asset,
    raw_amount: int,
    fees: FeeQuote | None = None,
) -> OutgoingTx:
    """Sign a transfer and store it (must run inside the caller's transaction)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("tx_sign stores the transaction with the caller's change: call it in a transaction")
    adapter = adapter_for(network)
    fees = fees or adapter.fee_quote()
    gas_limit = adapter.gas_limit(contract=asset.contract_address)
    nonce = _nonce_allocate(network=network, address=signer.address, adapter=adapter)
    signed = adapter.sign_transfer(
        private_key=bytes(signer.key),
        to=to,
        contract=asset.contract_address,
        raw_amount=raw_amount,
        nonce=nonce,
        gas_limit=gas_limit,
        fees=fees,
    )
    return OutgoingTx.objects.create(
        network=network,
        purpose=purpose,
        from_address=signer.address,
        to_address=to,
        asset=asset,
        raw_amount=raw_amount,
        nonce=nonce,
        gas_limit=gas_limit,
        max_fee_per_gas=fees.max_fee_per_gas,
        priority_fee_per_gas=fees.priority_fee_per_gas,
        signed_raw=signed.raw,
        tx_hash=signed.tx_hash,
    )


def tx_send(tx: OutgoingTx) -> None:
    """Send the stored bytes (again). ``NonceConsumed``/``ChainError`` propagate."""
    adapter_for(tx.network).send(SignedTx(raw=tx.signed_raw, tx_hash=tx.tx_hash))
    OutgoingTx.objects.filter(pk=tx.pk).update(
        status=F("status") if tx.status != OutgoingTx.Status.SIGNED else OutgoingTx.Status.SENT,
        sent_at=timezone.now() if tx.sent_at is None else tx.sent_at,
        send_attempts=F("send_attempts") + 1,
        updated_at=timezone.now(),
    )
    tx.refresh_from_db()


@transaction.atomic
def tx_bump(tx: OutgoingTx) -> OutgoingTx:
    """Re-sign the same nonce with higher fees, store it, then (after commit) send it."""
    tx = OutgoingTx.objects.select_for_update().get(pk=tx.pk)
    adapter = adapter_for(tx.network)
    quote = adapter.fee_quote()
    fees = FeeQuote(
        max_fee_per_gas=max(quote.max_fee_per_gas, -(-tx.max_fee_per_gas * FEE_BUMP_NUMERATOR // FEE_BUMP_DENOMINATOR)),
        priority_fee_per_gas=max(
            quote.priority_fee_per_gas, -(-tx.priority_fee_per_gas * FEE_BUMP_NUMERATOR // FEE_BUMP_DENOMINATOR)
        ),
    )
    signer = signer_for(network=tx.network, address=tx.from_address)
    signed = adapter.sign_transfer(
        private_key=bytes(signer.key),
        to=tx.to_address,
        contract=tx.asset.contract_address,
        raw_amount=tx.raw_amount,
        nonce=tx.nonce,
        gas_limit=tx.gas_limit,
        fees=fees,
    )
    tx.previous_hashes = [*tx.previous_hashes, tx.tx_hash]
    tx.signed_raw, tx.tx_hash = signed.raw, signed.tx_hash
    tx.max_fee_per_gas, tx.priority_fee_per_gas = fees.max_fee_per_gas, fees.priority_fee_per_gas
    tx.sent_at = timezone.now()
    tx.save()
    return tx


def tx_track(tx: OutgoingTx, *, head: int) -> OutgoingTx:
    """Bring ``tx``'s status up to date from the node; re-send or bump it when it is stuck."""
    adapter = adapter_for(tx.network)
    receipt = None
    for tx_hash in [tx.tx_hash, *tx.previous_hashes]:
        receipt = adapter.receipt(tx_hash)
        if receipt is not None:
            break
    now = timezone.now()
    if receipt is None:
        if tx.status == OutgoingTx.Status.MINED:
            logger.warning("%s: %s left the chain (reorganisation); sending it again", tx.network, tx.tx_hash)
        stuck = tx.sent_at and now - tx.sent_at > timedelta(seconds=settings.BLOCKCHAIN_FEE_BUMP_AFTER)
        if stuck:
            tx = tx_bump(tx)
        try:
            tx_send(tx)
        except NonceConsumed:
            return _nonce_taken(tx)
        except ChainError as exc:
            logger.warning("%s: could not send %s: %s", tx.network, tx.tx_hash, exc)
        OutgoingTx.objects.filter(pk=tx.pk).update(status=OutgoingTx.Status.SENT, block_number=None, block_hash="")
        tx.refresh_from_db()
        return tx
    confirmations = head - receipt.block_number + 1
    if not receipt.success:
        status = OutgoingTx.Status.FAILED
    elif confirmations >= tx.network.confirmations:
        status = OutgoingTx.Status.CONFIRMED
    else:
        status = OutgoingTx.Status.MINED
    OutgoingTx.objects.filter(pk=tx.pk).update(
        status=status,
        mined_hash=receipt.tx_hash,
        block_number=receipt.block_number,
        block_hash=receipt.block_hash,
        updated_at=now,
    )
    tx.refresh_from_db()
    return tx


def _nonce_taken(tx: OutgoingTx) -> OutgoingTx:
    """Another transaction (none of ours) took the nonce: this one can never be mined."""
    chain_alert(
        network=tx.network,
        kind=ChainAlert.Kind.TX_FAILED,
        message=f"Nonce {tx.nonce} of {tx.from_address} was used by another transaction; {tx.tx_hash} is void.",
        details={"tx": tx.pk},
    )
    OutgoingTx.objects.filter(pk=tx.pk).update(status=OutgoingTx.Status.FAILED, updated_at=timezone.now())
    tx.refresh_from_db()
    return tx


# --- Withdrawals ----------------------------------------------------------------------


@retry_on_deadlock
@transaction.atomic
def withdrawal_sign(*, withdrawal_id: int) -> Withdrawal:
    """``approved`` -> ``signing``: the signed transaction is stored with the status."""
    withdrawal = (
        Withdrawal.objects.select_for_update()
        .select_related("network", "asset", "asset__currency", "asset__network")
        .get(pk=withdrawal_id)
    )
    if withdrawal.status != WithdrawalStatus.APPROVED or withdrawal.tx_id is not None:
        return withdrawal
    withdrawal.tx = tx_sign(
        network=withdrawal.network,
        purpose=OutgoingTx.Purpose.WITHDRAWAL,
        signer=hot_wallet(),
        to=withdrawal.address,
        asset=withdrawal.asset,
        raw_amount=amount_to_raw(amount=withdrawal.amount, asset=withdrawal.asset),
    )
    withdrawal.status = WithdrawalStatus.SIGNING
    withdrawal.save(update_fields=["tx", "status", "updated_at"])
    return withdrawal


def withdrawal_send(*, withdrawal_id: int) -> Withdrawal:
    """``signing`` -> ``broadcast``: send the stored bytes (again, after a crash)."""
    withdrawal = Withdrawal.objects.select_related("tx", "tx__network").get(pk=withdrawal_id)
    if withdrawal.status != WithdrawalStatus.SIGNING:
        return withdrawal
    try:
        tx_send(withdrawal.tx)
    except NonceConsumed:
        head = adapter_for(withdrawal.network).head()
        if tx_track(withdrawal.tx, head=head).status == OutgoingTx.Status.SIGNED:
            _nonce_taken(withdrawal.tx)
    Withdrawal.objects.filter(pk=withdrawal.pk, status=WithdrawalStatus.SIGNING).update(
        status=WithdrawalStatus.BROADCAST, updated_at=timezone.now()
    )
    withdrawal.refresh_from_db()
    return withdrawal


@retry_on_deadlock
def withdrawal_track(*, withdrawal_id: int, head: int) -> Withdrawal:
    """``broadcast`` -> ``confirmed`` (the hold is paid out) or ``failed`` (released)."""
    withdrawal = Withdrawal.objects.select_related("tx", "tx__network", "tx__asset").get(pk=withdrawal_id)
    if withdrawal.status != WithdrawalStatus.BROADCAST:
        return withdrawal
    tx = tx_track(withdrawal.tx, head=head)
    if tx.status not in (OutgoingTx.Status.CONFIRMED, OutgoingTx.Status.FAILED):
        return withdrawal
    with transaction.atomic():
        withdrawal = (
            Withdrawal.objects.select_for_update()
            .select_related("user", "currency", "network", "asset")
            .get(pk=withdrawal_id)
        )
        if withdrawal.status != WithdrawalStatus.BROADCAST:
            return withdrawal
        if tx.status == OutgoingTx.Status.CONFIRMED:
            withdrawal_settle(withdrawal=withdrawal)
            withdrawal.status = WithdrawalStatus.CONFIRMED
            withdrawal.save(update_fields=["status", "updated_at"])
        else:
            chain_alert(
                network=withdrawal.network,
                kind=ChainAlert.Kind.TX_FAILED,
                message=f"Withdrawal {withdrawal.pk}: transaction {tx.tx_hash} failed; the hold is released.",
                details={"withdrawal": withdrawal.pk, "tx": tx.pk},
            )
            withdrawal_fail(withdrawal=withdrawal, reason="the transaction failed on chain")
    return withdrawal


def withdrawals_broadcast(*, network_id: int) -> int:
    """Sign every approved withdrawal of a network and send every signed one. Returns how
    many were sent."""
    approved = Withdrawal.objects.filter(network_id=network_id, status=WithdrawalStatus.APPROVED).order_by("pk")
    for withdrawal_id in list(approved.values_list("pk", flat=True)):
        withdrawal_sign(withdrawal_id=withdrawal_id)
    signing = Withdrawal.objects.filter(network_id=network_id, status=WithdrawalStatus.SIGNING).order_by("pk")
    sent = 0
    for withdrawal_id in list(signing.values_list("pk", flat=True)):
        try:
            withdrawal_send(withdrawal_id=withdrawal_id)
            sent += 1
        except ChainError as exc:
            logger.warning("withdrawal %s not sent yet: %s", withdrawal_id, exc)
    return sent


def withdrawals_track(*, network_id: int) -> int:
    """Follow every broadcast withdrawal of a network. Returns how many became final."""
    network = Network.objects.get(pk=network_id)
    head = adapter_for(network).head()
    final = 0
    broadcast = Withdrawal.objects.filter(network=network, status=WithdrawalStatus.BROADCAST).order_by("pk")
    for withdrawal_id in list(broadcast.values_list("pk", flat=True)):
        if withdrawal_track(withdrawal_id=withdrawal_id, head=head).is_final:
            final += 1
    return final
