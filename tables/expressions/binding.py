"""Placeholders resolved against a request's ExpressionAttributeNames/Values, and the checks of those maps.

DynamoDB reports the first problem it meets walking an expression in the order it is written (an update
in its own order, see update.py), so a Binder raises at the first placeholder the request does not define.
Attribute values are validated where they are used ("ExpressionAttributeValues contains invalid value").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import values as v
from .errors import ValidationException
from .paths import Path

Value = dict[str, Any]

_SET_LABELS = {"SS": "An string set  may not be empty", "NS": "An number set  may not be empty"}


MAX_DEPTH = 32  # the attribute itself is level 1


def validate_value(value: Any, depth: int = 1) -> None:
    """An attribute value as DynamoDB accepts it: one known type, valid numbers, non-empty sets without
    duplicates, NULL only true; recursively through lists and maps, at most 32 levels deep."""
    if depth > MAX_DEPTH:
        raise ValidationException(
            "Nesting Levels have exceeded supported limits: Attributes in the item have nested levels beyond "
            "supported limit"
        )
    if not isinstance(value, dict) or len(value) != 1:
        raise ValidationException(
            "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported "
            "datatypes"
            if isinstance(value, dict) and len(value) > 1
            else "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
        )
    kind, raw = next(iter(value.items()))
    if kind not in v.TYPES:
        raise ValidationException(
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
        )
    if kind == "N":
        v.number(raw)
    elif kind == "NULL" and raw is not True:
        raise ValidationException(
            "One or more parameter values were invalid: Null attribute value types must have the value of true"
        )
    elif kind in ("SS", "NS", "BS"):
        if not raw:
            label = _SET_LABELS.get(kind, "Binary sets should not be empty")
            raise ValidationException(f"One or more parameter values were invalid: {label}")
        members = [v.number(x) for x in raw] if kind == "NS" else [v.binary(x) for x in raw] if kind == "BS" else raw
        if len(set(members)) != len(members):
            if kind == "NS":
                raise ValidationException("Input collection contains duplicates")
            shown = ", ".join(str(x) for x in raw)
            of_type = "of type BS " if kind == "BS" else " "  # sic: AWS's text has no space before "of"
            raise ValidationException(
                f"One or more parameter values were invalid: Input collection [{shown}]{of_type}contains duplicates."
            )
    elif kind == "B":
        v.binary(raw)
    elif kind == "L":
        for element in raw:
            validate_value(element, depth + 1)
    elif kind == "M":
        for element in raw.values():
            validate_value(element, depth + 1)


class Binder:
    """Resolves ``#name`` and ``:value`` placeholders for one expression, raising at the first one the
    request does not define (callers walk the expression in DynamoDB's order)."""

    def __init__(self, names: Mapping[str, str] | None, values: Mapping[str, Value] | None, kind: str) -> None:
        self.names = names or {}
        self.values = values or {}
        self.prefix = f"Invalid {kind}: "

    def fail(self, message: str) -> ValidationException:
        return ValidationException(self.prefix + message)

    def path(self, raw: tuple[str | int, ...]) -> Path:
        resolved: list[str | int] = []
        for part in raw:
            if isinstance(part, str) and part.startswith("#"):
                if part not in self.names:
                    raise self.fail(
                        f"An expression attribute name used in the document path is not defined; attribute name: {part}"
                    )
                resolved.append(self.names[part])
            else:
                resolved.append(part)
        if len(resolved) > MAX_DEPTH:
            raise self.fail(f"The document path has too many nesting levels; nesting levels: {len(resolved)}")
        return tuple(resolved)

    def value(self, ref: str) -> Value:
        if ref not in self.values:
            raise self.fail(f"An expression attribute value used in expression is not defined; attribute value: {ref}")
        value = self.values[ref]
        try:
            validate_value(value)
        except ValidationException as exc:
            raise ValidationException(
                f"ExpressionAttributeValues contains invalid value: {exc.message} for key {ref}"
            ) from None
        return dict(value)


def java_set_order(keys: list[str], total: int) -> list[str]:
    """``keys`` in the order a Java HashSet built from ``total`` keys iterates them, which is the order
    DynamoDB lists several keys in one message (unused placeholders)."""
    capacity = 1
    wanted = max(int(total / 0.75) + 1, 16)
    while capacity < wanted:
        capacity *= 2

    def slot(key: str) -> int:
        h = 0
        for unit in _utf16_units(key):
            h = (31 * h + unit) & 0xFFFFFFFF
        return (h ^ (h >> 16)) & (capacity - 1)

    return [key for _, _, key in sorted((slot(k), i, k) for i, k in enumerate(keys))]


def _utf16_units(text: str) -> list[int]:
    data = text.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def check_placeholder_maps(names: Mapping[str, str] | None, values: Mapping[str, Value] | None) -> None:
    """The ExpressionAttributeNames/Values maps themselves, as DynamoDB checks them before any expression:
    not empty, keys ``#x`` / ``:x`` of at most 255 bytes, names not empty, values valid (in Java's HashSet
    order, so the same value is reported as AWS does)."""
    if names is not None and not names:
        raise ValidationException("ExpressionAttributeNames must not be empty")
    for key, name in (names or {}).items():
        if len(key.encode()) > 255:
            raise ValidationException(
                "ExpressionAttributeNames contains invalid key: The expression attribute map contains a key that "
                f"is too long; size of key: {len(key.encode())}"
            )
        if not re.fullmatch(r"#[A-Za-z0-9_]+", key):
            raise ValidationException(f'ExpressionAttributeNames contains invalid key: Syntax error; key: "{key}"')
        if name == "":
            raise ValidationException(
                f"ExpressionAttributeNames contains invalid value: Empty attribute name for key {key}"
            )
    if values is not None and not values:
        raise ValidationException("ExpressionAttributeValues must not be empty")
    for key in values or {}:
        if len(key.encode()) > 255:
            raise ValidationException(
                "ExpressionAttributeValues contains invalid key: The expression attribute map contains a key that "
                "is too long;"
            )
        if not re.fullmatch(r":[A-Za-z0-9_]+", key):
            raise ValidationException(f'ExpressionAttributeValues contains invalid key: Syntax error; key: "{key}"')
    for key in java_set_order(list(values or {}), len(values or {})):
        try:
            validate_value((values or {})[key])
        except ValidationException as exc:
            raise ValidationException(
                f"ExpressionAttributeValues contains invalid value: {exc.message} for key {key}"
            ) from None


def check_placeholders(
    expressions: list[str | None], names: Mapping[str, str] | None, values: Mapping[str, Value] | None
) -> None:
    """Refuse placeholder maps without any expression, invalid maps (check_placeholder_maps), and placeholders
    the request defines that no expression uses, with DynamoDB's messages. The expressions are scanned for
    ``#x`` and ``:x`` tokens, which nothing else in the expression languages can contain."""
    texts = [e for e in expressions if e is not None]
    if names is not None and not texts:
        raise ValidationException("ExpressionAttributeNames can only be specified when using expressions")
    if values is not None and not texts:
        raise ValidationException("ExpressionAttributeValues can only be specified when using expressions")
    check_placeholder_maps(names, values)
    used = set()
    for text in texts:
        used.update(re.findall(r"[#:][A-Za-z0-9_]+", text))
    unused_names = java_set_order([k for k in names or {} if k not in used], len(names or {}))
    if unused_names:
        raise ValidationException(
            "Value provided in ExpressionAttributeNames unused in expressions: keys: {" + ", ".join(unused_names) + "}"
        )
    unused_values = java_set_order([k for k in values or {} if k not in used], len(values or {}))
    if unused_values:
        raise ValidationException(
            "Value provided in ExpressionAttributeValues unused in expressions: keys: {"
            + ", ".join(unused_values)
            + "}"
        )
