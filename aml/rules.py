"""The AML rules engine: small named rules evaluated over one screened item.

An ``Item`` is a deposit, a withdrawal or a transfer seen the same way: its kind, user,
currency, amount, counterparty (an address, or the other user's email) and time. Each
rule is a unit with a ``name`` (a ``RuleName``) and a ``check`` that, given the item and
its enabled ``RuleParameter`` rows, returns why it flags the item (nothing: it does not).
``evaluate`` runs every rule that has a row for the item's kind and currency.

Cost: the parameters come from the process's copy (``aml.catalog``), then what each rule needs — the threshold nothing,
the block-list one ``stat`` of its file, a velocity limit one indexed query, the
fresh-deposit rule (withdrawals only) at most two.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import ClassVar

from aml import blocklist, catalog, selectors
from aml.models import ItemKind, RuleName, RuleParameter


@dataclass(frozen=True, slots=True)
class Item:
    """What the rules see of a deposit, withdrawal or transfer."""

    kind: str  # ItemKind
    id: int
    user_id: int
    user_email: str
    currency_id: int
    currency_code: str
    amount: Decimal
    counterparty: str  # the address paid from (deposit) or to (withdrawal), the recipient's email (transfer)
    at: datetime  # credited (deposit), requested (withdrawal), made (transfer)


@dataclass(frozen=True, slots=True)
class Hit:
    rule: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "reason": self.reason}


def _money(amount: Decimal, code: str) -> str:
    return f"{amount.normalize():f} {code}"


def _window(minutes: int) -> str:
    if minutes % 1440 == 0:
        return f"{minutes // 1440} day(s)"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


class Rule:
    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]] = tuple(ItemKind.values)

    def check(self, item: Item, parameters: Sequence[RuleParameter]) -> list[str]:
        raise NotImplementedError


class Threshold(Rule):
    """The amount is at or above the configured amount of its currency."""

    name = RuleName.THRESHOLD

    def check(self, item: Item, parameters: Sequence[RuleParameter]) -> list[str]:
        limits = [p.amount for p in parameters if p.amount is not None and p.currency_id == item.currency_id]
        if not limits or item.amount < min(limits):
            return []
        threshold = min(limits).normalize()
        return [f"amount {_money(item.amount, item.currency_code)} at or above the review threshold {threshold:f}"]


class Velocity(Rule):
    """More than ``count`` items, or more than ``amount`` in total, of the item's kind by the
    same user within ``window_minutes`` up to the item (the item included)."""

    name = RuleName.VELOCITY

    def check(self, item: Item, parameters: Sequence[RuleParameter]) -> list[str]:
        reasons = []
        for p in parameters:
            window = p.window_minutes or 0
            count, total = selectors.items_in_window(
                kind=item.kind,
                user_id=item.user_id,
                since=item.at - timedelta(minutes=window),
                until=item.at,
                currency_id=p.currency_id,
                with_total=p.amount is not None,
            )
            what = f"{item.kind}s" + (f" of {item.currency_code}" if p.currency_id else "")
            if p.count is not None and count > p.count:
                reasons.append(f"{count} {what} within {_window(window)}, more than {p.count}")
            if p.amount is not None and total is not None and total > p.amount:
                reasons.append(
                    f"{what} of {_money(total, item.currency_code)} within {_window(window)}, "
                    f"more than {p.amount.normalize():f}"
                )
        return reasons


class FreshDeposit(Rule):
    """A withdrawal within ``window_minutes`` after a credited deposit, to an address this
    user never withdrew to before: money passing straight through."""

    name = RuleName.FRESH_DEPOSIT
    kinds = (ItemKind.WITHDRAWAL,)

    def check(self, item: Item, parameters: Sequence[RuleParameter]) -> list[str]:
        window = max(p.window_minutes or 0 for p in parameters)
        deposit = selectors.last_deposit_credited(
            user_id=item.user_id, since=item.at - timedelta(minutes=window), until=item.at
        )
        if deposit is None:
            return []
        if selectors.address_used_before(user_id=item.user_id, address=item.counterparty, other_than=item.id):
            return []
        after = item.at - deposit.credited_at
        return [
            f"to a new address {int(after.total_seconds() // 60)} min after {deposit.reference} "
            f"({_money(deposit.amount, deposit.asset.currency.code)}) was credited"
        ]


class Blocklist(Rule):
    """The counterparty (address or email) or the user's own email is on the block-list file."""

    name = RuleName.BLOCKLIST

    def check(self, item: Item, parameters: Sequence[RuleParameter]) -> list[str]:
        blocked = blocklist.entries()
        if not blocked:
            return []
        reasons = []
        if item.counterparty and item.counterparty.lower() in blocked:
            reasons.append(f"counterparty {item.counterparty} is on the block-list")
        if item.user_email.lower() in blocked:
            reasons.append(f"user {item.user_email} is on the block-list")
        return reasons


RULES: tuple[Rule, ...] = (Threshold(), Velocity(), FreshDeposit(), Blocklist())


def parameters_for(*, kind: str) -> list[RuleParameter]:
    """The enabled parameter rows of every rule for items of ``kind`` (from the process's
    copy, ``aml.catalog``: no query)."""
    return catalog.enabled_for(kind=kind)


def evaluate(item: Item, parameters: Iterable[RuleParameter] | None = None) -> list[Hit]:
    """The rules that flag ``item``, with why. ``parameters``: the rows of
    ``parameters_for(kind=item.kind)`` when the caller screens several items."""
    if parameters is None:
        parameters = parameters_for(kind=item.kind)
    by_rule: dict[str, list[RuleParameter]] = defaultdict(list)
    for p in parameters:
        if p.kind in ("", item.kind) and p.currency_id in (None, item.currency_id):
            by_rule[p.rule].append(p)
    hits = []
    for rule in RULES:
        if item.kind in rule.kinds and by_rule.get(rule.name):
            hits.extend(Hit(rule.name, reason) for reason in rule.check(item, by_rule[rule.name]))
    return hits
