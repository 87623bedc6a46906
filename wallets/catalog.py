"""The process's copy of the currencies, for every money path's currency lookup.

A ``kootabase.catalog.Catalog``: a currency switched off in the back office is refused
at once by the process that saved it and within a quarter of a second by the others.
Callers get their own copy of a currency, never the shared instance.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from kootabase.catalog import Catalog
from wallets.models import Currency

currencies = Catalog("wallets.currencies", lambda: {c.code: c for c in Currency.objects.all()}, watched=(Currency,))


def currency_by_code(code: str) -> Currency | None:
    """A copy of the currency ``code`` (upper case); None if unknown."""
    currency = currencies.get().get(code)
    return copy.copy(currency) if currency is not None else None


def currencies_by_id(ids: Iterable[int]) -> dict[int, Currency]:
    """Copies of the currencies ``ids`` by id; one the catalog does not hold yet (created
    by another process within its check interval) is read from the database."""
    wanted = set(ids)
    found = {c.pk: copy.copy(c) for c in currencies.get().values() if c.pk in wanted}
    if len(found) < len(wanted):
        found |= Currency.objects.in_bulk(wanted - found.keys())
    return found
