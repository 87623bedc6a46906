"""The process's copy of the AML rule parameters, read by every screened item.

A ``kootabase.catalog.Catalog``: a rule switched or tuned in the back office applies at
once in the process that saved it and within a quarter of a second in the others. The
rows are shared read-only between callers.
"""

from __future__ import annotations

from aml.models import RuleParameter
from kootabase.catalog import Catalog

parameters = Catalog(
    "aml.parameters", lambda: tuple(RuleParameter.objects.filter(enabled=True)), watched=(RuleParameter,)
)


def enabled_for(*, kind: str) -> list[RuleParameter]:
    """The enabled parameter rows of every rule for items of ``kind`` (and of any kind)."""
    return [p for p in parameters.get() if p.kind in (kind, "")]
