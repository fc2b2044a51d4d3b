"""The legacy parameters (Expected, AttributeUpdates, KeyConditions, QueryFilter/ScanFilter, AttributesToGet)
that old code and some document clients still send, turned into the same objects as the expressions.

Their semantics follow AWS's "Legacy conditional parameters" guide: each ComparisonOperator has the meaning
of the expression it maps to (EQ is ``=``, NULL is ``attribute_not_exists`` ...), Exists/Value is the older
form of EQ and NULL, ConditionalOperator joins the attributes' conditions with AND (the default) or OR.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import values
from .binding import validate_value
from .condition import Condition
from .errors import ValidationException
from .keys import KeyCondition, from_conditions
from .projection import Projection
from .update import Action, Update

Value = dict[str, Any]
Item = dict[str, Any]
Check = Callable[[Value | None, list[Value]], bool]

_PREFIX = "One or more parameter values were invalid: "
_NO_VALUE = _PREFIX + "Only DELETE action is allowed when no attribute value is specified"
_ORDERED = ("S", "N", "B")
_SCALARS = ("S", "N", "B", "BOOL", "NULL")


def _ordered(op: str) -> Check:
    return lambda a, args: values.compare(op, a, args[0])


def _between(a: Value | None, args: list[Value]) -> bool:
    return values.compare(">=", a, args[0]) and values.compare("<=", a, args[1])


# operator: (its check, number of arguments (None: one or more), the types its arguments may have)
OPERATORS: dict[str, tuple[Check, int | None, tuple[str, ...] | None]] = {
    "EQ": (lambda a, args: values.equal(a, args[0]), 1, None),
    "NE": (lambda a, args: values.compare("<>", a, args[0]), 1, None),
    "LE": (_ordered("<="), 1, _ORDERED),
    "LT": (_ordered("<"), 1, _ORDERED),
    "GE": (_ordered(">="), 1, _ORDERED),
    "GT": (_ordered(">"), 1, _ORDERED),
    "NOT_NULL": (lambda a, args: a is not None, 0, None),
    "NULL": (lambda a, args: a is None, 0, None),
    "CONTAINS": (lambda a, args: values.contains(a, args[0]), 1, _SCALARS),
    "NOT_CONTAINS": (lambda a, args: a is not None and not values.contains(a, args[0]), 1, _SCALARS),
    "BEGINS_WITH": (lambda a, args: values.begins_with(a, args[0]), 1, ("S", "B")),
    "IN": (lambda a, args: any(values.equal(a, x) for x in args), None, _ORDERED),
    "BETWEEN": (_between, 2, _ORDERED),
}
_KEY_OPERATORS = {
    "EQ": "=",
    "LE": "<=",
    "LT": "<",
    "GE": ">=",
    "GT": ">",
    "BEGINS_WITH": "begins_with",
    "BETWEEN": "BETWEEN",
}


def _arguments(op: str, spec: Mapping[str, Any]) -> list[Value]:
    if op not in OPERATORS:
        raise ValidationException(f"{_PREFIX}Unsupported operator on ExpectedAttributeValue or QueryFilter: {op}")
    _, count, types = OPERATORS[op]
    args = list(spec.get("AttributeValueList") or [])
    if "Value" in spec and "AttributeValueList" not in spec:
        args = [spec["Value"]]
    if (count is None and not args) or (count is not None and len(args) != count):
        raise ValidationException(f"{_PREFIX}Invalid number of argument(s) for the {op} ComparisonOperator")
    for arg in args:
        validate_value(arg)
    for arg in args:
        if types is not None and values.type_of(arg) not in types:
            raise ValidationException(
                f"{_PREFIX}ComparisonOperator {op} is not valid for {values.type_of(arg)} AttributeValue type"
            )
    if op == "IN" and len({values.type_of(arg) for arg in args}) > 1:
        raise ValidationException(f"{_PREFIX}AttributeValues inside AttributeValueList must be of same type")
    if op == "BETWEEN" and values.less(args[1], args[0]):
        raise ValidationException(
            "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound"
        )
    return args


def _attribute_check(name: str, spec: Mapping[str, Any], allow_exists: bool) -> Callable[[Item | None], bool]:
    """One attribute's entry of Expected (``allow_exists``) or of a QueryFilter/ScanFilter."""
    where = f" for Attribute: {name}"
    if "AttributeValueList" in spec and "ComparisonOperator" not in spec:
        raise ValidationException(f"{_PREFIX}AttributeValueList can only be used with a ComparisonOperator{where}")
    if "ComparisonOperator" in spec:
        op = str(spec["ComparisonOperator"])
        if allow_exists and "Exists" in spec:
            raise ValidationException(f"{_PREFIX}Exists and ComparisonOperator cannot be used together{where}")
        if "Value" in spec and "AttributeValueList" in spec:
            raise ValidationException(f"{_PREFIX}Value and AttributeValueList cannot be used together{where}")
        if "Value" not in spec and "AttributeValueList" not in spec and OPERATORS.get(op, (None, 1))[1] != 0:
            raise ValidationException(
                f"{_PREFIX}Value or AttributeValueList must be used with ComparisonOperator: {op}{where}"
            )
        args = _arguments(op, spec)
        check = OPERATORS[op][0]
        return lambda item: check((item or {}).get(name), args)
    if not allow_exists:
        raise ValidationException(f"{_PREFIX}ComparisonOperator is required{where}")
    if "Exists" not in spec and "Value" not in spec:
        raise ValidationException(f"{_PREFIX}Value must be provided when Exists is null{where}")
    if spec.get("Exists", True):
        if "Value" not in spec:
            raise ValidationException(f"{_PREFIX}Value must be provided when Exists is true{where}")
        wanted = spec["Value"]
        validate_value(wanted)
        return lambda item: values.equal((item or {}).get(name), wanted)
    if "Value" in spec:
        raise ValidationException(f"{_PREFIX}Value cannot be used when Exists is false{where}")
    return lambda item: (item or {}).get(name) is None


