"""KeyConditionExpression (and the legacy KeyConditions), and the validation of keys and key attributes.

A key condition is the condition language restricted to: ``=`` on the partition key, AND, and one of
``= < <= > >= BETWEEN begins_with`` on the sort key. It is checked clause by clause in the order written
(operand types first), then as a whole against the key schema, as DynamoDB does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import values
from .binding import Binder, validate_value
from .condition import Compiler
from .errors import ValidationException
from .grammar import parse, unwrap

Value = dict[str, Any]
Item = dict[str, Any]

_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "="}
SCHEMA_MISMATCH = "One or more parameter values were invalid: Condition parameter type does not match schema type"


@dataclass
class KeyCondition:
    """A Query's key condition. ``partition``: (name, value); ``sort``: None or (name, op, values) with op one
    of ``= < <= > >= BETWEEN begins_with`` and one value (two for BETWEEN)."""

    partition: tuple[str, Value]
    sort: tuple[str, str, list[Value]] | None = None
    attributes: set[str] = field(default_factory=set)

    def matches(self, item: Item) -> bool:
        """True if ``item`` satisfies the key condition (for engines that filter in Python)."""
        name, value = self.partition
        if not values.equal(item.get(name), value):
            return False
        if self.sort is None:
            return True
        return sort_matches(self.sort[1], item.get(self.sort[0]), self.sort[2])


def sort_matches(op: str, value: Value | None, operands: list[Value]) -> bool:
    if op == "BETWEEN":
        return values.compare(">=", value, operands[0]) and values.compare("<=", value, operands[1])
    if op == "begins_with":
        return values.begins_with(value, operands[0])
    return values.compare(op, value, operands[0])


def _invalid_operator(op: str) -> ValidationException:
    return ValidationException(f"Invalid operator used in KeyConditionExpression: {op}")


def _clauses(node: Any, out: list[Any]) -> None:
    tag = node[0]
    if tag == "paren":
        _clauses(node[1], out)
    elif tag == "and":
        _clauses(node[1], out)
        _clauses(node[2], out)
    elif tag in ("or", "not", "in"):
        raise _invalid_operator(tag.upper())
    elif tag == "cmp" and node[1] == "<>":
        raise _invalid_operator("<>")
    elif tag == "call" and node[1] != "begins_with":
        raise _invalid_operator(node[1])
    else:
        out.append(node)


def compile_key_condition(
    text: str,
    names: Mapping[str, str] | None,
    vals: Mapping[str, Value] | None,
    key_schema: Mapping[str, str],
    key_types: Mapping[str, str] | None = None,
) -> KeyCondition:
    """Check the expression as any condition (placeholders, operand types, in the order written), then as a
    key condition (AND only, one key attribute per clause, no nested paths or functions), then against the
    key schema."""
    raw = parse(text, "condition", "KeyConditionExpression")
    binder = Binder(names, vals, "KeyConditionExpression")
    Compiler(binder).condition(raw.tree)
    clauses: list[Any] = []
    _clauses(raw.tree, clauses)
    return from_conditions([_condition(binder, clause) for clause in clauses], key_schema, key_types)


def _condition(binder: Binder, node: Any) -> tuple[str, str, list[Value]]:
    tag = node[0]
    if tag == "cmp":
        op, operands = node[1], [unwrap(node[2]), unwrap(node[3])]
    elif tag == "between":
        op, operands = "BETWEEN", [unwrap(o) for o in node[1:4]]
    else:
        op, operands = "begins_with", [unwrap(o) for o in node[2]]
    if any(o[0] == "call" for o in operands):
        raise ValidationException("KeyConditionExpressions cannot contain nested operations")
    is_path = [o[0] == "path" for o in operands]
    if op in ("BETWEEN", "begins_with") and not is_path[0]:
        raise ValidationException(
            f"Invalid condition in KeyConditionExpression: {op} operator must have the key attribute as its "
            "first operand"
        )
    if sum(is_path) > 1:
        raise ValidationException(
            "Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition"
        )
    if not any(is_path):
        raise ValidationException("Invalid condition in KeyConditionExpression: No key attribute specified")
    position = is_path.index(True)
    path = binder.path(operands[position][1])
    if len(path) > 1:
        raise ValidationException("KeyConditionExpressions cannot have conditions on nested attributes")
    if position == 1:
        op = _FLIP[op]
    consts = [binder.value(o[1]) for i, o in enumerate(operands) if i != position]
    return (str(path[0]), op, consts)


def from_conditions(
    conditions: list[tuple[str, str, list[Value]]],
    key_schema: Mapping[str, str],
    key_types: Mapping[str, str] | None,
) -> KeyCondition:
    """Check (attribute, op, values) conditions against the key schema; build the KeyCondition."""
    seen: set[str] = set()
    for name, _, _ in conditions:
        if name in seen:
            raise ValidationException(
                "Invalid KeyConditionExpression: KeyConditionExpressions must only contain one condition per key"
            )
        seen.add(name)
    if len(conditions) > len(key_schema):
        raise ValidationException(
            f"The number of query conditions ({len(conditions)}) exceeds the number of key attributes defined in "
            f"the schema ({len(key_schema)})"
        )
    hash_key = next(name for name, role in key_schema.items() if role == "HASH")
    range_key = next((name for name, role in key_schema.items() if role == "RANGE"), None)
    by_name = {name: (op, operands) for name, op, operands in conditions}
    if hash_key not in by_name:
        raise ValidationException(f"Query condition missed key schema element: {hash_key}")
    for name in by_name:
        if name != hash_key and name != range_key:
            raise ValidationException(f"Query condition missed key schema element: {range_key or name}")
    op, operands = by_name[hash_key]
    if op != "=":
        raise ValidationException("Query key condition not supported")
    for name, (_, operands_) in by_name.items():
        wanted = (key_types or {}).get(name)
        for operand in operands_:
            if wanted is not None and values.type_of(operand) != wanted:
                raise ValidationException(SCHEMA_MISMATCH)
            if operand.get("S") == "":
                raise ValidationException(
                    "One or more parameter values are not valid. The AttributeValue for a key attribute cannot "
                    f"contain an empty string value. Key: {name}"
                )
    sort = None
    if range_key is not None and range_key in by_name:
        sort_op, sort_operands = by_name[range_key]
        sort = (range_key, sort_op, sort_operands)
    return KeyCondition((hash_key, operands[0]), sort, set(by_name))


def validate_key(key: Item, key_schema: Mapping[str, str], key_types: Mapping[str, str]) -> None:
    """A GetItem/DeleteItem/UpdateItem Key: exactly the key attributes, of the schema's types, not empty."""
    if set(key) != set(key_schema):
        raise ValidationException("The provided key element does not match the schema")
    for name, value in key.items():
        validate_value(value)
        if values.type_of(value) != key_types.get(name):
            raise ValidationException("The provided key element does not match the schema")
        _check_key_value(name, value, key_schema[name])


