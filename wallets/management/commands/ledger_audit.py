"""Prove the ledger's invariants; exit code 0 only when every one holds."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from wallets.services import ledger_audit_run


class Command(BaseCommand):
    help = (
        "Check that every journal entry balances per currency, every balance equals the sum of "
        "its legs, no user balance is negative and every currency sums to zero. Stores the result "
        "for the back office; exits 1 and lists each violation when any is found."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-store", action="store_true", help="Do not record this run.")

    def handle(self, *args: Any, **options: Any) -> None:
        run = ledger_audit_run(store=not options["no_store"])
        summary = (
            f"{run.entries_checked} entries, {run.legs_checked} legs, {run.accounts_checked} accounts "
            f"checked in {(run.finished_at - run.started_at).total_seconds():.2f}s"
        )
        if run.ok:
            self.stdout.write(self.style.SUCCESS(f"Ledger audit passed: {summary}."))
            return
        for finding in run.findings:
            self.stderr.write(f"[{finding['check']}] {finding['message']}")
        raise CommandError(f"Ledger audit FAILED: {run.violations} violation(s), listed above; {summary}.")