def _join(checks: list[Callable[[Item | None], bool]], conditional_operator: str | None, names: set[str]) -> Condition:
    if conditional_operator not in (None, "AND", "OR"):
        raise ValidationException(f"{_PREFIX}Unsupported ConditionalOperator: {conditional_operator}")
    if conditional_operator == "OR":
        return Condition(lambda item: any(check(item) for check in checks), names, [(n,) for n in names])
    return Condition(lambda item: all(check(item) for check in checks), names, [(n,) for n in names])


def from_expected(expected: Mapping[str, Any], conditional_operator: str | None = None) -> Condition:
    """The legacy ``Expected`` parameter (Exists/Value, or ComparisonOperator/AttributeValueList)."""
    checks = [_attribute_check(name, spec, allow_exists=True) for name, spec in expected.items()]
    return _join(checks, conditional_operator, set(expected))


def from_query_filter(filter: Mapping[str, Any], conditional_operator: str | None = None) -> Condition:
    """The legacy ``QueryFilter`` / ``ScanFilter`` parameters (ComparisonOperator/AttributeValueList)."""
    checks = [_attribute_check(name, spec, allow_exists=False) for name, spec in filter.items()]
    return _join(checks, conditional_operator, set(filter))


def from_attribute_updates(updates: Mapping[str, Any]) -> Update:
    """The legacy ``AttributeUpdates`` parameter: Action PUT (the default), ADD or DELETE, with a Value."""
    actions: list[Action] = []
    for name, spec in updates.items():
        action = spec.get("Action", "PUT")
        value = spec.get("Value")
        if value is not None:
            validate_value(value)
        kind = values.type_of(value) if value is not None else None
        if action == "PUT":
            if value is None:
                raise ValidationException(_NO_VALUE)
            actions.append(Action(0, "SET", (name,), _constant(value)))
        elif action == "DELETE":
            if value is None:
                actions.append(Action(0, "REMOVE", (name,)))
            elif kind not in ("SS", "NS", "BS"):
                raise ValidationException(f"{_PREFIX}DELETE action with value is not supported for the type {kind}")
            else:
                actions.append(Action(0, "DELETE", (name,), value))
        elif action == "ADD":
            if value is None:
                raise ValidationException(_NO_VALUE)
            if kind not in ("N", "SS", "NS", "BS", "L"):
                raise ValidationException(f"{_PREFIX}ADD action is not supported for the type {kind}")
            actions.append(Action(0, "ADD", (name,), value))
        else:
            raise ValidationException(f"{_PREFIX}Unsupported Action: {action}")
    return Update(actions, type_error="Type mismatch for attribute to update")


def _constant(value: Value) -> Callable[[Item], Value]:
    return lambda item: value


def from_key_conditions(
    conds: Mapping[str, Any], key_schema: Mapping[str, str], key_types: Mapping[str, str] | None = None
) -> KeyCondition:
    """The legacy ``KeyConditions`` parameter: EQ on the partition key; EQ, LE, LT, GE, GT, BEGINS_WITH or
    BETWEEN on the sort key."""
    checked = [(name, str(spec.get("ComparisonOperator")), _arguments(str(spec.get("ComparisonOperator")), spec))
               for name, spec in conds.items()]  # fmt: skip
    if not 1 <= len(checked) <= 2:
        raise ValidationException("Conditions can be of length 1 or 2 only")
    conditions = []
    for name, op, args in checked:
        if op not in _KEY_OPERATORS:
            raise ValidationException("Attempted conditional constraint is not an indexable operation")
        conditions.append((name, _KEY_OPERATORS[op], args))
    return from_conditions(conditions, key_schema, key_types)


def from_attributes_to_get(names: Iterable[str]) -> Projection:
    """The legacy ``AttributesToGet`` parameter: top-level names only."""
    listed = list(names)
    seen: set[str] = set()
    for name in listed:
        if name in seen:
            raise ValidationException(f"{_PREFIX}Duplicate value in attribute name: {name}")
        seen.add(name)
    return Projection([(name,) for name in listed])
