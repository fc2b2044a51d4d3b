"""What rest-json and rest-xml share: members bound to the URI, the query string, headers and the status code,
and the ``payload`` member that is the whole body.

The body codec (JSON or XML) is the only difference, so each REST protocol module hands this one a
:class:`BodyCodec`. Conversions follow botocore's ``BaseRestSerializer`` and ``BaseRestParser``: timestamps are
ISO 8601 in the URI and query string, RFC 822 in headers (unless the member's trait says otherwise); a ``jsonvalue``
header is base64 JSON; a list header is comma-separated with quoted items; a ``headers`` map is every header with
the member's prefix (``x-amz-meta-``), keys lower-cased as S3 keeps them; a map-typed querystring member takes every
query key no other member claims. A blob or string payload is the raw body: on the way in the parser hands the bytes
over as they are; on the way out a handler may return bytes or an async iterator of bytes, passed through unchanged
for the front door to stream.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.model import OperationModel, Shape, StructureShape  # type: ignore[import-untyped]
from multidict import CIMultiDict, CIMultiDictProxy

from kambda.aws import model
from kambda.aws.protocol import values
from kambda.aws.protocol.faults import Malformed

Headers = CIMultiDict[str] | CIMultiDictProxy[str]


class BodyCodec(Protocol):
    content_type: str

    def decode_body(self, shape: StructureShape, body: bytes) -> dict[str, Any]:
        """The members of ``shape`` that a body carries (located members are not looked at)."""

    def encode_body(self, shape: Shape, value: dict[str, Any], root: str) -> bytes:
        """``value`` as a body of ``shape``; ``root`` names the XML root element."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: Any  # bytes, or an async iterator of bytes for a streaming payload


def query_lists(query: Mapping[str, Any]) -> dict[str, list[str]]:
    """A MultiDict (aiohttp's ``request.query``) or a dict of lists or strings, as a dict of lists."""
    getall = getattr(query, "getall", None)
    if getall is not None:
        return {key: getall(key) for key in query.keys()}
    return {key: list(value) if isinstance(value, list | tuple) else [value] for key, value in query.items()}


def as_headers(headers: Mapping[str, str]) -> Headers:
    if isinstance(headers, CIMultiDict | CIMultiDictProxy):
        return headers
    return CIMultiDict(headers)


