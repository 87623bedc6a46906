"""Input serializers copy their declared fields shallowly: the same validation as DRF's
deep copies, and no field shared between two instances."""

from __future__ import annotations

import pytest
from rest_framework import serializers

import kootabase.urls  # noqa: F401 - imports every app's API, so every input serializer exists
from kootabase.api.serializers import InputSerializer
from orders.api.serializers import OrderPlaceInput


def _all_subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_all_subclasses(direct))]


def _with_deep_copies(cls: type[InputSerializer]) -> type[InputSerializer]:
    return type(f"Deep{cls.__name__}", (cls,), {"get_fields": serializers.Serializer.get_fields})


def _result(serializer: serializers.Serializer) -> tuple:
    valid = serializer.is_valid()
    return valid, dict(serializer.validated_data) if valid else serializer.errors


INPUTS = [
    {},
    {"unknown": 1},
    {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2000.5", "quantity": "1", "client_order_id": "a"},
    {"market": "ETH-USDT", "side": "up", "type": "limit", "price": "-1", "quantity": "x", "client_order_id": "a b"},
]


@pytest.mark.django_db
@pytest.mark.parametrize("cls", _all_subclasses(InputSerializer), ids=lambda cls: cls.__name__)
def test_validation_is_the_same_as_with_deep_copies(cls):
    declared = list(cls._declared_fields)
    inputs = [
        *INPUTS,
        dict.fromkeys(declared, "x"),
        dict.fromkeys(declared, "1"),
        dict.fromkeys(declared, ""),
        dict.fromkeys(declared),
        {key: ["1"] for key in declared},
    ]
    for data in inputs:
        assert _result(cls(data=data)) == _result(_with_deep_copies(cls)(data=data)), data


def test_two_instances_share_no_field():
    first, second = OrderPlaceInput(data={}), OrderPlaceInput(data={})
    for name in OrderPlaceInput._declared_fields:
        assert first.fields[name] is not second.fields[name]
        assert (first.fields[name].parent, second.fields[name].parent) == (first, second)
        assert OrderPlaceInput._declared_fields[name].parent is None  # the declared field stays unbound
    first.fields["price"].required = True
    assert not second.fields["price"].required
