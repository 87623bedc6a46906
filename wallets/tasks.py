"""Wallet tasks: thin wrappers that call services."""

from __future__ import annotations

from celery import shared_task

from wallets.services import ledger_audit_run


@shared_task(name="wallets.tasks.ledger_audit", ignore_result=True)
def ledger_audit() -> dict:
    """Run the ledger audit and store its result (periodic, on the default queue)."""
    run = ledger_audit_run()
    return {"id": run.pk, "ok": run.ok, "violations": run.violations}
