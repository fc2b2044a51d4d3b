"""DynamoDB's expression languages and item semantics, as pure code (no I/O).

Items and values are DynamoDB JSON as the wire carries them: ``{"S": "x"}``, ``{"N": "1.5"}``,
``{"B": "<base64>"}``, ``{"SS": [...]}``, ``{"NS": [...]}``, ``{"BS": [...]}``, ``{"M": {...}}``,
``{"L": [...]}``, ``{"NULL": True}``, ``{"BOOL": False}``.

Every entry point raises :class:`ValidationException` whose ``message`` is DynamoDB's exact text, so the
API layer only wraps it in the AWS error shape. Expression texts are parsed once and cached (an LRU keyed
by the text, grammar.parse); placeholders are resolved against ``names``/``values`` when an expression is
compiled for a request, and the result is a set of closures over the item.

Modules: grammar (lark grammars, syntax errors), binding (placeholders, value validation), condition,
update, projection, keys (KeyConditionExpression, key validation), legacy (Expected, AttributeUpdates ...),
values (numbers, comparisons, sort_key_bytes, item_size), paths (document paths), reserved (reserved words).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from .binding import check_placeholder_maps, validate_value
from .binding import check_placeholders as _check_placeholders
from .condition import Condition, compile_condition
from .errors import ValidationException
from .keys import KeyCondition, compile_key_condition, validate_item, validate_key
from .legacy import (
    from_attribute_updates,
    from_attributes_to_get,
    from_expected,
    from_key_conditions,
    from_query_filter,
)
from .projection import Projection, compile_projection
from .update import Update
from .update_compiler import compile_update
from .values import item_size, number_text, sort_key_bytes
from .values import number as _number

Item = dict[str, Any]
Value = dict[str, Any]
Names = Mapping[str, str] | None
Values = Mapping[str, Value] | None


def condition(text: str, names: Names = None, values: Values = None) -> Condition:
    """Parse a ConditionExpression."""
    return compile_condition(text, names, values, "ConditionExpression")


def filter_(text: str, names: Names = None, values: Values = None) -> Condition:
    """Parse a FilterExpression (same language; its errors say "Invalid FilterExpression")."""
    return compile_condition(text, names, values, "FilterExpression")


def update(text: str, names: Names = None, values: Values = None) -> Update:
    """Parse an UpdateExpression."""
    return compile_update(text, names, values)


def projection(text: str, names: Names = None) -> Projection:
    """Parse a ProjectionExpression."""
    return compile_projection(text, names)


def key_condition(
    text: str, names: Names, values: Values, key_schema: Mapping[str, str], key_types: Mapping[str, str] | None = None
) -> KeyCondition:
    """Parse a KeyConditionExpression; ``key_schema`` maps attribute name -> "HASH" / "RANGE" (of the table or
    the index queried); ``key_types`` (optional) maps them to "S" / "N" / "B", to refuse values of another type
    ("Condition parameter type does not match schema type")."""
    return compile_key_condition(text, names, values, key_schema, key_types)


def check_placeholders(expressions: Iterable[str | None], names: Names, values: Values) -> None:
    """Refuse ExpressionAttributeNames/Values that no expression of the request uses ("Value provided in
    ExpressionAttributeNames unused in expressions: keys: {#a}"), or that come without any expression. Pass
    all the request's expression texts at once (None for absent ones), after they parsed. To report a bad map
    before a bad expression, as DynamoDB does, call check_placeholder_maps(names, values) first."""
    _check_placeholders(list(expressions), names, values)


def check_key_paths(paths: Iterable[tuple[str | int, ...]], key_names: Iterable[str]) -> None:
    """Refuse a document path into a key attribute (``pk.x``, ``pk[0]``) in any expression of a request: pass
    ``Condition.paths``, ``Projection.paths`` or ``Update.targets``."""
    keys = set(key_names)
    for path in paths:
        if len(path) > 1 and path[0] in keys:
            raise ValidationException(
                "Key attributes must be scalars; list random access '[]' and map lookup '.' are not allowed: "
                f"Key: {path[0]}"
            )


def number(text: str) -> Decimal:
    """A DynamoDB number: 38 significant digits, magnitude 1E-130..9.99E+125; ValidationException with AWS's
    messages otherwise ("The parameter cannot be converted to a numeric value: x", "Number overflow ...")."""
    return _number(text)


__all__ = [
    "Condition",
    "Item",
    "KeyCondition",
    "Projection",
    "Update",
    "ValidationException",
    "Value",
    "check_key_paths",
    "check_placeholder_maps",
    "check_placeholders",
    "condition",
    "filter_",
    "from_attribute_updates",
    "from_attributes_to_get",
    "from_expected",
    "from_key_conditions",
    "from_query_filter",
    "item_size",
    "key_condition",
    "number",
    "number_text",
    "projection",
    "sort_key_bytes",
    "update",
    "validate_item",
    "validate_key",
    "validate_value",
]
