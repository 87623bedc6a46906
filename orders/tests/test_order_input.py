"""An order's input, read directly for speed, gives exactly DRF's field-by-field result:
the same validated data for what is valid, the same errors for what is not."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.exceptions import ValidationError

from kootabase.api.serializers import InputSerializer
from orders.api.serializers import OrderBatchInput, OrderPlaceInput, _order_input_direct

VALID = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2001.50", "quantity": "0.051"}

INPUTS: list[Any] = [
    VALID,
    {**VALID, "client_order_id": "bot-7:a_b.c"},
    {**VALID, "time_in_force": "ioc", "post_only": True},
    {**VALID, "post_only": False, "time_in_force": "fok"},
    {"market": "ETH-USDT", "side": "buy", "type": "market", "quote_amount": "100"},
    {**VALID, "side": "sell", "type": "stop-limit", "price": "1900", "stop_price": "1950", "quantity": "1"},
    {**VALID, "price": None, "stop_price": None},
    {**VALID, "price": "1e3"},
    {**VALID, "price": " 2000 "},
    {**VALID, "price": "-5"},
    {**VALID, "price": 2000},
    {**VALID, "price": 2000.25},
    {**VALID, "price": "2000.0000000000000000001"},
    {**VALID, "price": "1" * 40},
    {**VALID, "price": "NaN"},
    {**VALID, "price": "Infinity"},
    {**VALID, "price": ""},
    {**VALID, "price": "two thousand"},
    {**VALID, "price": True},
    {**VALID, "quantity": ["1"]},
    {**VALID, "market": ""},
    {**VALID, "market": "  ETH-USDT  "},
    {**VALID, "market": "X" * 33},
    {**VALID, "market": 7},
    {**VALID, "market": None},
    {**VALID, "market": "ETH\x00USDT"},
    {**VALID, "market": "ETH-USDT\ud800"},
    {**VALID, "market": "ÉTH-USDT"},
    {**VALID, "side": "BUY"},
    {**VALID, "side": ""},
    {**VALID, "side": None},
    {**VALID, "side": 1},
    {**VALID, "type": "iceberg"},
    {**VALID, "time_in_force": "day"},
    {**VALID, "post_only": "true"},
    {**VALID, "post_only": 1},
    {**VALID, "post_only": None},
    {**VALID, "client_order_id": ""},
    {**VALID, "client_order_id": "has space"},
    {**VALID, "client_order_id": "x" * 65},
    {**VALID, "client_order_id": "abc\n"},
    {**VALID, "client_order_id": 12345},
    {**VALID, "client_order_id": None},
    {**VALID, "quantitiy": "1"},
    {key: value for key, value in VALID.items() if key != "side"},
    {},
    [],
    "an order",
    None,
]


def field_by_field(data: Any) -> tuple[bool, Any]:
    serializer = OrderPlaceInput(data=data)
    serializer.to_internal_value = lambda value: InputSerializer.to_internal_value(serializer, value)
    ok = serializer.is_valid()
    return ok, dict(serializer.validated_data) if ok else serializer.errors


def direct(data: Any) -> tuple[bool, Any]:
    """What the views read: ``OrderPlaceInput.read``, the service's names turned back."""
    try:
        fields = OrderPlaceInput.read(data)
    except ValidationError as exc:
        return False, exc.detail
    return True, {"market": fields.pop("market_symbol"), **fields}


@pytest.mark.parametrize("data", INPUTS, ids=range(len(INPUTS)))
def test_the_direct_reading_equals_drfs(data):
    expected = field_by_field(data)
    assert direct(data) == expected
    if expected[0]:  # same values and the same types (Decimal, not str; the default's member)
        assert [type(v) for v in direct(data)[1].values()] == [type(v) for v in expected[1].values()]
        assert list(direct(data)[1]) == list(expected[1])


def test_the_corpus_covers_both_outcomes_and_both_ways():
    outcomes = [field_by_field(data)[0] for data in INPUTS]
    assert outcomes.count(True) >= 8 and outcomes.count(False) >= 25
    read_directly = [data for data in INPUTS if _order_input_direct(data) is not None]
    assert INPUTS[:7] == read_directly[:7]  # what clients send is read directly
    assert all(field_by_field(data)[0] for data in read_directly)  # and only what is valid


BATCHES: list[Any] = [
    {"orders": [VALID]},
    {"orders": [VALID, {**VALID, "price": "x"}, {}, []]},
    {"orders": [VALID] * 50},
    {"orders": [VALID] * 51},
    {"orders": []},
    {"orders": [VALID, "an order"]},
    {"orders": [{1: "a"}]},
    {"orders": [{"market": None}]},
    {"orders": VALID},
    {"orders": None},
    {"orders": [VALID], "more": 1},
    {},
    [VALID],
]


@pytest.mark.parametrize("data", BATCHES, ids=range(len(BATCHES)))
def test_a_batch_read_directly_equals_drfs(data):
    drf = OrderBatchInput(data=data)
    drf.to_internal_value = lambda value: InputSerializer.to_internal_value(drf, value)
    fast = OrderBatchInput(data=data)
    assert (fast.is_valid(), fast.errors) == (drf.is_valid(), drf.errors)
    if not fast.errors:
        assert fast.validated_data == drf.validated_data
