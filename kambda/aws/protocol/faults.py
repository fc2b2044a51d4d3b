"""The errors the wire layer itself raises: malformed input, unknown operations, internal failures.

Each AWS protocol family has its own word for "your request did not parse" (``SerializationException`` for the
JSON protocols, ``MalformedXML`` / ``InvalidArgument`` for S3, ``ValidationError`` for the Query services), and
its own for "no such operation". They live here, beside the layer that raises them, as KambdaError subclasses so
that the one error path in :mod:`kambda.aws.front` renders them like any handler's error.
"""

from __future__ import annotations

import functools
from typing import Any

from kambda.aws import errors


class Malformed(ValueError):
    """A value on the wire that does not convert to its shape's type; each protocol re-raises it as its own."""


class Serialization(errors.KambdaError):
    code = "SerializationException"
    status = 400
    error_type = "User"


class ValidationError(errors.KambdaError):
    """The Query services' (CloudFormation, STS, SNS) code for a bad parameter."""

    code = "ValidationError"
    status = 400
    error_type = "User"


def missing(service: str, protocol: str, member: str) -> errors.KambdaError:
    """AWS's answer to a request without a required member, in the protocol's code."""
    field = member[:1].lower() + member[1:]
    message = f"1 validation error detected: Value null at '{field}' failed to satisfy constraint: " \
              "Member must not be null"
    if protocol == "query":
        return ValidationError(message)
    if protocol == "rest-xml":
        return InvalidArgument(f"{member} is required")
    return errors.Validation(message)


class MalformedXML(errors.KambdaError):
    code = "MalformedXML"
    status = 400
    error_type = "User"


class InvalidArgument(errors.KambdaError):
    code = "InvalidArgument"
    status = 400
    error_type = "User"


class UnknownOperation(errors.KambdaError):
    """JSON 1.0/1.1: an X-Amz-Target no operation answers (AWS says 400 here; REST says 404)."""

    code = "UnknownOperationException"
    status = 400
    error_type = "User"


class InvalidAction(errors.KambdaError):
    """Query: an ``Action`` the service does not have."""

    code = "InvalidAction"
    status = 400
    error_type = "User"


class MethodNotAllowed(errors.KambdaError):
    """S3: no operation for this method on this resource."""

    code = "MethodNotAllowed"
    status = 405
    error_type = "User"


class InternalFailure(errors.KambdaError):
    code = "InternalFailure"
    status = 500
    error_type = "Service"


class InternalError(errors.KambdaError):
    """S3's word for its own fault."""

    code = "InternalError"
    status = 500
    error_type = "Service"


class EntityTooLarge(errors.KambdaError):
    """S3's word for an over-size body."""

    code = "EntityTooLarge"
    status = 413
    error_type = "User"


class RequestEntityTooLargeQuery(errors.KambdaError):
    code = "RequestEntityTooLarge"
    status = 413
    error_type = "User"


@functools.cache
def _error_class(code: str, status: int) -> type[errors.KambdaError]:
    attrs = {"code": code, "status": status, "error_type": "Service" if status >= 500 else "User"}
    return type(code, (errors.KambdaError,), attrs)


def aws_error(code: str, status: int, message: str, **extra: Any) -> errors.KambdaError:
    """An error with any AWS code (S3 alone has a hundred): one class per (code, status), made once."""
    return _error_class(code, status)(message, **extra)
