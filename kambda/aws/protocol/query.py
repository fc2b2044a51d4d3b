"""The Query protocol (STS, CloudFormation, SNS, IAM): ``Action=...&Version=...`` plus flattened parameters, in a
form-encoded POST body or the query string; XML answers.

Parameters are dotted paths, as botocore's ``QuerySerializer`` writes them: a list is ``Name.member.N`` (or
``Name.N`` when flattened), a map ``Name.entry.N.key`` / ``.value``, a nested structure ``Outer.Inner``, an empty
list ``Name=``. Answers are ``<OpResponse xmlns=ns><OpResult>...</OpResult><ResponseMetadata><RequestId>``, the
result element named by the output shape's ``resultWrapper``; errors are
``<ErrorResponse><Error><Type>Sender|Receiver</Type><Code/><Message/></Error><RequestId/></ErrorResponse>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from botocore.model import OperationModel, ServiceModel, Shape  # type: ignore[import-untyped]

from kambda.aws import errors
from kambda.aws.protocol import rest, values, xmlbody
from kambda.aws.protocol.faults import Malformed, ValidationError

CONTENT_TYPE = "text/xml"


def form(query: Mapping[str, Any], headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """Every parameter, from the query string and a form-encoded body (the body wins)."""
    params = {key: vals[-1] for key, vals in rest.query_lists(query).items() if vals}
    if body:
        content_type = rest.as_headers(headers).get("Content-Type", "application/x-www-form-urlencoded")
        if content_type.startswith("application/x-www-form-urlencoded"):
            try:
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
            except UnicodeDecodeError:
                raise ValidationError("The request body is not UTF-8.") from None
    return params


class _Form:
    def __init__(self, params: dict[str, str]) -> None:
        self.params = params
        self.prefixes: set[str] = set()
        for key in params:
            parts = key.split(".")
            for i in range(1, len(parts) + 1):
                self.prefixes.add(".".join(parts[:i]))

    def has(self, prefix: str) -> bool:
        return prefix in self.prefixes


def _decode(shape: Shape, data: _Form, prefix: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            key = member.serialization.get("name", name)
            full = f"{prefix}.{key}" if prefix else key
            if data.has(full):
                out[name] = _decode(member, data, full)
        return out
    if kind == "list":
        member = shape.member
        if data.params.get(prefix) == "":
            return []
        if shape.serialization.get("flattened"):
            list_prefix = prefix
            inner = member.serialization.get("name")
            if inner:
                list_prefix = ".".join(prefix.split(".")[:-1] + [inner])
        else:
            list_prefix = f"{prefix}.{member.serialization.get('name', 'member')}"
        items = []
        i = 1
        while data.has(f"{list_prefix}.{i}"):
            items.append(_decode(member, data, f"{list_prefix}.{i}"))
            i += 1
        return items
    if kind == "map":
        key_shape, value_shape = shape.key, shape.value
        base = prefix if shape.serialization.get("flattened") else f"{prefix}.entry"
        key_name = key_shape.serialization.get("name", "key")
        value_name = value_shape.serialization.get("name", "value")
        found: dict[str, Any] = {}
        i = 1
        while data.has(f"{base}.{i}"):
            key = data.params.get(f"{base}.{i}.{key_name}")
            if key is None:
                raise Malformed(f"{base}.{i}.{key_name} is missing")
            item = f"{base}.{i}.{value_name}"
            found[key] = _decode(value_shape, data, item) if data.has(item) else None
            i += 1
        return found
    text = data.params.get(prefix)
    if text is None:
        raise Malformed(f"{prefix} must be a value, not a structure")
    return values.scalar_from_text(kind, text)


def parse_request(operation: OperationModel, method: str, path: str, query: Mapping[str, Any],
                  headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    shape = operation.input_shape
    if shape is None:
        return {}
    try:
        return _decode(shape, _Form(form(query, headers, body)), "")
    except Malformed as exc:
        raise ValidationError(str(exc)) from None


def _namespace(service: ServiceModel) -> str:
    ns = service.metadata.get("xmlNamespace")
    return f' xmlns="{xmlbody.escape_attr(ns)}"' if ns else ""


def serialize_response(operation: OperationModel, result: dict[str, Any],
                       request_id: str = "") -> tuple[int, dict[str, str], bytes]:
    name = operation.name
    out = [f"<{name}Response{_namespace(operation.service_model)}>"]
    shape = operation.output_shape
    if shape is not None:
        wrapper = shape.serialization.get("resultWrapper", f"{name}Result")
        out.append(f"<{wrapper}>")
        xmlbody.members(out, shape, result)
        out.append(f"</{wrapper}>")
    out.append(f"<ResponseMetadata><RequestId>{xmlbody.escape(request_id)}</RequestId></ResponseMetadata>")
    out.append(f"</{name}Response>")
    return 200, {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id}, "".join(out).encode("utf-8")


def serialize_error(service: ServiceModel, err: errors.KambdaError,
                    request_id: str) -> tuple[int, dict[str, str], bytes]:
    kind = "Receiver" if err.status >= 500 else "Sender"
    out = [f"<ErrorResponse{_namespace(service)}><Error><Type>{kind}</Type><Code>{xmlbody.escape(err.code)}</Code>",
           f"<Message>{xmlbody.escape(err.message)}</Message>"]
    for key, value in err.extra.items():
        out.append(f"<{key}>{xmlbody.escape(str(value))}</{key}>")
    out.append(f"</Error><RequestId>{xmlbody.escape(request_id)}</RequestId></ErrorResponse>")
    return err.status, {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id}, "".join(out).encode("utf-8")
