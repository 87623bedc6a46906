"""Base serializers shared by every app's API."""

from __future__ import annotations

import copy
from typing import Any

from rest_framework import serializers
from rest_framework.fields import Field


class InputSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know.

    A typo in a field name (``quantitiy``) must be an error, not a silently ignored key.

    Each instance gets its fields as shallow copies of the declared ones instead of DRF's
    deep copies (which re-run every field's constructor: two thirds of validating an
    order's input). A copy has its own binding (name, parent) and attributes; what it
    shares with the declared field — choices, validators, error messages — is only read
    while validating, so change a field of an instance by setting its attributes, never
    by changing those in place. Fields with children (lists, dicts, nested serializers)
    are deep-copied as before.
    """

    def get_fields(self) -> dict[str, Field]:
        return {name: _field_copy(field) for name, field in self._declared_fields.items()}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError(
                    {name: [serializers.ErrorDetail("Unknown field.", code="unknown_field")] for name in unknown}
                )
        return super().to_internal_value(data)

    def run_validators(self, value: Any) -> None:
        # DRF's Serializer builds every field here to merge in the defaults of read-only
        # fields, then runs the serializer-level validators on the result: without
        # validators the merge is thrown away, so it is only done when there are some.
        if self.validators:
            super().run_validators(value)


def _field_copy(field: Field) -> Field:
    if isinstance(field, serializers.BaseSerializer) or hasattr(field, "child") or hasattr(field, "child_relation"):
        return copy.deepcopy(field)
    clone = object.__new__(type(field))  # what copy.copy does, without its generic protocol
    clone.__dict__.update(field.__dict__)
    return clone


class ErrorSerializer(serializers.Serializer):
    """The body of every error response (documented in the OpenAPI schema)."""

    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()
