"""JSON 1.0 and 1.1 (EventBridge, Step Functions, DynamoDB, ECS, ECR, SQS): a POST to ``/`` naming its operation
in ``X-Amz-Target``, the input as one JSON object, the output likewise.

The content type is ``application/x-amz-json-<jsonVersion>`` from the model. Errors are
``{"__type": code, "message": msg, ...extra}`` with ``x-amzn-ErrorType``; a query-compatible service (SQS) also
gets ``x-amzn-query-error: <code>;Sender|Receiver`` so SDKs that still expect the old Query codes find them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.model import OperationModel, ServiceModel  # type: ignore[import-untyped]

from kambda.aws import errors
from kambda.aws.protocol import jsonbody
from kambda.aws.protocol.faults import Malformed, Serialization


def content_type(service: ServiceModel) -> str:
    return f"application/x-amz-json-{service.metadata.get('jsonVersion', '1.0')}"


def parse_request(operation: OperationModel, method: str, path: str, query: Mapping[str, Any],
                  headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    shape = operation.input_shape
    if shape is None or not body.strip():
        return {}
    try:
        return jsonbody.decode(shape, jsonbody.loads(body))
    except Malformed as exc:
        raise Serialization(str(exc)) from None


def serialize_response(operation: OperationModel, result: dict[str, Any],
                       request_id: str = "") -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": content_type(operation.service_model)}
    shape = operation.output_shape
    body = jsonbody.dumps(jsonbody.encode(shape, result)) if shape is not None else b"{}"
    return 200, headers, body


def serialize_error(service: ServiceModel, err: errors.KambdaError,
                    request_id: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": content_type(service), "x-amzn-ErrorType": err.code, "x-amzn-RequestId": request_id}
    if service.metadata.get("awsQueryCompatible") is not None:
        headers["x-amzn-query-error"] = f"{err.code};{'Receiver' if err.status >= 500 else 'Sender'}"
    # JSON-protocol services answer every client error with 400 (a missing resource, AccessDenied too), but a
    # body too large (413) and a request that is not authentic (403: who is calling was not established).
    status = err.status if err.status >= 500 or err.status == 413 or isinstance(err, errors.NOT_AUTHENTIC) else 400
    return status, headers, jsonbody.dumps({"__type": err.code, "message": err.message, **err.extra})
