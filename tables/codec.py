"""Items between the wire, the expressions and the database.

The front door decodes a blob (``B``, ``BS``) to bytes and encodes bytes back to base64; the expressions package
(tables/expressions) and the stored JSON keep DynamoDB JSON exactly as the wire carries it, blobs as base64
text. :func:`inbound` and :func:`outbound` convert between the two (and ``inbound`` checks every attribute value
on the way, as DynamoDB does before anything is stored). Keys are stored as bytes that sort as DynamoDB sorts
them (:func:`tables.expressions.sort_key_bytes`), with a 32-bit hash of the partition key in front so that a Scan
walks partitions in hash order and ``Segment``/``TotalSegments`` split that range.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from tables import expressions
from tables.errors import validation

Item = dict[str, Any]
HASH_SPACE = 1 << 32


def inbound(item: Item | None) -> Item | None:
    """An item (or key, or attribute value map) from the front door: blobs to base64, every value checked with
    DynamoDB's messages (tables.expressions.validate_value), numbers in the form DynamoDB stores."""
    if item is None:
        return None
    return {name: inbound_value(value) for name, value in item.items()}


def inbound_value(value: Any) -> Any:
    wire = wire_value(value)
    try:
        expressions.validate_value(wire)
        return _normal_numbers(wire)
    except expressions.ValidationException as exc:
        raise validation(exc.message) from None


def wire_value(value: Any) -> Any:
    """A value with its blobs as base64 text, unchecked (as DynamoDB JSON carries it)."""
    if not isinstance(value, dict) or len(value) != 1:
        return value
    (kind, inner), = value.items()
    if kind == "B" and isinstance(inner, bytes | bytearray):
        return {"B": base64.b64encode(inner).decode()}
    if kind == "BS" and isinstance(inner, list):
        return {"BS": [base64.b64encode(b).decode() if isinstance(b, bytes | bytearray) else b for b in inner]}
    if kind == "M" and isinstance(inner, dict):
        return {"M": {k: wire_value(v) for k, v in inner.items()}}
    if kind == "L" and isinstance(inner, list):
        return {"L": [wire_value(v) for v in inner]}
    return value


def _normal_numbers(value: Item) -> Item:
    if "N" in value:
        return {"N": normal_number(value["N"])}
    if "NS" in value:
        return {"NS": [normal_number(n) for n in value["NS"]]}
    if "M" in value:
        return {"M": {k: _normal_numbers(v) for k, v in value["M"].items()}}
    if "L" in value:
        return {"L": [_normal_numbers(v) for v in value["L"]]}
    return value


def normal_number(text: str) -> str:
    """A number as DynamoDB gives it back: validated (38 digits, its range), no exponent, no trailing zeros."""
    return expressions.number_text(text)


def outbound(item: Item | None) -> Item | None:
    """An item for the front door's encoder: base64 blobs back to bytes."""
    if item is None:
        return None
    return {name: outbound_value(value) for name, value in item.items()}


def outbound_value(value: Item) -> Item:
    if "B" in value:
        return {"B": base64.b64decode(value["B"])}
    if "BS" in value:
        return {"BS": [base64.b64decode(b) for b in value["BS"]]}
    if "M" in value:
        return {"M": {k: outbound_value(v) for k, v in value["M"].items()}}
    if "L" in value:
        return {"L": [outbound_value(v) for v in value["L"]]}
    return value


def dumps(item: Item) -> bytes:
    return orjson.dumps(item)


def loads(data: bytes | str) -> Item:
    result: Item = orjson.loads(data)
    return result


def key_bytes(value: Item) -> bytes:
    return expressions.sort_key_bytes(value)


def partition_hash(pk: bytes) -> int:
    """Where a partition lies in the Scan order (0 .. 2**32-1)."""
    return int.from_bytes(hashlib.blake2b(pk, digest_size=4).digest(), "big")


def segment_range(segment: int, total: int) -> tuple[int, int]:
    """The hashes [low, high) of one Scan segment."""
    return segment * HASH_SPACE // total, (segment + 1) * HASH_SPACE // total


def type_of(value: Item) -> str:
    return next(iter(value))