def split_header_list(text: str) -> list[str]:
    """``a, "b,c", "d\\"e"`` -> ``["a", "b,c", 'd"e']``, the inverse of botocore's quoting."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return items


def _header_value(member: Shape, text: str) -> Any:
    if member.type_name == "list":
        inner = member.member
        return [values.scalar_from_text(inner.type_name, item) for item in split_header_list(text)]
    if member.type_name == "string" and member.serialization.get("jsonvalue"):
        try:
            return json.loads(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise Malformed(f"{member.serialization.get('name')} must be base64-encoded JSON") from None
    return values.scalar_from_text(member.type_name, text)


def _located(shape: Shape) -> tuple[tuple[str, str | None, str, Shape], ...]:
    """(member name, location or None, name on the wire, shape) of every member; cached on the shape."""
    plan = shape.__dict__.get("_kambda_rest_plan")
    if plan is None:
        plan = tuple((name, member.serialization.get("location"), member.serialization.get("name", name), member)
                     for name, member in shape.members.items())
        shape.__dict__["_kambda_rest_plan"] = plan
    return plan


def parse(operation: OperationModel, raw_path: str, query: Mapping[str, Any], headers: Mapping[str, str],
          body: bytes, codec: BodyCodec) -> dict[str, Any]:
    shape = operation.input_shape
    if shape is None:
        return {}
    hdrs = as_headers(headers)
    qs = query_lists(query)
    template = model.uri_template(operation)
    labels = template.match_path(raw_path) or {}
    params: dict[str, Any] = {}
    claimed = {key for key, _ in template.literal_query} | model.HINT_KEYS
    query_map: tuple[str, Shape] | None = None
    for name, location, wire, member in _located(shape):
        if location is None:
            continue
        if location == "uri":
            if wire in labels:
                params[name] = values.scalar_from_text(member.type_name, labels[wire])
        elif location == "querystring":
            if member.type_name == "map":
                query_map = (name, member)
                continue
            claimed.add(wire)
            found = qs.get(wire)
            if not found:
                continue
            if member.type_name == "list":
                inner = member.member
                params[name] = [values.scalar_from_text(inner.type_name, item) for item in found]
            else:
                params[name] = values.scalar_from_text(member.type_name, found[0])
        elif location == "header":
            text = hdrs.get(wire)
            if text is not None:
                params[name] = _header_value(member, text)
        elif location == "headers":
            prefix = wire.lower()
            found_map = {key.lower()[len(prefix):]: value for key, value in hdrs.items()
                         if key.lower().startswith(prefix)}
            if found_map:
                params[name] = found_map
    if query_map is not None:
        name, member = query_map
        list_values = member.value.type_name == "list"
        found_query: dict[str, Any] = {key: vals if list_values else vals[0] for key, vals in qs.items()
                                       if key not in claimed}
        if found_query:
            params[name] = found_query
    payload = shape.serialization.get("payload")
    if payload is not None:
        member = shape.members[payload]
        if member.type_name == "blob":
            params[payload] = body
        elif member.type_name == "string":
            params[payload] = body.decode("utf-8", "replace")
        elif body:
            params[payload] = codec.decode_body(member, body)
    elif body:
        params.update(codec.decode_body(shape, body))
    return params


def _header_text(member: Shape, value: Any) -> str:
    kind = member.type_name
    if kind == "list":
        inner = member.member
        texts = [_header_text(inner, item) for item in value if item is not None]
        return ",".join('"' + t.replace('"', '\\"') + '"' if ('"' in t or "," in t) else t for t in texts)
    if kind == "string" and member.serialization.get("jsonvalue"):
        return values.b64encode(json.dumps(value, separators=(",", ":")))
    return values.scalar_to_text(kind, value, member.serialization.get("timestampFormat", values.RFC822))


def serialize(operation: OperationModel, result: dict[str, Any], codec: BodyCodec,
              empty_body: bytes) -> Response:
    """``empty_body``: what a structured body with nothing set is (``{}`` for JSON, nothing for XML)."""
    status = int(operation.http.get("responseCode", 200))
    shape = operation.output_shape
    headers: dict[str, str] = {}
    if shape is None:
        return Response(status, headers, b"")
    body_value: dict[str, Any] = {}
    has_body_members = False
    for name, location, wire, member in _located(shape):
        value = result.get(name)
        if location is None:
            has_body_members = True
            if value is not None:
                body_value[name] = value
            continue
        if value is None:
            continue
        if location == "statusCode":
            status = int(value)
        elif location == "header":
            if member.type_name == "list" and not value:
                continue
            headers[wire] = _header_text(member, value)
        elif location == "headers":
            for key, item in value.items():
                headers[wire + key] = str(item)
    payload = shape.serialization.get("payload")
    if payload is not None:
        member = shape.members[payload]
        value = result.get(payload)
        if member.type_name in ("blob", "string"):
            if value is None:
                value = b""
            elif isinstance(value, str):
                value = value.encode("utf-8")
            elif isinstance(value, bytearray | memoryview):
                value = bytes(value)
            if not _has_header(headers, "Content-Type"):
                headers["Content-Type"] = codec.content_type if member.type_name == "string" else _raw_type(codec)
            return Response(status, headers, value)
        if value is None:
            return Response(status, headers, b"")
        headers.setdefault("Content-Type", codec.content_type)
        root = member.serialization.get("name", payload)
        return Response(status, headers, codec.encode_body(member, value, root))
    if not has_body_members or status == 204:
        return Response(status, headers, b"")
    headers.setdefault("Content-Type", codec.content_type)
    if not body_value:
        return Response(status, headers, empty_body)
    root = shape.serialization.get("name", operation.name + "Result")
    return Response(status, headers, codec.encode_body(shape, body_value, root))


def _raw_type(codec: BodyCodec) -> str:
    # Lambda answers Invoke with application/json; S3 objects without a type are octet-streams.
    return "application/json" if codec.content_type == "application/json" else "application/octet-stream"


def _has_header(headers: dict[str, str], name: str) -> bool:
    lowered = name.lower()
    return any(key.lower() == lowered for key in headers)
