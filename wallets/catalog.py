"""The process's copy of the currencies, for every money path's currency lookup.

A ``kootabase.catalog.Catalog``: a currency switched off in the back office is refused
at once by the process that saved it and within a quarter of a second by the others.
Callers get their own copy of a currency, never the shared instance.
"""

from __future__ import annotations

import copy

from kootabase.catalog import Catalog
from wallets.models import Currency

currencies = Catalog("wallets.currencies", lambda: {c.code: c for c in Currency.objects.all()}, watched=(Currency,))


def currency_by_code(code: str) -> Currency | None:
    """A copy of the currency ``code`` (upper case); None if unknown."""
    currency = currencies.get().get(code)
    return copy.copy(currency) if currency is not None else None
