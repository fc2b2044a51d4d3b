"""One parser and one serializer per AWS protocol family, chosen by the service model's protocol.

``parse_request`` turns what arrived (method, the percent-encoded path, the query, headers, the body) into the
operation's params, keyed by member names exactly as a boto3 caller passes them; ``serialize_response`` and
``serialize_error`` turn a handler's dict or a KambdaError into ``(status, headers, body)``. A body returned for a
streaming payload may be an async iterator of bytes, which the front door streams. Request-id headers are the
caller's (:func:`request_id_headers`), since only it knows the id when a response is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.model import OperationModel, ServiceModel  # type: ignore[import-untyped]

from kambda.aws import errors
from kambda.aws.model import protocol_of
from kambda.aws.protocol import jsonrpc, query, restjson, restxml

_MODULES: dict[str, Any] = {"json": jsonrpc, "rest-json": restjson, "rest-xml": restxml, "query": query}


def _module(service: ServiceModel) -> Any:
    return _MODULES[protocol_of(service)]


def parse_request(operation: OperationModel, method: str, path: str, query: Mapping[str, Any],
                  headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """``path`` as sent (percent-encoded, without the query); ``query`` a MultiDict or a dict of lists."""
    return _module(operation.service_model).parse_request(
        operation, method, path, query, headers, body)


def serialize_response(operation: OperationModel, result: dict[str, Any],
                       request_id: str = "") -> tuple[int, dict[str, str], Any]:
    """``request_id`` goes into the body where the protocol puts it there (Query's ResponseMetadata)."""
    return _module(operation.service_model).serialize_response(
        operation, result, request_id)


def serialize_error(service: ServiceModel, err: errors.KambdaError,
                    request_id: str) -> tuple[int, dict[str, str], bytes]:
    return _module(service).serialize_error(service, err, request_id)


def request_id_headers(service: ServiceModel, request_id: str) -> dict[str, str]:
    if protocol_of(service) == "rest-xml":
        return restxml.request_id_headers(request_id)
    return {"x-amzn-RequestId": request_id}
