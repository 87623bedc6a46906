"""Sweeping: consolidating credited deposits from deposit addresses into the hot wallet.

``sweeps_plan`` opens a ``Sweep`` per deposit address and asset with credited, unswept
deposits (one open sweep per address at a time, enforced by a unique ``open_key``, so
an ETH sweep never spends the gas a token sweep was topped up with) and links those
deposits to it. ``sweep_advance`` moves a sweep one step, each step stored before the
next begins, so a crash or a second worker only ever resumes:

- a token sweep whose address lacks gas: the hot wallet sends the missing ETH (the
  top-up, an ``OutgoingTx``), and the sweep waits until it is *confirmed*;
- the sweep transaction itself (the address's whole balance of the asset; for ETH the
  balance less the exact gas cost: max fee = priority fee, so nothing is left over);
- done when it is confirmed; failed (with a ``ChainAlert``) when a step reverts.

Sweeps move no ledger money: the funds were credited on deposit; this only moves the
platform's own coins between its addresses. Deposits below the minimum are swept along
with the rest of the address's balance.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from blockchain.broadcaster import signer_for, tx_send, tx_sign, tx_track
from blockchain.chains import adapter_for
from blockchain.chains.base import ChainError, FeeQuote
from blockchain.hdwallet import hot_wallet
from blockchain.models import Asset, ChainAlert, Deposit, DepositStatus, Network, OutgoingTx, Sweep
from blockchain.services import chain_alert

logger = logging.getLogger(__name__)

_OPEN = (Sweep.Status.TOPUP, Sweep.Status.SWEEPING)


def sweeps_plan(*, network_id: int) -> list[int]:
    """Open the sweeps that are due; returns the ids of every open sweep of the network."""
    network = Network.objects.get(pk=network_id)
    unswept = Deposit.objects.filter(network=network, status=DepositStatus.CONFIRMED, sweep__isnull=True)
    for address, asset_id in sorted(set(unswept.values_list("address", "asset_id"))):
        asset = Asset.objects.select_related("currency").get(pk=asset_id)
        deposits = unswept.filter(address=address, asset=asset)
        if sum(d.amount for d in deposits) < asset.sweep_threshold:
            continue
        try:
            with transaction.atomic():
                sweep = Sweep.objects.create(
                    network=network,
                    asset=asset,
                    address=address,
                    status=Sweep.Status.SWEEPING if asset.is_native else Sweep.Status.TOPUP,
                    open_key=f"{network.pk}:{address}",
                )
                deposits.update(sweep=sweep, updated_at=timezone.now())
        except IntegrityError:
            continue  # this address has an open sweep; the next plan picks these up
    return list(Sweep.objects.filter(network=network, status__in=_OPEN).order_by("pk").values_list("pk", flat=True))


def _finish(sweep: Sweep, status: str, message: str = "") -> Sweep:
    Sweep.objects.filter(pk=sweep.pk).update(status=status, open_key=None, updated_at=timezone.now())
    if status == Sweep.Status.FAILED:
        chain_alert(
            network=sweep.network,
            kind=ChainAlert.Kind.SWEEP_FAILED,
            message=f"Sweep {sweep.pk} of {sweep.address}: {message}",
            details={"sweep": sweep.pk},
        )
    sweep.refresh_from_db()
    return sweep


@transaction.atomic
def _sign_step(sweep_id: int, field: str, **kwargs: object) -> Sweep | None:
    """Sign and store one transaction of a sweep, unless a concurrent run did."""
    sweep = Sweep.objects.select_for_update().select_related("network", "asset").get(pk=sweep_id)
    if getattr(sweep, f"{field}_id") is not None or sweep.status not in _OPEN:
        return None
    tx = tx_sign(network=sweep.network, **kwargs)  # type: ignore[arg-type]
    setattr(sweep, field, tx)
    if field == "sweep_tx":
        sweep.raw_amount = tx.raw_amount
    sweep.save()
    return sweep


def sweep_advance(*, sweep_id: int) -> Sweep:
    """Move one sweep as far as it can go now."""
    sweep = Sweep.objects.select_related("network", "asset", "topup_tx", "sweep_tx").get(pk=sweep_id)
    if sweep.status not in _OPEN:
        return sweep
    network, asset = sweep.network, sweep.asset
    adapter = adapter_for(network)
    head = adapter.head()
    native = network.assets.get(contract_address="")

    if sweep.status == Sweep.Status.TOPUP:
        if sweep.topup_tx is None:
            if adapter.balance(sweep.address, contract=asset.contract_address) == 0:
                return _finish(sweep, Sweep.Status.DONE)
            need = adapter.gas_limit(contract=asset.contract_address) * adapter.fee_quote().max_fee_per_gas
            have = adapter.balance(sweep.address)
            if have < need:
                signed = _sign_step(
                    sweep.pk,
                    "topup_tx",
                    purpose=OutgoingTx.Purpose.GAS_TOPUP,
                    signer=hot_wallet(),
                    to=sweep.address,
                    asset=native,
                    raw_amount=need - have,
                )
                sweep = signed or Sweep.objects.get(pk=sweep.pk)
                if sweep.topup_tx is not None:
                    _send(sweep.topup_tx)
                return sweep
        else:
            topup = tx_track(sweep.topup_tx, head=head)
            if topup.status == OutgoingTx.Status.FAILED:
                return _finish(sweep, Sweep.Status.FAILED, "the gas top-up failed")
            if topup.status != OutgoingTx.Status.CONFIRMED:
                return sweep  # the sweep waits for a confirmed top-up
        Sweep.objects.filter(pk=sweep.pk).update(status=Sweep.Status.SWEEPING, updated_at=timezone.now())
        sweep.status = Sweep.Status.SWEEPING

    if sweep.sweep_tx is None:
        balance = adapter.balance(sweep.address, contract=asset.contract_address)
        quote = adapter.fee_quote()
        fees = FeeQuote(max_fee_per_gas=quote.max_fee_per_gas, priority_fee_per_gas=quote.max_fee_per_gas)
        amount = balance - (0 if asset.contract_address else adapter.gas_limit() * fees.max_fee_per_gas)
        if amount <= 0:
            return _finish(sweep, Sweep.Status.DONE)
        signed = _sign_step(
            sweep.pk,
            "sweep_tx",
            purpose=OutgoingTx.Purpose.SWEEP,
            signer=signer_for(network=network, address=sweep.address),
            to=hot_wallet().address,
            asset=asset,
            raw_amount=amount,
            fees=fees,
        )
        sweep = signed or Sweep.objects.get(pk=sweep.pk)
        if sweep.sweep_tx is not None:
            _send(sweep.sweep_tx)
        return sweep
    swept = tx_track(sweep.sweep_tx, head=head)
    if swept.status == OutgoingTx.Status.CONFIRMED:
        return _finish(sweep, Sweep.Status.DONE)
    if swept.status == OutgoingTx.Status.FAILED:
        return _finish(sweep, Sweep.Status.FAILED, "the sweep transaction failed")
    return sweep


def _send(tx: OutgoingTx) -> None:
    try:
        tx_send(tx)
    except ChainError as exc:  # stored: tx_track sends it again on the next run
        logger.warning("%s: could not send %s yet: %s", tx.network, tx.tx_hash, exc)


def sweeper_run(*, network_id: int) -> list[Sweep]:
    """Plan and advance every sweep of a network once."""
    return [sweep_advance(sweep_id=sweep_id) for sweep_id in sweeps_plan(network_id=network_id)]
