"""The errors kambda speaks, and the one place that maps them to AWS error codes and HTTP statuses.

Every service raises a subclass of :class:`KambdaError`. The gateway turns one into the AWS wire
shape (status, ``x-amzn-ErrorType`` header, JSON body); the controller carries one across gRPC as
the AWS code in trailing metadata plus the message, and :func:`from_code` rebuilds it on the other
side. Library exceptions (aiohttp, nats, grpc, kubernetes) are wrapped into these before they
reach a caller.
"""

from __future__ import annotations

from typing import Any


class KambdaError(Exception):
    """Base of every error kambda reports. Subclasses fix the AWS code and HTTP status."""

    code = "ServiceException"
    status = 500
    error_type = "Service"
    #: ResourceNotFoundException spells the message key with a capital M on AWS.
    message_key = "message"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        #: Extra top-level body fields, e.g. ``Reason`` on TooManyRequestsException.
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"Type": self.error_type, self.message_key: self.message, **self.extra}


class ServiceError(KambdaError):
    """kambda's own fault; never used for a user's bad input."""


class ResourceNotFound(KambdaError):
    code = "ResourceNotFoundException"
    status = 404
    error_type = "User"
    message_key = "Message"


class ResourceConflict(KambdaError):
    code = "ResourceConflictException"
    status = 409
    error_type = "User"


class InvalidParameterValue(KambdaError):
    code = "InvalidParameterValueException"
    status = 400
    error_type = "User"


class Validation(KambdaError):
    code = "ValidationException"
    status = 400
    error_type = "User"


class InvalidRequestContent(KambdaError):
    code = "InvalidRequestContentException"
    status = 400
    error_type = "User"


class RequestEntityTooLarge(KambdaError):
    code = "RequestEntityTooLargeException"
    status = 413
    error_type = "User"


class RequestTimeout(KambdaError):
    """The client did not send its request in time (a slow or stalled body)."""

    code = "RequestTimeoutException"
    status = 408
    error_type = "User"


class PreconditionFailed(KambdaError):
    code = "PreconditionFailedException"
    status = 412
    error_type = "User"


class TooManyRequests(KambdaError):
    code = "TooManyRequestsException"
    status = 429
    error_type = "User"


class ProvisionedConcurrencyConfigNotFound(KambdaError):
    code = "ProvisionedConcurrencyConfigNotFoundException"
    status = 404
    error_type = "User"


class UnsupportedMediaType(KambdaError):
    code = "UnsupportedMediaTypeException"
    status = 415
    error_type = "User"


class ResourceAlreadyExists(KambdaError):
    code = "ResourceAlreadyExistsException"
    status = 400
    error_type = "User"


class LimitExceeded(KambdaError):
    code = "LimitExceededException"
    status = 400
    error_type = "User"


class InvalidEventPattern(KambdaError):
    code = "InvalidEventPatternException"
    status = 400
    error_type = "User"


class ConcurrentModification(KambdaError):
    code = "ConcurrentModificationException"
    status = 409
    error_type = "User"


class PolicyLengthExceeded(KambdaError):
    code = "PolicyLengthExceededException"
    status = 400
    error_type = "User"


class UnknownOperation(KambdaError):
    code = "UnknownOperationException"
    status = 404
    error_type = "User"


class BadRequest(KambdaError):
    """API Gateway's code for a bad request (kambda's HTTP route API speaks API Gateway's codes)."""

    code = "BadRequestException"
    status = 400
    error_type = "User"


class Conflict(KambdaError):
    code = "ConflictException"
    status = 409
    error_type = "User"


class NotFound(KambdaError):
    code = "NotFoundException"
    status = 404
    error_type = "User"


class InvalidSignature(KambdaError):
    """A signature that does not verify, or whose date is too far from now."""

    code = "InvalidSignatureException"
    status = 403
    error_type = "User"


class IncompleteSignature(KambdaError):
    """An Authorization header or presigned query string that lacks a part or is malformed."""

    code = "IncompleteSignatureException"
    status = 400
    error_type = "User"


class UnrecognizedClient(KambdaError):
    """An access key id (or a session token) that no credential carries."""

    code = "UnrecognizedClientException"
    status = 403
    error_type = "User"


class AccessDenied(KambdaError):
    code = "AccessDeniedException"
    status = 403
    error_type = "User"


class MissingAuthenticationToken(KambdaError):
    code = "MissingAuthenticationTokenException"
    status = 403
    error_type = "User"


#: The request's signature or credentials are missing or wrong: who is calling was not established.
NOT_AUTHENTIC = (InvalidSignature, IncompleteSignature, UnrecognizedClient, MissingAuthenticationToken)


_BY_CODE: dict[str, type[KambdaError]] = {
    cls.code: cls
    for cls in (
        ServiceError,
        ResourceNotFound,
        ResourceConflict,
        InvalidParameterValue,
        Validation,
        InvalidRequestContent,
        RequestEntityTooLarge,
        PreconditionFailed,
        TooManyRequests,
        ProvisionedConcurrencyConfigNotFound,
        UnsupportedMediaType,
        UnknownOperation,
        BadRequest,
        Conflict,
        NotFound,
        InvalidSignature,
        IncompleteSignature,
        UnrecognizedClient,
        AccessDenied,
        MissingAuthenticationToken,
        ResourceAlreadyExists,
        LimitExceeded,
        InvalidEventPattern,
        ConcurrentModification,
        PolicyLengthExceeded,
    )
}


def from_code(code: str, message: str, **extra: Any) -> KambdaError:
    """Rebuild an error from its AWS code (an unknown code becomes a ServiceError)."""
    return _BY_CODE.get(code, ServiceError)(message, **extra)


def function_not_found(arn: str) -> ResourceNotFound:
    return ResourceNotFound(f"Function not found: {arn}")
