"""``AmountField``: the one way the API reads and writes money.

Amounts travel as JSON strings of plain decimal digits ("12.5", "0.00010000"). The
field refuses floats (the JSON parser has already rounded them), NaN and Infinity,
exponents ("1e3"), whitespace and anything else that is not a plain decimal, and
returns an exact ``Decimal``. Error codes are the same for every amount field, the
field itself is named in ``details``:

- ``amount_invalid``: not a plain decimal string;
- ``amount_not_positive``: zero or negative (unless ``allow_negative``/``allow_zero``);
- ``amount_precision``: more decimal places than ``max_decimal_places``;
- ``amount_out_of_range``: as large as or larger than the ledger's limit (10^18).

A currency's own precision is checked by the service that knows the currency
(``wallets.services.amount_validate``), with the same ``amount_precision`` code.

On output, ``precision_source`` (a dotted attribute path on the serialized object, e.g.
``"currency.precision"``) shows the value with exactly the currency's decimal places.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal
from operator import attrgetter
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from wallets.models import AMOUNT_DECIMAL_PLACES, AMOUNT_LIMIT

_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")  # ASCII digits only
_MAX_LENGTH = 80
_DISPLAY = Context(prec=60)


def plain_decimal_text(data: Any) -> str | None:
    """``data`` as text when it is money as the API takes it, None otherwise: a string of
    ASCII digits with an optional minus sign and a decimal point between digits, or a whole
    JSON number (exact). Refused: a JSON number with a fraction or an exponent (the JSON
    parser has already rounded it to a float), booleans, exponents, whitespace, a plus
    sign, other scripts' digits, digit groups. Every field that reads money checks this
    first (``AmountField`` and the order API's decimals)."""
    if isinstance(data, bool) or not isinstance(data, str | int):
        return None
    text = str(data)
    return text if _PLAIN_DECIMAL.fullmatch(text) else None


@extend_schema_field({"type": "string", "format": "decimal", "example": "0.5"})
class AmountField(serializers.Field):
    default_error_messages = {
        "amount_invalid": 'Send the amount as a string of digits, e.g. "0.5".',
        "amount_not_positive": "The amount must be greater than zero.",
        "amount_negative": "The amount must not be negative.",
        "amount_precision": "The amount has more than {places} decimal places.",
        "amount_out_of_range": "The amount must be less than {limit}.",
    }

    def __init__(
        self,
        *,
        max_decimal_places: int = AMOUNT_DECIMAL_PLACES,
        allow_zero: bool = False,
        allow_negative: bool = False,
        precision_source: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.max_decimal_places = max_decimal_places
        self.allow_zero = allow_zero
        self.allow_negative = allow_negative
        self.precision_source = precision_source
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        text = plain_decimal_text(data)
        if text is None or len(text) > _MAX_LENGTH:
            self.fail("amount_invalid")
        value = Decimal(text)
        if value < 0 and not self.allow_negative:
            self.fail("amount_negative" if self.allow_zero else "amount_not_positive")
        if not value and not self.allow_zero:
            self.fail("amount_not_positive")
        if value.copy_abs() >= AMOUNT_LIMIT:
            self.fail("amount_out_of_range", limit=f"{AMOUNT_LIMIT:f}")
        if value != value.quantize(Decimal(1).scaleb(-self.max_decimal_places), context=_DISPLAY):
            self.fail("amount_precision", places=self.max_decimal_places)
        return value

    def get_attribute(self, instance: Any) -> Any:
        value = super().get_attribute(instance)
        if self.precision_source and value is not None:
            places = attrgetter(self.precision_source)(instance)
            value = value.quantize(Decimal(1).scaleb(-places), context=_DISPLAY)
        return value

    def to_representation(self, value: Decimal) -> str:
        return format(value, "f")
