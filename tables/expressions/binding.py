"""Placeholders resolved against a request's ExpressionAttributeNames/Values, with DynamoDB's messages.

DynamoDB reports the first problem in the order the clauses are written; inside one clause it prefers an
undefined placeholder, then a wrong number of operands, then operands that are not distinct, then an
operand of the wrong type. A Binder collects the errors of the clause it is binding (``clause()``) and raises
the preferred one when the clause is done.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from . import values as v
from .errors import ValidationException
from .paths import Path

Value = dict[str, Any]
PRIORITY = ("attr", "operand", "distinct", "function")

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
    """Resolves ``#name`` and ``:value`` placeholders for one expression."""

    def __init__(self, names: Mapping[str, str] | None, values: Mapping[str, Value] | None, kind: str) -> None:
        self.names = names or {}
        self.values = values or {}
        self.prefix = f"Invalid {kind}: "
        self.errors: dict[str, str] = {}

    def fail(self, message: str) -> ValidationException:
        return ValidationException(self.prefix + message)

    def note(self, category: str, message: str) -> None:
        self.errors.setdefault(category, message)

    @contextmanager
    def clause(self, priority: tuple[str, ...] = PRIORITY) -> Iterator[None]:
        """Bind one clause; on leaving it, raise its preferred error if it had any."""
        self.errors = {}
        yield
        for category in priority:
            if category in self.errors:
                raise self.fail(self.errors[category])

    def path(self, raw: tuple[str | int, ...]) -> Path:
        resolved: list[str | int] = []
        for part in raw:
            if isinstance(part, str) and part.startswith("#"):
                if part not in self.names:
                    self.note(
                        "attr",
                        "An expression attribute name used in the document path is not defined; "
                        f"attribute name: {part}",
                    )
                    resolved.append(part)
                else:
                    resolved.append(self.names[part])
            else:
                resolved.append(part)
        return tuple(resolved)

    def value(self, ref: str) -> Value | None:
        if ref not in self.values:
            self.note(
                "attr", f"An expression attribute value used in expression is not defined; attribute value: {ref}"
            )
            return None
        value = self.values[ref]
        try:
            validate_value(value)
        except ValidationException as exc:
            raise ValidationException(
                f"ExpressionAttributeValues contains invalid value: {exc.message} for key {ref}"
            ) from None
        return dict(value)


def check_placeholders(
    expressions: list[str | None], names: Mapping[str, str] | None, values: Mapping[str, Value] | None
) -> None:
    """Refuse placeholders the request defines and no expression uses, and placeholder maps without any
    expression, with DynamoDB's messages. The expressions are scanned for ``#x`` and ``:x`` tokens, which
    nothing else in the expression languages can contain."""
    texts = [e for e in expressions if e is not None]
    if names is not None and not texts:
        raise ValidationException("ExpressionAttributeNames can only be specified when using expressions")
    if values is not None and not texts:
        raise ValidationException("ExpressionAttributeValues can only be specified when using expressions")
    if names is not None and not names:
        raise ValidationException("ExpressionAttributeNames must not be empty")
    if values is not None and not values:
        raise ValidationException("ExpressionAttributeValues must not be empty")
    used = set()
    for text in texts:
        used.update(re.findall(r"[#:][A-Za-z0-9_]+", text))
    for key in names or {}:
        if not re.fullmatch(r"#[A-Za-z0-9_]+", key):
            raise ValidationException(f'ExpressionAttributeNames contains invalid key: Syntax error; key: "{key}"')
    for key in values or {}:
        if not re.fullmatch(r":[A-Za-z0-9_]+", key):
            raise ValidationException(f'ExpressionAttributeValues contains invalid key: Syntax error; key: "{key}"')
    unused_names = [k for k in names or {} if k not in used]
    if unused_names:
        raise ValidationException(
            "Value provided in ExpressionAttributeNames unused in expressions: keys: {" + ", ".join(unused_names) + "}"
        )
    unused_values = [k for k in values or {} if k not in used]
    if unused_values:
        raise ValidationException(
            "Value provided in ExpressionAttributeValues unused in expressions: keys: {"
            + ", ".join(unused_values)
            + "}"
        )
