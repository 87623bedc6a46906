"""The error format's codes for validation failures."""

from rest_framework import serializers

from kootabase.api.errors import _validation_error


class _Item(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=10, decimal_places=2)


class _Body(serializers.Serializer):
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=["read", "trade"]))
    items = _Item(many=True, required=False)


def _code(data):
    body = _Body(data=data)
    assert not body.is_valid()
    return _validation_error(serializers.ValidationError(body.errors))[0]


def test_a_list_item_error_is_named_after_its_field():
    assert _code({"scopes": ["read", "fly"]}) == "scopes_invalid_choice"


def test_a_nested_item_error_is_named_after_the_nested_field():
    assert _code({"scopes": ["read"], "items": [{"amount": "1.234"}]}) == "amount_max_decimal_places"


def test_a_body_level_error_is_named_body():
    body = _Body(data=["not", "a", "dict"])
    assert not body.is_valid()
    assert _validation_error(serializers.ValidationError(body.errors))[0] == "body_invalid"