def validate_item(item: Item, key_schema: Mapping[str, str], key_types: Mapping[str, str]) -> None:
    """A PutItem Item: every value valid, the key attributes present, of the schema's types, not empty."""
    for value in item.values():
        validate_value(value)
    for name in key_schema:
        if name not in item:
            raise ValidationException(f"One or more parameter values were invalid: Missing the key {name} in the item")
        actual = values.type_of(item[name])
        if actual != key_types.get(name):
            raise ValidationException(
                f"One or more parameter values were invalid: Type mismatch for key {name} expected: "
                f"{key_types.get(name)} actual: {actual}"
            )
        _check_key_value(name, item[name], key_schema[name])


def _check_key_value(name: str, value: Value, role: str) -> None:
    kind = values.type_of(value)
    if kind == "S" and value["S"] == "":
        raise ValidationException(
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an "
            f"empty string value. Key: {name}"
        )
    if kind == "B" and not values.binary(value["B"]):
        raise ValidationException(
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an "
            f"empty binary value. Key: {name}"
        )
    size = len(values.sort_key_bytes(value)) if kind != "N" else 0
    if role == "HASH" and size > 2048:
        raise ValidationException(
            "One or more parameter values were invalid: "
            "Size of hashkey has exceeded the maximum size limit of2048 bytes"  # sic: AWS's text has no space
        )
    if role == "RANGE" and size > 1024:
        raise ValidationException(
            "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size "
            "limit of 1024 bytes"
        )
