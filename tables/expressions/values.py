"""DynamoDB's attribute values: numbers, equality and order, size(), the sort-key encoding and the item size.

Values are DynamoDB JSON as the wire carries them (``{"N": "1.5"}``, ``{"B": "<base64>"}`` ...). Numbers are
compared as Decimal, binaries as their decoded bytes, strings by their UTF-8 bytes, sets without order.
"""

from __future__ import annotations

import base64
import binascii
import decimal
from decimal import Decimal
from typing import Any

from .errors import ValidationException

Value = dict[str, Any]
Item = dict[str, Any]

TYPES = ("S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL")
MAX_DIGITS = 38
MAX_EXPONENT = 125  # 9.9999999999999999999999999999999999999E+125
MIN_EXPONENT = -130  # 1E-130
_MAX_LITERAL_EXPONENT = 2**63 - 1

# Exact arithmetic for + and -: results are checked against DynamoDB's limits afterwards, never rounded.
EXACT = decimal.Context(prec=1000, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[decimal.InvalidOperation])


def clone(value: Any) -> Any:
    """A deep copy of DynamoDB JSON (dicts, lists and immutable leaves), several times faster than
    copy.deepcopy."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def type_of(value: Value) -> str:
    """The value's type descriptor ("S", "N", ...)."""
    for key in value:
        return str(key)
    raise ValidationException("Supplied AttributeValue is empty, must contain exactly one of the supported datatypes")


def number(text: str) -> Decimal:
    """A DynamoDB number: 38 significant digits, magnitude 1E-130..9.99E+125."""
    try:
        value = Decimal(text.strip()) if isinstance(text, str) else Decimal("nan")
    except decimal.InvalidOperation:
        value = Decimal("nan")
    if not value.is_finite() or isinstance(text, str) and text.strip() != text or "_" in str(text):
        raise ValidationException(f"The parameter cannot be converted to a numeric value: {text}")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if abs(exponent) > _MAX_LITERAL_EXPONENT:
        raise ValidationException(f"The parameter cannot be converted to a numeric value: {text}")
    if value.is_zero():
        magnitude = exponent
    else:
        digits = value.as_tuple().digits
        significant = len(_strip(digits))
        if significant > MAX_DIGITS:
            raise ValidationException("Attempting to store more than 38 significant digits in a Number")
        magnitude = value.adjusted()
    if magnitude > MAX_EXPONENT:
        raise ValidationException(
            "Number overflow. Attempting to store a number with magnitude larger than supported range"
        )
    if magnitude < MIN_EXPONENT:
        raise ValidationException(
            "Number underflow. Attempting to store a number with magnitude smaller than supported range"
        )
    return value


def _strip(digits: tuple[int, ...]) -> tuple[int, ...]:
    start, end = 0, len(digits)
    while start < end and digits[start] == 0:
        start += 1
    while end > start and digits[end - 1] == 0:
        end -= 1
    return digits[start:end]


def number_text(value: Decimal | str) -> str:
    """The form DynamoDB stores and returns: no exponent, no leading or trailing zeros ("0042.1200" -> "42.12")."""
    d = number(value) if isinstance(value, str) else value
    if d.is_zero():
        return "0"
    text = format(d.normalize(EXACT), "f")
    return text


def check_number(value: Decimal) -> Decimal:
    """A computed number (ADD, +, -) within DynamoDB's limits, else the same errors as a literal."""
    number(format(value, "f") if value.is_zero() else str(value))
    return value


def add(a: Decimal, b: Decimal) -> Decimal:
    return check_number(EXACT.add(a, b))


def binary(text: str | bytes) -> bytes:
    """A B value's bytes (the wire carries base64; botocore's parsed params may already hold bytes)."""
    if isinstance(text, bytes | bytearray):
        return bytes(text)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationException(f"Invalid binary value: {text}") from exc


def _scalar_key(kind: str, raw: Any) -> Any:
    """A hashable key of a scalar or set member, equal exactly when DynamoDB considers the values equal."""
    if kind == "N":
        return Decimal(raw)
    if kind == "B":
        return binary(raw)
    return raw


def equal(a: Value | None, b: Value | None) -> bool:
    """DynamoDB's `=`: same type and same value (sets regardless of order)."""
    if a is None or b is None:
        return False
    ta, tb = type_of(a), type_of(b)
    if ta != tb:
        return False
    x, y = a[ta], b[tb]
    if ta in ("S", "N", "B"):
        return bool(_scalar_key(ta, x) == _scalar_key(ta, y))
    if ta in ("SS", "NS", "BS"):
        return {_scalar_key(ta[0], v) for v in x} == {_scalar_key(ta[0], v) for v in y}
    if ta == "L":
        return len(x) == len(y) and all(equal(p, q) for p, q in zip(x, y, strict=True))
    if ta == "M":
        return x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
    return bool(x == y)  # NULL, BOOL


def order_key(value: Value) -> tuple[str, Any] | None:
    """The comparable form of an N, S or B value (None for other types: `<` on them is false)."""
    kind = type_of(value)
    if kind == "N":
        return kind, Decimal(value["N"])
    if kind == "S":
        return kind, value["S"].encode()
    if kind == "B":
        return kind, binary(value["B"])
    return None


