"""Balance events: a user hears of every change of their balances, whatever moved them.

Every balance change is a posting through ``wallets.services``, so that is where the
events start: the posting core hands the user accounts it has just written to
``balances_changed``, and once the transaction commits each user whose balances moved
gets **one** ``user.balances`` message on ``user.<id>``, listing each currency touched
with its ``available`` and ``locked`` balances (strings with the currency's decimal
places, as in ``GET /api/v1/wallets``)::

    {"type": "user.balances", "balances": [{"currency": "ETH", "available": "1.5", "locked": "0"}]}

One call covers a whole ``ledger_post_batch``: the matcher's batch of a thousand legs
sends one message per user, not one per leg. The values are the balances as the posting
left them: the posting locks both balances of every user and currency it touches, also
the one it does not write (a transfer writes only the available balances; it locks the
locked ones beside them, ``services._apply``), and both stay locked until the commit.
Only where the process does not know the other account's id yet (``wallets.account_ids``:
its first posting for that user and currency) are both read in one query after the
commit. Several postings in one transaction send one message each, the last with the
balances as the transaction left them. Messages of different transactions may still
arrive out of order across processes; a client that needs the authority reads
``GET /api/v1/wallets`` (after a reconnect, for instance).

Sent through ``kootabase.events.broadcasts_after_commit`` (nothing is sent for a
rollback, or for a savepoint rolled back); a failure to read or send is logged and
dropped, like every broadcast.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Context, Decimal

from django.db import DEFAULT_DB_ALIAS, transaction

from kootabase.events import broadcasts_after_commit, user_group
from wallets.models import AccountKind, Currency, LedgerAccount

logger = logging.getLogger(__name__)

_DISPLAY = Context(prec=60)
_KINDS = (AccountKind.AVAILABLE, AccountKind.LOCKED)

#: (user id, currency id) -> {account kind: balance} of the user accounts a posting wrote
Changes = Mapping[tuple[int, int], Mapping[str, Decimal]]


def balance_text(value: Decimal, currency: Currency) -> str:
    """``value`` with exactly the currency's decimal places, as the REST API shows it."""
    return format(value.quantize(Decimal(1).scaleb(-currency.precision), context=_DISPLAY), "f")


def balances_changed(*, changes: Changes, currencies: Mapping[int, Currency], using: str = DEFAULT_DB_ALIAS) -> None:
    """Queue one ``user.balances`` message per user of ``changes`` for after the commit."""
    if not changes:
        return
    known = {pair: dict(kinds) for pair, kinds in changes.items() if len(kinds) == len(_KINDS)}
    unknown = [pair for pair in changes if pair not in known]
    transaction.on_commit(lambda: _announce(known, unknown, dict(currencies), using), using=using, robust=True)


def _announce(
    known: dict[tuple[int, int], dict[str, Decimal]],
    unknown: list[tuple[int, int]],
    currencies: dict[int, Currency],
    using: str,
) -> None:
    balances = known | _read(unknown, using)
    by_user: dict[int, list[dict[str, str]]] = defaultdict(list)
    for (user_id, currency_id), kinds in balances.items():
        currency = currencies[currency_id]
        by_user[user_id].append(
            {
                "currency": currency.code,
                "available": balance_text(kinds.get(AccountKind.AVAILABLE, Decimal(0)), currency),
                "locked": balance_text(kinds.get(AccountKind.LOCKED, Decimal(0)), currency),
            }
        )
    broadcasts_after_commit(
        [
            (user_group(user_id), {"type": "user.balances", "balances": sorted(rows, key=lambda b: b["currency"])})
            for user_id, rows in sorted(by_user.items())
        ]
    )


def _read(pairs: Iterable[tuple[int, int]], using: str) -> dict[tuple[int, int], dict[str, Decimal]]:
    """Both balances of each (user, currency), committed now: one query."""
    wanted = set(pairs)
    if not wanted:
        return {}
    rows = (
        LedgerAccount.objects.using(using)
        .filter(
            user_id__in={user_id for user_id, _ in wanted},
            currency_id__in={currency_id for _, currency_id in wanted},
            kind__in=_KINDS,
        )
        .values_list("user_id", "currency_id", "kind", "balance")
    )
    found: dict[tuple[int, int], dict[str, Decimal]] = {pair: {} for pair in wanted}
    for user_id, currency_id, kind, balance in rows:
        if (user_id, currency_id) in found:
            found[(user_id, currency_id)][kind] = balance
    return found
