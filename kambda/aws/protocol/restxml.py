"""rest-xml (S3): REST locations around an XML body.

S3's answers carry ``x-amz-request-id`` and ``x-amz-id-2``, roots in S3's namespace, and the root names S3 uses
(``ListBucketResult`` for ListObjectsV2, not the model's output shape name, which botocore ignores but other
clients do not). Errors are ``<Error><Code/><Message/>...extra...<RequestId/><HostId/></Error>`` with no namespace,
the error's extra fields (``Key``, ``BucketName``, ``Resource``) as elements. A HEAD answer has no body at all, so
botocore reads the code from the status (``404``); that is S3's behaviour too.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from botocore.model import (  # type: ignore[import-untyped]
    OperationModel,
    ServiceModel,
    Shape,
    StructureShape,
)

from kambda.aws import errors
from kambda.aws.protocol import rest, xmlbody
from kambda.aws.protocol.faults import InvalidArgument, Malformed, MalformedXML

CONTENT_TYPE = "application/xml"
S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
#: S3's own root element names, where its model's output shape says nothing.
ROOTS = {
    "ListObjectsV2Result": "ListBucketResult", "ListObjectsResult": "ListBucketResult",
    "ListBucketsResult": "ListAllMyBucketsResult", "ListObjectVersionsResult": "ListVersionsResult",
    "DeleteObjectsResult": "DeleteResult", "CreateMultipartUploadResult": "InitiateMultipartUploadResult",
    "ListPartsResult": "ListPartsResult", "ListMultipartUploadsResult": "ListMultipartUploadsResult",
    "GetBucketTaggingResult": "Tagging", "GetObjectTaggingResult": "Tagging",
    "GetBucketAclResult": "AccessControlPolicy",
    "GetObjectAclResult": "AccessControlPolicy", "GetBucketVersioningResult": "VersioningConfiguration",
    "GetBucketCorsResult": "CORSConfiguration", "GetBucketLifecycleConfigurationResult": "LifecycleConfiguration",
    "GetBucketLocationResult": "LocationConstraint", "GetBucketPolicyStatusResult": "PolicyStatus",
    "GetObjectAttributesResult": "GetObjectAttributesResponse",
}


class _XmlCodec:
    content_type = CONTENT_TYPE

    def __init__(self, namespace: str | None) -> None:
        self.namespace = namespace

    def decode_body(self, shape: StructureShape, body: bytes) -> dict[str, Any]:
        try:
            root = xmlbody.parse(body)
        except Malformed as exc:
            raise MalformedXML("The XML you provided was not well-formed or did not validate against our "
                               f"published schema ({exc}).") from None
        return xmlbody.decode(shape, root)

    def encode_body(self, shape: Shape, value: dict[str, Any], root: str) -> bytes:
        root = ROOTS.get(root, root)
        ns = xmlbody.namespace_attr(shape)
        if not ns and self.namespace:
            ns = f' xmlns="{self.namespace}"'
        out = [DECLARATION]
        xmlbody.element(out, root, shape, value, ns)
        return "".join(out).encode("utf-8")


_CODECS: dict[str, _XmlCodec] = {}


def _codec(service: ServiceModel) -> _XmlCodec:
    codec = _CODECS.get(service.service_name)
    if codec is None:
        ns = service.metadata.get("xmlNamespace") or (S3_NAMESPACE if service.service_name == "s3" else None)
        codec = _CODECS[service.service_name] = _XmlCodec(ns)
    return codec


def parse_request(operation: OperationModel, method: str, path: str, query: Mapping[str, Any],
                  headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    try:
        return rest.parse(operation, path, query, headers, body, _codec(operation.service_model))
    except Malformed as exc:
        raise InvalidArgument(str(exc)) from None


def serialize_response(operation: OperationModel, result: dict[str, Any],
                       request_id: str = "") -> tuple[int, dict[str, str], Any]:
    if operation.name == "GetBucketLocation":  # the root's own text is the region (botocore reads root.text)
        text = xmlbody.escape(result.get("LocationConstraint") or "")
        body = f'{DECLARATION}<LocationConstraint xmlns="{S3_NAMESPACE}">{text}</LocationConstraint>'
        return 200, {"Content-Type": CONTENT_TYPE}, body.encode("utf-8")
    response = rest.serialize(operation, result, _codec(operation.service_model), b"")
    return response.status, response.headers, response.body


def host_id(request_id: str) -> str:
    """S3's ``x-amz-id-2``: an opaque token; derived from the request id so that it needs no state."""
    return base64.b64encode(hashlib.sha256(request_id.encode()).digest()).decode()


def request_id_headers(request_id: str) -> dict[str, str]:
    return {"x-amz-request-id": request_id, "x-amz-id-2": host_id(request_id)}


#: The kernel's authentication errors (JSON services' codes) in S3's words.
S3_CODES = {
    "InvalidSignatureException": "SignatureDoesNotMatch", "UnrecognizedClientException": "InvalidAccessKeyId",
    "AccessDeniedException": "AccessDenied", "MissingAuthenticationTokenException": "AccessDenied",
    "IncompleteSignatureException": "AuthorizationQueryParametersError",
}


def serialize_error(service: ServiceModel, err: errors.KambdaError,
                    request_id: str) -> tuple[int, dict[str, str], bytes]:
    code = S3_CODES.get(err.code, err.code) if service.service_name == "s3" else err.code
    out = [DECLARATION, "<Error><Code>", xmlbody.escape(code), "</Code><Message>", xmlbody.escape(err.message),
           "</Message>"]
    for key, value in err.extra.items():
        out.append(f"<{key}>{xmlbody.escape(str(value))}</{key}>")
    out.append(f"<RequestId>{request_id}</RequestId><HostId>{host_id(request_id)}</HostId></Error>")
    headers = {"Content-Type": CONTENT_TYPE, **request_id_headers(request_id)}
    return err.status, headers, "".join(out).encode("utf-8")
