"""Blockchain tasks: thin wrappers around the workers, on the ``blockchain`` queue (routed by
module in ``kootabase.celery``). Each is idempotent; the periodic ones run every active
network."""

from __future__ import annotations

from celery import shared_task

from blockchain import broadcaster, scanner, services, sweeper
from blockchain.models import Network


def _networks() -> list[int]:
    return list(Network.objects.filter(is_active=True).values_list("pk", flat=True))


@shared_task(name="blockchain.tasks.scan_deposits", ignore_result=True)
def scan_deposits() -> dict:
    """Periodic: scan the next blocks of every network for deposits and credit the final ones."""
    results = {}
    for network_id in _networks():
        result = scanner.scanner_run(network_id=network_id)
        results[result.network] = {"height": result.height, "found": result.found, "credited": result.credited}
    return results


@shared_task(name="blockchain.tasks.withdrawal_screen", ignore_result=True)
def withdrawal_screen(withdrawal_id: int) -> str:
    """A new withdrawal: to review or approved (then broadcast)."""
    return services.withdrawal_screen(withdrawal_id=withdrawal_id).status


@shared_task(name="blockchain.tasks.withdrawals_broadcast", ignore_result=True)
def withdrawals_broadcast(network_id: int) -> int:
    """Sign and send the network's approved withdrawals (and resend signed ones)."""
    return broadcaster.withdrawals_broadcast(network_id=network_id)


@shared_task(name="blockchain.tasks.process_withdrawals", ignore_result=True)
def process_withdrawals() -> dict:
    """Periodic: screen what is still requested, send what is approved, follow what is sent."""
    from blockchain.models import Withdrawal, WithdrawalStatus

    for withdrawal_id in Withdrawal.objects.filter(status=WithdrawalStatus.REQUESTED).values_list("pk", flat=True):
        services.withdrawal_screen(withdrawal_id=withdrawal_id)
    results = {}
    for network_id in _networks():
        sent = broadcaster.withdrawals_broadcast(network_id=network_id)
        final = broadcaster.withdrawals_track(network_id=network_id)
        results[network_id] = {"sent": sent, "final": final}
    return results


@shared_task(name="blockchain.tasks.sweep_deposits", ignore_result=True)
def sweep_deposits() -> dict:
    """Periodic: consolidate credited deposits into the hot wallet."""
    return {network_id: [s.status for s in sweeper.sweeper_run(network_id=network_id)] for network_id in _networks()}
