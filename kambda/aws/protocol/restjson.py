"""rest-json (Lambda, API Gateway): REST locations around a JSON body.

Errors keep the shape kambda's Lambda API has always answered, byte for byte: ``x-amzn-ErrorType: <code>`` and
the body ``err.body()`` (``{"Type": "User", "message": ...}``, ``Message`` for ResourceNotFoundException, plus the
error's extra fields), which botocore reads by the header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.model import (  # type: ignore[import-untyped]
    OperationModel,
    ServiceModel,
    Shape,
    StructureShape,
)

from kambda.aws import errors
from kambda.aws.protocol import jsonbody, rest
from kambda.aws.protocol.faults import Malformed, Serialization

CONTENT_TYPE = "application/json"


class _JsonCodec:
    content_type = CONTENT_TYPE

    def decode_body(self, shape: StructureShape, body: bytes) -> dict[str, Any]:
        return jsonbody.decode(shape, jsonbody.loads(body))

    def encode_body(self, shape: Shape, value: dict[str, Any], root: str) -> bytes:
        return jsonbody.dumps(jsonbody.encode(shape, value))


CODEC = _JsonCodec()
#: The code a service gives a body or value that does not parse (Lambda has its own).
MALFORMED: dict[str, type[errors.KambdaError]] = {"lambda": errors.InvalidRequestContent}


def parse_request(operation: OperationModel, method: str, path: str, query: Mapping[str, Any],
                  headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    try:
        return rest.parse(operation, path, query, headers, body, CODEC)
    except Malformed as exc:
        error = MALFORMED.get(operation.service_model.service_name, Serialization)
        raise error(f"Could not parse request: {exc}") from None


def serialize_response(operation: OperationModel, result: dict[str, Any],
                       request_id: str = "") -> tuple[int, dict[str, str], Any]:
    response = rest.serialize(operation, result, CODEC, b"{}")
    return response.status, response.headers, response.body


def serialize_error(service: ServiceModel, err: errors.KambdaError,
                    request_id: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": CONTENT_TYPE, "x-amzn-ErrorType": err.code, "x-amzn-RequestId": request_id}
    return err.status, headers, jsonbody.dumps(err.body())
