"""Shared by ``credit`` and ``debit``: an operator's manual adjustment from the shell."""

from __future__ import annotations

import getpass
from typing import Any, Literal

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.exceptions import ValidationError

from accounts.selectors import user_get_by_email
from kootabase.errors import ServiceError
from wallets import services
from wallets.api.fields import AmountField


class AdjustmentCommand(BaseCommand):
    direction: Literal["credit", "debit"]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="The user's email.")
        parser.add_argument("currency", help="Currency code, e.g. USD.")
        parser.add_argument("amount", help='A positive amount, e.g. "250.00".')
        parser.add_argument("--reason", required=True, help="Why: recorded with the adjustment.")
        parser.add_argument("--operator", help="Your staff email, recorded as who did it.")
        parser.add_argument(
            "--idempotency-key", help="Run the same command again with the same key and nothing moves twice."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            amount = AmountField().run_validation(options["amount"])
        except ValidationError as exc:
            raise CommandError(f"amount: {exc.detail[0]}") from exc
        user = user_get_by_email(email=options["email"])
        if user is None:
            raise CommandError(f"No active user has the email {options['email']}.")
        operator = None
        if options["operator"]:
            operator = user_get_by_email(email=options["operator"])
            if operator is None or not operator.is_staff:
                raise CommandError(f"{options['operator']} is not an active staff member.")
        actor = f"command:{getpass.getuser()}" + (f" as {operator.email}" if operator else "")
        try:
            currency = services.currency_get_enabled(code=options["currency"])
            adjustment = services.adjustment_post(
                user=user,
                currency=currency,
                amount=amount,
                direction=self.direction,
                reason=options["reason"],
                actor=actor,
                created_by=operator,
                idempotency_key=options["idempotency_key"] or None,
            )
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        verb = "Credited" if self.direction == "credit" else "Debited"
        self.stdout.write(
            f"{verb} {amount:f} {currency.code} {'to' if self.direction == 'credit' else 'from'} {user.email} "
            f"({adjustment.reference}, by {adjustment.actor})."
        )
