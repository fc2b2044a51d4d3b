"""A JSON document against a botocore shape, both ways: shared by JSON 1.0/1.1 and rest-json.

Keys are the members' ``locationName`` when they have one (botocore's ``serialization['name']``), else the member
name; members that live elsewhere on a REST request (uri, querystring, header, headers, statusCode) are skipped.
Timestamps default to epoch seconds, blobs are base64, ``document`` shapes pass through as plain JSON. Input is
checked for type (a string where a number belongs is :class:`Malformed`, as AWS answers SerializationException);
unknown keys are ignored, as AWS does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from botocore.model import Shape  # type: ignore[import-untyped]

from kambda.aws.protocol import values
from kambda.aws.protocol.faults import Malformed

LOCATED = frozenset(("uri", "querystring", "header", "headers", "statusCode"))


def loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"invalid JSON: {exc}") from None


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def _member_plan(shape: Shape) -> tuple[tuple[str, str, Shape], ...]:
    """(member name, JSON key, member shape) of the members a body carries; cached on the shape."""
    plan = shape.__dict__.get("_kambda_json_plan")
    if plan is None:
        plan = tuple((name, member.serialization.get("name", name), member)
                     for name, member in shape.members.items()
                     if member.serialization.get("location") not in LOCATED)
        shape.__dict__["_kambda_json_plan"] = plan
    return plan


# -- decoding: JSON value -> params -------------------------------------------------------------------------------

def decode(shape: Shape, value: Any) -> Any:
    return _DECODERS.get(shape.type_name, _decode_default)(shape, value)


def _decode_structure(shape: Shape, value: Any) -> dict[str, Any]:
    if getattr(shape, "is_document_type", False):
        return value
    if not isinstance(value, dict):
        raise Malformed(f"{shape.name} must be an object")
    out: dict[str, Any] = {}
    for name, key, member in _member_plan(shape):
        item = value.get(key)
        if item is not None:
            out[name] = decode(member, item)
    return out


def _decode_list(shape: Shape, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise Malformed(f"{shape.name} must be an array")
    member = shape.member
    if None in value:
        raise Malformed(f"{shape.name} must not hold null")
    return [decode(member, item) for item in value]


def _decode_map(shape: Shape, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{shape.name} must be an object")
    inner = shape.value
    if any(item is None for item in value.values()):
        raise Malformed(f"the values of {shape.name} must not be null")
    return {key: decode(inner, item) for key, item in value.items()}


def _decode_string(shape: Shape, value: Any) -> Any:
    if not isinstance(value, str):
        raise Malformed(f"{shape.name} must be a string, not {type(value).__name__}")
    return value


def _decode_integer(shape: Shape, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{shape.name} must be an integer, not {value!r}"[:200])
    return value


def _decode_float(shape: Shape, value: Any) -> float:
    if isinstance(value, bool):
        raise Malformed(f"{shape.name} must be a number")
    if isinstance(value, int | float):
        return float(value)
    if value in ("NaN", "Infinity", "-Infinity"):
        return float(value)
    raise Malformed(f"{shape.name} must be a number, not {value!r}"[:200])


def _decode_boolean(shape: Shape, value: Any) -> bool:
    if not isinstance(value, bool):
        raise Malformed(f"{shape.name} must be a boolean, not {value!r}"[:200])
    return value


def _decode_blob(shape: Shape, value: Any) -> bytes:
    if not isinstance(value, str):
        raise Malformed(f"{shape.name} must be a base64 string")
    return values.b64decode(value)


def _decode_timestamp(shape: Shape, value: Any) -> datetime:
    return values.to_timestamp(value)


def _decode_default(shape: Shape, value: Any) -> Any:
    return value


_DECODERS: dict[str, Callable[[Shape, Any], Any]] = {
    "structure": _decode_structure, "list": _decode_list, "map": _decode_map, "string": _decode_string,
    "integer": _decode_integer, "long": _decode_integer, "short": _decode_integer, "byte": _decode_integer,
    "float": _decode_float, "double": _decode_float, "boolean": _decode_boolean, "blob": _decode_blob,
    "timestamp": _decode_timestamp,
}


# -- encoding: result -> JSON value -------------------------------------------------------------------------------

def encode(shape: Shape, value: Any) -> Any:
    return _ENCODERS.get(shape.type_name, _encode_default)(shape, value)


def _encode_structure(shape: Shape, value: Any) -> Any:
    if getattr(shape, "is_document_type", False):
        return value
    out: dict[str, Any] = {}
    for name, key, member in _member_plan(shape):
        item = value.get(name)
        if item is not None:
            out[key] = encode(member, item)
    return out


def _encode_list(shape: Shape, value: Any) -> list[Any]:
    member = shape.member
    return [None if item is None else encode(member, item) for item in value]


def _encode_map(shape: Shape, value: Any) -> dict[str, Any]:
    inner = shape.value
    return {key: None if item is None else encode(inner, item) for key, item in value.items()}


def _encode_float(shape: Shape, value: Any) -> Any:
    return values.format_float(float(value))


def _encode_blob(shape: Shape, value: Any) -> str:
    return values.b64encode(value)


def _encode_timestamp(shape: Shape, value: Any) -> Any:
    return values.format_timestamp(value, shape.serialization.get("timestampFormat", values.UNIX))


def _encode_default(shape: Shape, value: Any) -> Any:
    return value


_ENCODERS: dict[str, Callable[[Shape, Any], Any]] = {
    "structure": _encode_structure, "list": _encode_list, "map": _encode_map, "float": _encode_float,
    "double": _encode_float, "blob": _encode_blob, "timestamp": _encode_timestamp,
}
