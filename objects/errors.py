"""S3's errors, with S3's codes, statuses, messages and extra elements (``BucketName``, ``Key`` ...)."""

from __future__ import annotations

from typing import Any

from kambda.aws.chunked import (  # noqa: F401  (one place for the errors the body reader raises)
    BadDigest,
    IncompleteBody,
    InvalidRequest,
    S3Error,
    SignatureDoesNotMatch,
)


def _error(name: str, status: int) -> type[S3Error]:
    return type(name, (S3Error,), {"code": name, "status": status,
                                   "error_type": "Service" if status >= 500 else "User"})


NoSuchBucket = _error("NoSuchBucket", 404)
NoSuchKey = _error("NoSuchKey", 404)
NoSuchVersion = _error("NoSuchVersion", 404)
NoSuchUpload = _error("NoSuchUpload", 404)
NoSuchTagSet = _error("NoSuchTagSet", 404)
NoSuchCORSConfiguration = _error("NoSuchCORSConfiguration", 404)
NoSuchBucketPolicy = _error("NoSuchBucketPolicy", 404)
NoSuchWebsiteConfiguration = _error("NoSuchWebsiteConfiguration", 404)
NoSuchLifecycleConfiguration = _error("NoSuchLifecycleConfiguration", 404)
BucketNotEmpty = _error("BucketNotEmpty", 409)
BucketAlreadyOwnedByYou = _error("BucketAlreadyOwnedByYou", 409)
BucketAlreadyExists = _error("BucketAlreadyExists", 409)
InvalidBucketName = _error("InvalidBucketName", 400)
KeyTooLongError = _error("KeyTooLongError", 400)
InvalidArgument = _error("InvalidArgument", 400)
InvalidRange = _error("InvalidRange", 416)
PreconditionFailed = _error("PreconditionFailed", 412)
ConditionalRequestConflict = _error("ConditionalRequestConflict", 409)
EntityTooSmall = _error("EntityTooSmall", 400)
EntityTooLarge = _error("EntityTooLarge", 400)
InvalidPart = _error("InvalidPart", 400)
InvalidPartOrder = _error("InvalidPartOrder", 400)
InvalidPartNumber = _error("InvalidPartNumber", 416)
InvalidDigest = _error("InvalidDigest", 400)
MalformedXML = _error("MalformedXML", 400)
MalformedPolicy = _error("MalformedPolicy", 400)
InvalidTag = _error("InvalidTag", 400)
MethodNotAllowed = _error("MethodNotAllowed", 405)
AccessDenied = _error("AccessDenied", 403)
NotImplementedS3 = _error("NotImplemented", 501)
ServiceUnavailable = _error("ServiceUnavailable", 503)
InternalError = _error("InternalError", 500)


def no_such_bucket(name: str) -> S3Error:
    return NoSuchBucket("The specified bucket does not exist", BucketName=name)


def no_such_key(key: str, **extra: Any) -> S3Error:
    return NoSuchKey("The specified key does not exist.", Key=key, **extra)


def no_such_upload(upload_id: str) -> S3Error:
    return NoSuchUpload("The specified upload does not exist. The upload ID may be invalid, or the upload may "
                        "have been aborted or completed.", UploadId=upload_id)


def precondition_failed(condition: str) -> S3Error:
    return PreconditionFailed("At least one of the pre-conditions you specified did not hold", Condition=condition)


class NotModified(S3Error):
    """Not an error to the client: a conditional GET/HEAD answered 304 with no body (``check_read_conditions``)."""

    code = "NotModified"
    status = 304


def key_too_long(size: int) -> S3Error:
    return KeyTooLongError("Your key is too long", Size=str(size), MaxSizeAllowed="1024")


def invalid_bucket_name(name: str) -> S3Error:
    return InvalidBucketName("The specified bucket is not valid.", BucketName=name)


def no_such_version(key: str, version_id: str) -> S3Error:
    return NoSuchVersion("The specified version does not exist.", Key=key, VersionId=version_id)