def less(a: Value | None, b: Value | None) -> bool | None:
    """a < b for two values of the same orderable type; None when they cannot be ordered."""
    if a is None or b is None:
        return None
    ka, kb = order_key(a), order_key(b)
    if ka is None or kb is None or ka[0] != kb[0]:
        return None
    return bool(ka[1] < kb[1])


def compare(op: str, a: Value | None, b: Value | None) -> bool:
    """A comparator of a condition: type-strict, so values of different types (or a missing one) compare
    false, except under `<>`, where they are unequal."""
    if op == "=":
        return equal(a, b)
    if op == "<>":  # a missing attribute is unequal to anything, another missing one included
        return not equal(a, b)
    if op == "<":
        return less(a, b) is True
    if op == ">":
        return less(b, a) is True
    if op == "<=":
        return less(b, a) is False
    if op == ">=":
        return less(a, b) is False
    raise ValueError(op)


def size(value: Value | None) -> Value | None:
    """size(): UTF-16 code units of S (as DynamoDB counts: "é𝄞" is 3), bytes of B, elements of sets, lists and
    maps; None for N, BOOL and NULL."""
    if value is None:
        return None
    kind = type_of(value)
    if kind == "B":
        return {"N": str(len(binary(value["B"])))}
    if kind == "S":
        return {"N": str(len(value["S"].encode("utf-16-le")) // 2)}
    if kind in ("SS", "NS", "BS", "L", "M"):
        return {"N": str(len(value[kind]))}
    return None


def contains(container: Value | None, operand: Value | None) -> bool:
    """contains(): substring of S or B, member of a set of the operand's type, element of a list."""
    if container is None or operand is None:
        return False
    kind, okind = type_of(container), type_of(operand)
    if kind == "S":
        return okind == "S" and operand["S"] in container["S"]
    if kind == "B":
        return okind == "B" and binary(operand["B"]) in binary(container["B"])
    if kind in ("SS", "NS", "BS"):
        if okind != kind[0]:
            return False
        wanted = _scalar_key(okind, operand[okind])
        return any(_scalar_key(okind, v) == wanted for v in container[kind])
    if kind == "L":
        return any(equal(element, operand) for element in container["L"])
    return False


def begins_with(value: Value | None, prefix: Value | None) -> bool:
    if value is None or prefix is None:
        return False
    kind = type_of(value)
    if kind != type_of(prefix):
        return False
    if kind == "S":
        return bool(value["S"].startswith(prefix["S"]))
    if kind == "B":
        return binary(value["B"]).startswith(binary(prefix["B"]))
    return False


def sort_key_bytes(value: Value) -> bytes:
    """An order-preserving encoding of a key value: memcmp order is DynamoDB's order within one type.

    S: its UTF-8 bytes. B: its bytes. N: a sign byte (0x01 negative, 0x02 zero, 0x03 positive), then for a
    positive number the adjusted exponent + 130 as one byte and the significant digits as ASCII, ended by 0x00
    (a prefix of digits is the smaller number); a negative number stores the complement of all of these,
    ended by 0xFF, so a larger magnitude sorts lower.
    """
    kind = type_of(value)
    if kind == "S":
        return str(value["S"]).encode()
    if kind == "B":
        return binary(value["B"])
    if kind != "N":
        raise ValidationException(f"Key attributes must be scalars; type {kind} cannot be a key")
    d = number(value["N"])
    if d.is_zero():
        return b"\x02"
    digits = _strip(d.as_tuple().digits)
    exponent = d.adjusted() - MIN_EXPONENT
    if d.is_signed():
        return b"\x01" + bytes([255 - exponent]) + bytes(0x39 - x for x in digits) + b"\xff"
    return b"\x03" + bytes([exponent]) + bytes(0x30 + x for x in digits) + b"\x00"


def number_size(value: Decimal) -> int:
    """A number's stored size: 1 byte, plus one per pair of digits (aligned at the decimal point) between the
    first and last significant pair, plus 1 if negative. 3.14159 costs 5, 123456 costs 4, 1E125 costs 2."""
    if value.is_zero():
        return 1
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    positions = [exponent + len(digits) - 1 - i for i, x in enumerate(digits) if x]
    high, low = max(positions) // 2, min(positions) // 2
    return 1 + (high - low + 1) + (1 if sign else 0)


def value_size(value: Value) -> int:
    """A value's size by AWS's rules: S and B by bytes, N by number_size, BOOL and NULL 1 byte, sets the sum
    of their members, L and M 3 bytes plus 1 per element plus the elements (and the keys of M)."""
    kind = type_of(value)
    raw = value[kind]
    if kind == "S":
        return len(raw.encode())
    if kind == "B":
        return len(binary(raw))
    if kind == "N":
        return number_size(Decimal(raw))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode()) for v in raw)
    if kind == "NS":
        return sum(number_size(Decimal(v)) for v in raw)
    if kind == "BS":
        return sum(len(binary(v)) for v in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in raw.items())
    raise ValidationException(f"Unknown attribute type: {kind}")


def item_size(item: Item) -> int:
    """The item's size by DynamoDB's rules: attribute names (UTF-8 bytes) plus their values."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())
