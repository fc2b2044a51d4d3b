"""Choice rules: the JSONPath comparison operators with And/Or/Not, and JSONata ``Condition``.

A JSONPath rule compares the value at ``Variable`` with a literal or, for the ``...Path`` operators, with the
value at another path. A value of the wrong type makes the comparison false (StringEquals on a number is false,
not an error); a ``Variable`` (or ``...Path``) that does not exist is a ``States.Runtime`` error, except for
``IsPresent`` which tests exactly that.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Any

from workflows.language.errors import RUNTIME, StatesError
from workflows.language.paths import PathNotFound, resolve

_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

_COMPARATORS = ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")
_KINDS = ("String", "Numeric", "Boolean", "Timestamp")
COMPARISON_OPERATORS: frozenset[str] = frozenset(
    [f"{k}{c}" for k in _KINDS for c in _COMPARATORS if k != "Boolean" or c == "Equals"]
    + [f"{k}{c}Path" for k in _KINDS for c in _COMPARATORS if k != "Boolean" or c == "Equals"]
    + ["StringMatches", "IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"]
)
TYPE_TESTS = frozenset(["IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"])


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as AWS accepts it (uppercase T, Z or an offset), or None."""
    if not isinstance(value, str):
        return None
    m = _TIMESTAMP.match(value)
    if not m:
        return None
    base, fraction, zone = m.groups()
    text = base + ((fraction[:7].ljust(7, "0")) if fraction else "") + ("+00:00" if zone == "Z" else zone)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """StringMatches: ``*`` matches any run of characters; ``\\*`` is a literal star, ``\\\\`` a backslash."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _compare(kind: str, comparator: str, left: Any, right: Any) -> bool:
    if kind == "String":
        if not isinstance(left, str) or not isinstance(right, str):
            return False
        a: Any = left
        b: Any = right
    elif kind == "Numeric":
        if not _is_number(left) or not _is_number(right):
            return False
        a, b = left, right
    elif kind == "Boolean":
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    else:
        a, b = parse_timestamp(left), parse_timestamp(right)
        if a is None or b is None:
            return False
    if comparator == "Equals":
        return bool(a == b)
    if comparator == "LessThan":
        return bool(a < b)
    if comparator == "GreaterThan":
        return bool(a > b)
    if comparator == "LessThanEquals":
        return bool(a <= b)
    return bool(a >= b)


def _type_test(operator: str, present: bool, value: Any, expected: Any) -> bool:
    if operator == "IsPresent":
        return present is bool(expected)
    if not present:
        return False is bool(expected)
    if operator == "IsNull":
        actual = value is None
    elif operator == "IsNumeric":
        actual = _is_number(value)
    elif operator == "IsString":
        actual = isinstance(value, str)
    elif operator == "IsBoolean":
        actual = isinstance(value, bool)
    else:
        actual = parse_timestamp(value) is not None
    return actual is bool(expected)


def _invalid_path(path: str, context: str) -> StatesError:
    return StatesError(
        RUNTIME, f"{context}Invalid path '{path}': The choice state's condition path references an invalid value."
    )


def evaluate_rule(
    rule: dict[str, Any], data: Any, ctx: dict[str, Any], variables: dict[str, Any], context: str = ""
) -> bool:
    """Whether a JSONPath Choice rule (or nested And/Or/Not expression) matches ``data``."""
    if "And" in rule:
        return all(evaluate_rule(r, data, ctx, variables, context) for r in rule["And"])
    if "Or" in rule:
        return any(evaluate_rule(r, data, ctx, variables, context) for r in rule["Or"])
    if "Not" in rule:
        return not evaluate_rule(rule["Not"], data, ctx, variables, context)
    variable = rule["Variable"]
    operator = next(k for k in rule if k in COMPARISON_OPERATORS)
    expected = rule[operator]
    try:
        value = resolve(variable, data, ctx, variables)
        present = True
    except PathNotFound:
        value, present = None, False
    if operator in TYPE_TESTS:
        return _type_test(operator, present, value, expected)
    if not present:
        raise _invalid_path(variable, context)
    if operator == "StringMatches":
        return isinstance(value, str) and isinstance(expected, str) and bool(_glob(expected).fullmatch(value))
    if operator.endswith("Path"):
        try:
            expected = resolve(expected, data, ctx, variables)
        except PathNotFound as e:
            raise _invalid_path(rule[operator], context) from e
        operator = operator[:-4]
    kind = next(k for k in _KINDS if operator.startswith(k))
    return _compare(kind, operator[len(kind) :], value, expected)
