"""DynamoDB's expression languages and item semantics, as pure code (no I/O).

Items and values are DynamoDB JSON as the wire carries them: ``{"S": "x"}``, ``{"N": "1.5"}``,
``{"B": "<base64>"}``, ``{"SS": [...]}``, ``{"NS": [...]}``, ``{"BS": [...]}``, ``{"M": {...}}``,
``{"L": [...]}``, ``{"NULL": True}``, ``{"BOOL": False}``.

Every entry point raises :class:`ValidationException` whose ``message`` is DynamoDB's exact text, so the
API layer only wraps it in the AWS error shape. Expression texts are parsed once and cached (an LRU keyed
by the text); placeholders are resolved against ``names``/``values`` at construction time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Item = dict[str, Any]
Value = dict[str, Any]
Names = Mapping[str, str] | None
Values = Mapping[str, Value] | None


class ValidationException(Exception):
    """A request DynamoDB refuses with ``ValidationException``; ``message`` is AWS's exact text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Condition:
    """A ConditionExpression or FilterExpression (or the legacy Expected/QueryFilter/ScanFilter).

    ``attributes``: the top-level attribute names it reads (a Query's filter may not name key attributes).
    """

    attributes: set[str]

    def evaluate(self, item: Item | None) -> bool:
        """True if ``item`` (None: no item) satisfies the condition."""
        raise NotImplementedError


class Update:
    """An UpdateExpression (or the legacy AttributeUpdates).

    ``updated_paths``: the top-level attribute names it touches (for ReturnValues UPDATED_OLD/UPDATED_NEW and
    for refusing updates of key attributes).
    """

    updated_paths: set[str]

    def apply(self, item: Item | None) -> Item:
        """The new item (a copy; ``item`` is not changed). ``item`` is the current item, or None / the key
        alone when there is none. Raises ValidationException for updates DynamoDB refuses at run time
        (an invalid document path, an operand of the wrong type)."""
        raise NotImplementedError

    def updated(self, item: Item) -> Item:
        """The parts of ``item`` at the paths this update touched (ReturnValues UPDATED_OLD on the old item,
        UPDATED_NEW on the new one), nested paths kept nested as DynamoDB returns them."""
        raise NotImplementedError


class Projection:
    """A ProjectionExpression (or the legacy AttributesToGet). ``attributes``: the top-level names it reads."""

    attributes: set[str]

    def apply(self, item: Item) -> Item:
        """The projected item: only the paths named, missing ones left out."""
        raise NotImplementedError


@dataclass
class KeyCondition:
    """A Query's key condition. ``partition``: (name, value); ``sort``: None or (name, op, values) with op one of
    ``= < <= > >= BETWEEN begins_with`` and values one value (two for BETWEEN)."""

    partition: tuple[str, Value]
    sort: tuple[str, str, list[Value]] | None = None
    attributes: set[str] = field(default_factory=set)

    def matches(self, item: Item) -> bool:
        """True if ``item`` satisfies the key condition (for engines that filter in Python)."""
        raise NotImplementedError


def condition(text: str, names: Names = None, values: Values = None) -> Condition:
    """Parse a ConditionExpression."""
    raise NotImplementedError


def filter_(text: str, names: Names = None, values: Values = None) -> Condition:
    """Parse a FilterExpression (same language; its errors say "Invalid FilterExpression")."""
    raise NotImplementedError


def update(text: str, names: Names = None, values: Values = None) -> Update:
    """Parse an UpdateExpression."""
    raise NotImplementedError


def projection(text: str, names: Names = None) -> Projection:
    """Parse a ProjectionExpression."""
    raise NotImplementedError


def key_condition(text: str, names: Names, values: Values, key_schema: Mapping[str, str]) -> KeyCondition:
    """Parse a KeyConditionExpression; ``key_schema`` maps attribute name -> "HASH" / "RANGE" (of the table or
    the index queried)."""
    raise NotImplementedError


def check_placeholders(expressions: Iterable[str | None], names: Names, values: Values) -> None:
    """Refuse ExpressionAttributeNames/Values that no expression of the request uses ("Value provided in
    ExpressionAttributeNames unused in expressions: keys: {#a}"). Pass all the request's expression texts at
    once (None for absent ones)."""
    raise NotImplementedError


def from_expected(expected: Mapping[str, Any], conditional_operator: str | None = None) -> Condition:
    """The legacy ``Expected`` parameter (Exists/Value/ComparisonOperator/AttributeValueList)."""
    raise NotImplementedError


def from_attribute_updates(updates: Mapping[str, Any]) -> Update:
    """The legacy ``AttributeUpdates`` parameter (Action PUT/ADD/DELETE, Value)."""
    raise NotImplementedError


def from_key_conditions(conds: Mapping[str, Any], key_schema: Mapping[str, str]) -> KeyCondition:
    """The legacy ``KeyConditions`` parameter."""
    raise NotImplementedError


def from_query_filter(filter: Mapping[str, Any], conditional_operator: str | None = None) -> Condition:
    """The legacy ``QueryFilter`` / ``ScanFilter`` parameters."""
    raise NotImplementedError


def from_attributes_to_get(names: Iterable[str]) -> Projection:
    """The legacy ``AttributesToGet`` parameter."""
    raise NotImplementedError


def sort_key_bytes(value: Value) -> bytes:
    """An order-preserving encoding of a key value: S by UTF-8 bytes, N by numeric value (38 digits, all signs and
    exponents: memcmp order == numeric order), B by bytes. Values of one type only are compared."""
    raise NotImplementedError


def item_size(item: Item) -> int:
    """The item's size by DynamoDB's rules (attribute names + values), for the 400 KB limit."""
    raise NotImplementedError


def number(text: str) -> Decimal:
    """A DynamoDB number: 38 significant digits, magnitude 1E-130..9.99E+125; ValidationException with AWS's
    messages otherwise."""
    raise NotImplementedError


__all__ = [
    "Condition",
    "Item",
    "KeyCondition",
    "Projection",
    "Update",
    "ValidationException",
    "Value",
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
    "projection",
    "sort_key_bytes",
    "update",
]
