"""DynamoDB's errors, in the shape its SDKs read (``__type`` and ``message`` of JSON 1.0, HTTP 400)."""

from __future__ import annotations

from typing import Any

from kambda.aws import errors


class DynamoError(errors.KambdaError):
    status = 400
    error_type = "User"


class Validation(DynamoError):
    code = "ValidationException"


class ConditionalCheckFailed(DynamoError):
    code = "ConditionalCheckFailedException"


class ResourceNotFound(DynamoError):
    code = "ResourceNotFoundException"


class ResourceInUse(DynamoError):
    code = "ResourceInUseException"


class TransactionCanceled(DynamoError):
    code = "TransactionCanceledException"


class TransactionConflict(DynamoError):
    code = "TransactionConflictException"


class IdempotentParameterMismatch(DynamoError):
    code = "IdempotentParameterMismatchException"


class ItemCollectionSizeLimitExceeded(DynamoError):
    code = "ItemCollectionSizeLimitExceededException"


class ExpiredIterator(DynamoError):
    code = "ExpiredIteratorException"


class TrimmedDataAccess(DynamoError):
    code = "TrimmedDataAccessException"


class LimitExceeded(DynamoError):
    code = "LimitExceededException"


class DuplicateItem(DynamoError):
    code = "DuplicateItemException"


def validation(message: str) -> Validation:
    return Validation(message)


def not_found(table: str | None = None) -> ResourceNotFound:
    if table is None:
        return ResourceNotFound("Requested resource not found")
    return ResourceNotFound(f"Requested resource not found: Table: {table} not found")


def condition_failed(item: dict[str, Any] | None = None) -> ConditionalCheckFailed:
    if item is None:
        return ConditionalCheckFailed("The conditional request failed")
    return ConditionalCheckFailed("The conditional request failed", Item=item)
