"""S3's bucket and object operations on the front door, over :class:`objects.store.Store`.

Each handler takes botocore's params for its operation and answers botocore's output shape; the REST-XML protocol
does the wire. What is S3's own and lives here: reading ``x-amz-copy-source`` and ``Range``, turning the store's
metadata into headers (``Last-Modified`` as an HTTP date, ``x-amz-meta-*``, checksums only when asked with
``x-amz-checksum-mode: ENABLED``), the listings' markers (ListObjectsV2's continuation token is the base64 of the
last key returned: opaque to the client, nothing kept here) and ``encoding-type=url`` (which boto3 asks for on
every listing and decodes). PutObject and UploadPart take their bodies as streams (``streaming=True``): 5 GB never
sits in memory. Bucket configurations other than versioning and tagging (notifications, CORS, policy, website,
lifecycle) belong to their own modules.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from kambda.aws import auth
from kambda.aws.front import STATUS, Context, Front
from objects import errors
from objects.store import (
    Actor,
    Bucket,
    Conditions,
    ObjectMeta,
    Part,
    Store,
    Upload,
    check_read_conditions,
)

#: The model's member names of the content headers, and the names the store keeps them under.
CONTENT_HEADERS = {
    "ContentType": "Content-Type", "ContentEncoding": "Content-Encoding", "ContentDisposition": "Content-Disposition",
    "ContentLanguage": "Content-Language", "CacheControl": "Cache-Control", "Expires": "Expires",
    "WebsiteRedirectLocation": "WebsiteRedirectLocation", "StorageClass": "StorageClass",
}
#: GetObject's ``response-*`` query parameters, overriding the stored headers in the answer.
RESPONSE_OVERRIDES = {
    "ResponseContentType": "ContentType", "ResponseContentEncoding": "ContentEncoding",
    "ResponseContentDisposition": "ContentDisposition", "ResponseContentLanguage": "ContentLanguage",
    "ResponseCacheControl": "CacheControl", "ResponseExpires": "Expires",
}
CHECKSUMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
DEFAULT_TYPE = "binary/octet-stream"
OWNER = {"ID": "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a", "DisplayName": "kambda"}
MAX_KEYS = 1000
MAX_DELETE = 1000
MAX_METADATA = 2048
#: The largest single PUT or part, as on S3.
MAX_OBJECT = 5 * 1024 ** 3


class MetadataTooLarge(errors.S3Error):
    code = "MetadataTooLarge"
    status = 400




def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _bucket_resources(ctx: Context, params: dict[str, Any]) -> Iterable[str]:
    return (bucket_arn(params["Bucket"]),)


def _object_resources(ctx: Context, params: dict[str, Any]) -> Iterable[str]:
    return (object_arn(params["Bucket"], params["Key"]),)


def _copy_resources(ctx: Context, params: dict[str, Any]) -> Iterable[str]:
    found = [object_arn(params["Bucket"], params["Key"])]
    try:
        bucket, key, _ = parse_copy_source(params.get("CopySource", ""))
    except errors.S3Error:
        return found  # the handler answers the malformed header
    return [*found, object_arn(bucket, key)]


def actor_of(ctx: Context) -> Actor:
    """Who asked: the signing access key (a SigV4 scope's, or the authenticated credential's for SigV2)."""
    credential = ctx.request.get(auth.PRINCIPAL)
    principal = ctx.access_key or (credential.access_key if credential is not None else "")
    return Actor(principal or "anonymous", ctx.request.remote or "", ctx.request_id)


# -- what requests carry ------------------------------------------------------------------------------------------

def parse_copy_source(text: str) -> tuple[str, str, str | None]:
    """``x-amz-copy-source``: ``[/]bucket/key[?versionId=id]``, URL-encoded; (bucket, key, version id)."""
    path, _, query = text.partition("?")
    path = unquote(path).lstrip("/")
    bucket, _, key = path.partition("/")
    version_id = None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "versionId":
            version_id = value
    if not bucket or not key:
        raise errors.InvalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
                                     ArgumentName="x-amz-copy-source", ArgumentValue=text)
    return bucket, key, version_id


def parse_range(text: str | None, size: int) -> tuple[int, int] | None:
    """``Range: bytes=a-b | a- | -n`` as [start, end) of an object of ``size`` bytes; None for no (or an ignored,
    malformed or multi-range) header, as S3 answers those with the whole object; InvalidRange (416) when
    unsatisfiable."""
    if not text:
        return None
    unit, _, spec = text.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) \
            or (last and not last.isdigit()):
        return None
    if not first:  # the last n bytes
        count = int(last)
        if count == 0 or size == 0:
            raise _invalid_range(text, size)
        return max(0, size - count), size
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        return None  # bytes=5-2 is not a range: S3 answers the whole object
    if start >= size:
        raise _invalid_range(text, size)
    return start, min(end, size)


def _invalid_range(text: str, size: int) -> errors.S3Error:
    return errors.InvalidRange("The requested range is not satisfiable", RangeRequested=text,
                               ActualObjectSize=str(size))


def _copy_range(text: str | None, size: int) -> tuple[int, int | None]:
    if not text:
        return 0, None
    unit, _, spec = text.partition("=")
    first, dash, last = spec.partition("-")
    if unit != "bytes" or not dash or not first.isdigit() or not last.isdigit() or int(last) < int(first):
        raise errors.InvalidArgument("The x-amz-copy-source-range value must be of the form bytes=first-last where "
                                     "first and last are the zero-based offsets of the first and last bytes to "
                                     "copy", ArgumentName="x-amz-copy-source-range", ArgumentValue=text)
    if int(last) >= size:
        raise errors.InvalidRange(f"The specified copy range is invalid for the source object size: {size}",
                                  RangeRequested=text, ActualObjectSize=str(size))
    return int(first), int(last) + 1


def when(epoch: float) -> datetime:
    """A stored time as S3 shows it in XML: to the millisecond."""
    millis = int(epoch * 1000)
    return datetime.fromtimestamp(millis // 1000, UTC).replace(microsecond=millis % 1000 * 1000)


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def read_conditions(params: Mapping[str, Any], prefix: str = "") -> Conditions | None:
    found = Conditions(params.get(f"{prefix}IfMatch"), params.get(f"{prefix}IfNoneMatch"),
                       _epoch(params.get(f"{prefix}IfModifiedSince")),
                       _epoch(params.get(f"{prefix}IfUnmodifiedSince")))
    return found if found != Conditions() else None


def write_conditions(params: Mapping[str, Any]) -> Conditions | None:
    if params.get("IfNoneMatch") not in (None, "*"):
        raise errors.NotImplementedS3("A header you provided implies functionality that is not implemented",
                                      Header="If-None-Match")
    found = Conditions(if_match=params.get("IfMatch"), if_none_match=params.get("IfNoneMatch"))
    return found if found != Conditions() else None


def content_headers(params: Mapping[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for member, name in CONTENT_HEADERS.items():
        value = params.get(member)
        if value is None:
            continue
        if isinstance(value, datetime):
            value = email.utils.format_datetime(value, usegmt=True)
        found[name] = str(value)
    return found


def user_metadata(params: Mapping[str, Any]) -> dict[str, str]:
    """``x-amz-meta-*``: at most 2 KB of names and values together, as on S3."""
    metadata = dict(params.get("Metadata") or {})
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size > MAX_METADATA:
        raise MetadataTooLarge("Your metadata headers exceed the maximum allowed metadata size.", Size=str(size),
                               MaxSizeAllowed=str(MAX_METADATA))
    return metadata


def parse_tagging(text: str | None) -> dict[str, str] | None:
    """``x-amz-tagging: k=v&k2=v2`` (URL query encoding)."""
    if text is None:
        return None
    return check_tags(parse_qsl(text, keep_blank_values=True))


def check_tags(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for key, value in pairs:
        if key in tags:
            raise errors.InvalidTag("Cannot provide multiple Tags with the same key", TagKey=key)
        if not key or len(key) > 128:
            raise errors.InvalidTag("The TagKey you have provided is invalid", TagKey=key)
        if len(value) > 256:
            raise errors.InvalidTag("The TagValue you have provided is invalid", TagKey=key, TagValue=value)
        tags[key] = value
    if len(tags) > 10:
        raise errors.InvalidTag("Object tags cannot be greater than 10")
    return tags


def _tag_set(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def _tags_of(tagging: Mapping[str, Any] | None) -> dict[str, str]:
    return check_tags((tag.get("Key", ""), tag.get("Value", "")) for tag in (tagging or {}).get("TagSet", []))


def _check_declared_size(ctx: Context) -> None:
    """EntityTooLarge before a byte is read when the request says it is over 5 GB (the store stops any that grow
    past it anyway)."""
    headers = ctx.request.headers
    declared = headers.get("x-amz-decoded-content-length") or headers.get("Content-Length") or ""
    if declared.isdigit() and int(declared) > MAX_OBJECT:
        raise errors.EntityTooLarge("Your proposed upload exceeds the maximum allowed size", ProposedSize=declared,
                                    MaxSizeAllowed=str(MAX_OBJECT))


def _algorithm_of(ctx: Context, params: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, str]]:
    """The checksums to compute and keep (the SDK's algorithm, a header's, a trailer's) and those claimed."""
    expected = {name: params[f"Checksum{name}"] for name in CHECKSUMS if params.get(f"Checksum{name}")}
    algorithms = dict.fromkeys(expected)
    if params.get("ChecksumAlgorithm"):
        algorithms[str(params["ChecksumAlgorithm"]).upper()] = None
    for trailer in ctx.request.headers.get("x-amz-trailer", "").split(","):
        trailer = trailer.strip().lower()
        if trailer.startswith("x-amz-checksum-"):
            algorithms[trailer[len("x-amz-checksum-"):].upper()] = None
    return tuple(algorithms), expected


def _checksum_fields(checksums: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {f"Checksum{name}": value for name, value in checksums.items() if name in CHECKSUMS}
    if found:
        composite = any("-" in value for value in checksums.values())
        found["ChecksumType"] = "COMPOSITE" if composite else "FULL_OBJECT"
    return found


def _version(meta: ObjectMeta) -> dict[str, str]:
    return {"VersionId": meta.version_id} if meta.version_id != "null" else {}


def _encode(value: str | None, url: bool) -> str | None:
    return quote(value, safe="/") if url and value is not None else value


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _untoken(token: str) -> str:
    try:
        key = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
        if not key:
            raise ValueError(token)
        return key
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise errors.InvalidArgument("The continuation token provided is incorrect",
                                     ArgumentName="continuation-token") from None


def _max_keys(value: int | None, name: str = "max-keys") -> int:
    if value is None:
        return MAX_KEYS
    if value < 0:
        raise errors.InvalidArgument(f"Argument {name} must be an integer between 0 and 2147483647",
                                     ArgumentName=name, ArgumentValue=str(value))
    return min(value, MAX_KEYS)


# -- the operations -----------------------------------------------------------------------------------------------

class S3Api:
    """S3 on the front door: ``S3Api(store).register(front)``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, front: Front) -> None:
        bucket_ops = {
            "CreateBucket": self.create_bucket, "DeleteBucket": self.delete_bucket, "HeadBucket": self.head_bucket,
            "GetBucketLocation": self.get_bucket_location, "ListObjectsV2": self.list_objects_v2,
            "ListObjects": self.list_objects, "ListObjectVersions": self.list_object_versions,
            "PutBucketVersioning": self.put_bucket_versioning, "GetBucketVersioning": self.get_bucket_versioning,
            "ListMultipartUploads": self.list_multipart_uploads, "DeleteObjects": self.delete_objects,
            "PutBucketTagging": self.put_bucket_tagging, "GetBucketTagging": self.get_bucket_tagging,
            "DeleteBucketTagging": self.delete_bucket_tagging,
        }
        for name, handler in bucket_ops.items():
            front.register("s3", name, handler, _bucket_resources)
        front.register("s3", "ListBuckets", self.list_buckets)
        object_ops = {
            "GetObject": self.get_object, "HeadObject": self.head_object, "DeleteObject": self.delete_object,
            "GetObjectAttributes": self.get_object_attributes,
            "CreateMultipartUpload": self.create_multipart_upload,
            "CompleteMultipartUpload": self.complete_multipart_upload,
            "AbortMultipartUpload": self.abort_multipart_upload, "ListParts": self.list_parts,
            "PutObjectTagging": self.put_object_tagging, "GetObjectTagging": self.get_object_tagging,
            "DeleteObjectTagging": self.delete_object_tagging,
        }
        for name, handler in object_ops.items():
            front.register("s3", name, handler, _object_resources)
        front.register("s3", "PutObject", self.put_object, _object_resources, streaming=True)
        front.register("s3", "UploadPart", self.upload_part, _object_resources, streaming=True)
        front.register("s3", "CopyObject", self.copy_object, _copy_resources)
        front.register("s3", "UploadPartCopy", self.upload_part_copy, _copy_resources)

    # -- buckets ---------------------------------------------------------------------------------------------------

    async def create_bucket(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        config = params.get("CreateBucketConfiguration") or {}
        region = config.get("LocationConstraint") or ctx.region
        bucket = await self.store.create_bucket(params["Bucket"], region)
        return {"Location": f"/{bucket.name}", "BucketArn": bucket_arn(bucket.name)}

    async def delete_bucket(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        await self.store.delete_bucket(params["Bucket"])
        return {}

    async def head_bucket(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        bucket = await self.store.bucket(params["Bucket"])
        return {"BucketRegion": bucket.region, "BucketArn": bucket_arn(bucket.name)}

    async def get_bucket_location(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        bucket = await self.store.bucket(params["Bucket"])
        return {"LocationConstraint": None if bucket.region == "us-east-1" else bucket.region}

    async def list_buckets(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("Prefix") or ""
        region = params.get("BucketRegion")
        found: list[Bucket] = [b for b in await self.store.buckets()
                               if b.name.startswith(prefix) and (region is None or b.region == region)]
        after = params.get("ContinuationToken")
        if after:
            found = [b for b in found if b.name > after]
        limit = params.get("MaxBuckets")
        result: dict[str, Any] = {"Owner": OWNER}
        if limit is not None and len(found) > limit:
            found = found[:limit]
            result["ContinuationToken"] = found[-1].name
        result["Buckets"] = [{"Name": b.name, "CreationDate": when(b.created), "BucketRegion": b.region} for b in found]
        if prefix:
            result["Prefix"] = prefix
        return result

    async def put_bucket_versioning(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        status = (params.get("VersioningConfiguration") or {}).get("Status")
        if status not in ("Enabled", "Suspended"):
            raise errors.MalformedXML("The XML you provided was not well-formed or did not validate against our "
                                      "published schema")
        await self.store.set_versioning(params["Bucket"], status)
        return {}

    async def get_bucket_versioning(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        bucket = await self.store.bucket(params["Bucket"])
        return {"Status": bucket.versioning} if bucket.versioning else {}

    async def put_bucket_tagging(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        tags = _tags_of(params.get("Tagging"))
        if len(tags) > 50:
            raise errors.InvalidTag("Bucket tag count cannot be greater than 50")
        await self.store.put_config(params["Bucket"], "tagging", tags)
        return {}

    async def get_bucket_tagging(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        tags = await self.store.get_config(params["Bucket"], "tagging")
        if tags is None:
            raise errors.NoSuchTagSet("The TagSet does not exist", BucketName=params["Bucket"])
        return {"TagSet": _tag_set(tags)}

    async def delete_bucket_tagging(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        await self.store.put_config(params["Bucket"], "tagging", None)
        return {}

    # -- objects ---------------------------------------------------------------------------------------------------

    async def put_object(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        _check_declared_size(ctx)
        algorithms, expected = _algorithm_of(ctx, params)
        written = await self.store.put(
            params["Bucket"], params["Key"], params["Body"], headers=content_headers(params),
            metadata=user_metadata(params), tags=parse_tagging(params.get("Tagging")),
            content_md5=params.get("ContentMD5"), checksum_algorithms=algorithms, expected_checksums=expected,
            conditions=write_conditions(params), actor=actor_of(ctx))
        meta = written.meta
        return {"ETag": meta.etag, "Size": meta.size, **_version(meta), **_checksum_fields(meta.checksums)}

    async def _head(self, params: Mapping[str, Any]) -> ObjectMeta:
        try:
            return await self.store.head(params["Bucket"], params["Key"], params.get("VersionId"))
        except errors.S3Error as err:
            if getattr(err, "delete_marker", False):
                err.headers = {"x-amz-delete-marker": "true",  # type: ignore[attr-defined]
                               "x-amz-version-id": str(getattr(err, "version_id", "null"))}
            raise

    def _described(self, meta: ObjectMeta, params: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "ETag": meta.etag, "LastModified": meta.last_modified, "ContentLength": meta.size,
            "AcceptRanges": "bytes", "Metadata": dict(meta.metadata), **_version(meta),
        }
        for member, name in CONTENT_HEADERS.items():
            value = meta.headers.get(name)
            if value is not None and not (member == "StorageClass" and value == "STANDARD"):
                result[member] = value
        result.setdefault("ContentType", DEFAULT_TYPE)
        for query, member in RESPONSE_OVERRIDES.items():
            if params.get(query) is not None:
                result[member] = params[query]
        if meta.tags:
            result["TagCount"] = len(meta.tags)
        if meta.parts:
            result["PartsCount"] = meta.parts
        if str(params.get("ChecksumMode", "")).upper() == "ENABLED":
            result.update(_checksum_fields(meta.checksums))
        return result

    def _checked(self, meta: ObjectMeta, params: Mapping[str, Any]) -> None:
        try:
            check_read_conditions(meta, read_conditions(params))
        except errors.S3Error as err:
            if err.status == 304:
                err.headers = {"ETag": meta.etag,  # type: ignore[attr-defined]
                               "Last-Modified": email.utils.formatdate(meta.last_modified, usegmt=True),
                               **({"x-amz-version-id": meta.version_id} if meta.version_id != "null" else {})}
            raise

    async def _span(self, meta: ObjectMeta, params: Mapping[str, Any]) -> tuple[int, int] | None:
        """The bytes asked for: a part of a multipart object (``partNumber``), a ``Range``, or None: all."""
        number = params.get("PartNumber")
        if number is not None:
            if params.get("Range"):
                raise errors.InvalidRequest("Cannot specify both Range header and partNumber query parameter")
            span = await self.store.part_span(meta, number)
            return span if meta.parts > 1 else None
        return parse_range(params.get("Range"), meta.size)

    async def get_object(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        meta = await self._head(params)
        self._checked(meta, params)
        span = await self._span(meta, params)
        result = self._described(meta, params)
        start, end = span or (0, meta.size)
        if span is not None:
            self._partial(result, meta, start, end)
        result["Body"] = self.store.read(meta, start, end)
        return result

    async def head_object(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        meta = await self._head(params)
        self._checked(meta, params)
        span = await self._span(meta, params)
        result = self._described(meta, params)
        if span is not None:
            self._partial(result, meta, *span)
        return result

    @staticmethod
    def _partial(result: dict[str, Any], meta: ObjectMeta, start: int, end: int) -> None:
        """206 for a range or a part, even one that is all of the object, as S3 answers."""
        result[STATUS] = 206
        result["ContentRange"] = f"bytes {start}-{end - 1}/{meta.size}"
        result["ContentLength"] = end - start
        for name in CHECKSUMS:  # the whole object's checksums do not describe a part of it
            result.pop(f"Checksum{name}", None)
        result.pop("ChecksumType", None)

    async def get_object_attributes(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        """The attributes ``x-amz-object-attributes`` names (ETag unquoted, as S3 gives it here)."""
        meta = await self._head(params)
        wanted = {str(a).strip() for a in params.get("ObjectAttributes") or ()}
        unknown = wanted - {"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"}
        if not wanted or unknown:
            raise errors.InvalidArgument("Invalid attribute name specified.", ArgumentName="x-amz-object-attributes",
                                         ArgumentValue=",".join(sorted(unknown)))
        result: dict[str, Any] = {"LastModified": meta.last_modified, **_version(meta)}
        if "ETag" in wanted:
            result["ETag"] = meta.etag.strip('"')
        if "Checksum" in wanted and meta.checksums:
            result["Checksum"] = _checksum_fields(meta.checksums)
        if "ObjectParts" in wanted and meta.parts:
            result["ObjectParts"] = {"TotalPartsCount": meta.parts}
        if "StorageClass" in wanted:
            result["StorageClass"] = meta.headers.get("StorageClass", "STANDARD")
        if "ObjectSize" in wanted:
            result["ObjectSize"] = meta.size
        return result

    async def delete_object(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        meta, marker = await self.store.delete(params["Bucket"], params["Key"], params.get("VersionId"),
                                               actor=actor_of(ctx))
        result: dict[str, Any] = {}
        if marker:
            result["DeleteMarker"] = True
        if meta is not None and (meta.version_id != "null" or params.get("VersionId")):
            result["VersionId"] = meta.version_id
        return result

    async def delete_objects(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        request = params.get("Delete") or {}
        objects = request.get("Objects") or []
        if not objects or len(objects) > MAX_DELETE:
            raise errors.MalformedXML("The XML you provided was not well-formed or did not validate against our "
                                      "published schema")
        await self.store.bucket(params["Bucket"])
        deleted: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        actor = actor_of(ctx)
        for item in objects:
            key, version_id = item.get("Key", ""), item.get("VersionId")
            try:
                meta, marker = await self.store.delete(params["Bucket"], key, version_id, actor=actor)
            except errors.S3Error as err:
                failed.append({"Key": key, "Code": err.code, "Message": err.message,
                               **({"VersionId": version_id} if version_id else {})})
                continue
            entry: dict[str, Any] = {"Key": key}
            if version_id:
                entry["VersionId"] = version_id
            if marker and meta is not None:
                entry["DeleteMarker"] = True
                entry["DeleteMarkerVersionId"] = meta.version_id
            deleted.append(entry)
        result: dict[str, Any] = {"Errors": failed} if failed else {}
        if not request.get("Quiet"):
            result["Deleted"] = deleted
        return result

    async def copy_object(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        source = await self._copy_source(params)
        directive = (params.get("MetadataDirective") or "COPY").upper()
        tagging = (params.get("TaggingDirective") or "COPY").upper()
        if directive not in ("COPY", "REPLACE") or tagging not in ("COPY", "REPLACE"):
            raise errors.InvalidArgument("Unknown metadata directive.", ArgumentName="x-amz-metadata-directive")
        headers = metadata = None
        if directive == "REPLACE":
            headers, metadata = content_headers(params), user_metadata(params)
        elif params.get("StorageClass") or params.get("WebsiteRedirectLocation"):
            headers = {**source.headers, **content_headers({k: params.get(k) for k in
                                                             ("StorageClass", "WebsiteRedirectLocation")})}
        tags = parse_tagging(params.get("Tagging")) or {} if tagging == "REPLACE" else dict(source.tags)
        if (source.bucket, source.key) == (params["Bucket"], params["Key"]) and directive == "COPY" \
                and headers is None and tagging == "COPY":
            raise errors.InvalidRequest("This copy request is illegal because it is trying to copy an object to "
                                        "itself without changing the object's metadata, storage class, website "
                                        "redirect location or encryption attributes.")
        written = await self.store.copy(source, params["Bucket"], params["Key"], headers=headers,
                                        metadata=metadata, tags=tags, conditions=write_conditions(params),
                                        actor=actor_of(ctx))
        meta = written.meta
        result: dict[str, Any] = {
            "CopyObjectResult": {"ETag": meta.etag, "LastModified": when(meta.last_modified),
                                 **_checksum_fields(meta.checksums)},
            **_version(meta),
        }
        if source.version_id != "null":
            result["CopySourceVersionId"] = source.version_id
        return result

    async def _copy_source(self, params: Mapping[str, Any]) -> ObjectMeta:
        bucket, key, version_id = parse_copy_source(params.get("CopySource") or "")
        try:
            source = await self.store.head(bucket, key, version_id)
        except errors.S3Error as err:
            if err.code == "MethodNotAllowed":  # a delete marker by version id
                raise errors.InvalidRequest("The source of a copy request may not specifically refer to a delete "
                                            "marker by version id.") from None
            raise
        try:
            check_read_conditions(source, read_conditions(params, "CopySource"))
        except errors.S3Error as err:
            if err.status == 304:  # a copy's If-None-Match / If-Modified-Since fail as 412
                which = "If-None-Match" if params.get("CopySourceIfNoneMatch") else "If-Modified-Since"
                raise errors.precondition_failed(f"x-amz-copy-source-{which}") from None
            raise
        return source

    async def list_objects_v2(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        url = params.get("EncodingType") == "url"
        prefix, delimiter = params.get("Prefix") or "", params.get("Delimiter") or ""
        start_after = params.get("StartAfter") or ""
        token = params.get("ContinuationToken")
        after = max(start_after, _untoken(token)) if token else start_after
        max_keys = _max_keys(params.get("MaxKeys"))
        await self.store.bucket(params["Bucket"])
        listing = await self.store.list(params["Bucket"], prefix=prefix, delimiter=delimiter, start_after=after,
                                        max_keys=max_keys)
        result = self._listed(params, listing.objects, listing.common_prefixes, url,
                              bool(params.get("FetchOwner")))
        result.update({"IsTruncated": listing.truncated, "MaxKeys": max_keys,
                       "KeyCount": len(listing.objects) + len(listing.common_prefixes)})
        if token:
            result["ContinuationToken"] = token
        if start_after:
            result["StartAfter"] = _encode(start_after, url)
        if listing.truncated and listing.next_marker is not None:
            result["NextContinuationToken"] = _token(listing.next_marker)
        return result

    async def list_objects(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        url = params.get("EncodingType") == "url"
        prefix, delimiter = params.get("Prefix") or "", params.get("Delimiter") or ""
        marker = params.get("Marker") or ""
        max_keys = _max_keys(params.get("MaxKeys"))
        await self.store.bucket(params["Bucket"])
        listing = await self.store.list(params["Bucket"], prefix=prefix, delimiter=delimiter, start_after=marker,
                                        max_keys=max_keys)
        result = self._listed(params, listing.objects, listing.common_prefixes, url, True)
        result.update({"IsTruncated": listing.truncated, "MaxKeys": max_keys, "Marker": _encode(marker, url)})
        if listing.truncated and delimiter and listing.next_marker is not None:
            result["NextMarker"] = _encode(listing.next_marker, url)
        return result

    def _listed(self, params: Mapping[str, Any], objects: list[ObjectMeta], prefixes: list[str], url: bool,
                owner: bool) -> dict[str, Any]:
        contents = []
        for meta in objects:
            entry: dict[str, Any] = {"Key": _encode(meta.key, url), "LastModified": when(meta.last_modified),
                                     "ETag": meta.etag, "Size": meta.size,
                                     "StorageClass": meta.headers.get("StorageClass", "STANDARD")}
            if meta.checksums:
                entry["ChecksumAlgorithm"] = sorted(meta.checksums)
                entry["ChecksumType"] = _checksum_fields(meta.checksums)["ChecksumType"]
            if owner:
                entry["Owner"] = OWNER
            contents.append(entry)
        result: dict[str, Any] = {"Name": params["Bucket"], "Prefix": _encode(params.get("Prefix") or "", url),
                                  "Contents": contents,
                                  "CommonPrefixes": [{"Prefix": _encode(p, url)} for p in prefixes]}
        if params.get("Delimiter"):
            result["Delimiter"] = _encode(params["Delimiter"], url)
        if url:
            result["EncodingType"] = "url"
        return result

    async def list_object_versions(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        url = params.get("EncodingType") == "url"
        key_marker, version_marker = params.get("KeyMarker") or "", params.get("VersionIdMarker") or ""
        if version_marker and not key_marker:
            raise errors.InvalidArgument("A version-id marker cannot be specified without a key marker.",
                                         ArgumentName="version-id-marker", ArgumentValue=version_marker)
        max_keys = _max_keys(params.get("MaxKeys"))
        await self.store.bucket(params["Bucket"])
        listing = await self.store.list_versions(
            params["Bucket"], prefix=params.get("Prefix") or "", delimiter=params.get("Delimiter") or "",
            key_marker=key_marker, version_id_marker=version_marker, max_keys=max_keys)
        versions, markers = [], []
        for meta in listing.objects:
            entry: dict[str, Any] = {"Key": _encode(meta.key, url), "VersionId": meta.version_id,
                                     "IsLatest": meta.is_latest, "LastModified": when(meta.last_modified),
                                     "Owner": OWNER}
            if meta.delete_marker:
                markers.append(entry)
            else:
                entry.update({"ETag": meta.etag, "Size": meta.size,
                              "StorageClass": meta.headers.get("StorageClass", "STANDARD")})
                versions.append(entry)
        result: dict[str, Any] = {
            "Name": params["Bucket"], "Prefix": _encode(params.get("Prefix") or "", url),
            "KeyMarker": _encode(key_marker, url), "VersionIdMarker": version_marker, "MaxKeys": max_keys,
            "IsTruncated": listing.truncated, "Versions": versions, "DeleteMarkers": markers,
            "CommonPrefixes": [{"Prefix": _encode(p, url)} for p in listing.common_prefixes],
        }
        if params.get("Delimiter"):
            result["Delimiter"] = _encode(params["Delimiter"], url)
        if url:
            result["EncodingType"] = "url"
        if listing.truncated:
            result["NextKeyMarker"] = _encode(listing.next_marker, url)
            if listing.next_version_marker:
                result["NextVersionIdMarker"] = listing.next_version_marker
        return result

    # -- tagging ---------------------------------------------------------------------------------------------------

    async def put_object_tagging(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        meta = await self.store.set_tags(params["Bucket"], params["Key"], params.get("VersionId"),
                                         _tags_of(params.get("Tagging")), actor=actor_of(ctx))
        return _version(meta)

    async def get_object_tagging(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        meta = await self._head(params)
        return {"TagSet": _tag_set(meta.tags), **_version(meta)}

    async def delete_object_tagging(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        meta = await self.store.set_tags(params["Bucket"], params["Key"], params.get("VersionId"), None,
                                         actor=actor_of(ctx))
        return _version(meta)

    # -- multipart -------------------------------------------------------------------------------------------------

    async def create_multipart_upload(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        algorithm = params.get("ChecksumAlgorithm")
        upload = await self.store.create_upload(
            params["Bucket"], params["Key"], headers=content_headers(params), metadata=user_metadata(params),
            tags=parse_tagging(params.get("Tagging")), checksum_algorithm=str(algorithm).upper() if algorithm else None)
        result: dict[str, Any] = {"Bucket": upload.bucket, "Key": upload.key, "UploadId": upload.upload_id}
        if upload.checksum_algorithm:
            result["ChecksumAlgorithm"] = upload.checksum_algorithm
            result["ChecksumType"] = params.get("ChecksumType") or (
                "FULL_OBJECT" if upload.checksum_algorithm == "CRC64NVME" else "COMPOSITE")
        return result

    async def _upload(self, params: Mapping[str, Any]) -> Upload:
        return await self.store.upload(params["Bucket"], params["Key"], params["UploadId"])

    async def upload_part(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        _check_declared_size(ctx)
        upload = await self._upload(params)
        _, expected = _algorithm_of(ctx, params)
        part = await self.store.put_part(upload, params["PartNumber"], params["Body"],
                                         content_md5=params.get("ContentMD5"), expected_checksums=expected)
        return {"ETag": part.etag, **_part_checksums(part)}

    async def upload_part_copy(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        upload = await self._upload(params)
        source = await self._copy_source(params)
        start, end = _copy_range(params.get("CopySourceRange"), source.size)
        part = await self.store.copy_part(upload, params["PartNumber"], source, start, end)
        result: dict[str, Any] = {"CopyPartResult": {"ETag": part.etag, "LastModified": when(part.last_modified),
                                                     **_part_checksums(part)}}
        if source.version_id != "null":
            result["CopySourceVersionId"] = source.version_id
        return result

    async def complete_multipart_upload(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        upload = await self._upload(params)
        given = (params.get("MultipartUpload") or {}).get("Parts") or []
        parts = [(int(p.get("PartNumber", 0)), str(p.get("ETag", ""))) for p in given]
        written = await self.store.complete(upload, parts, conditions=write_conditions(params),
                                            actor=actor_of(ctx))
        meta = written.meta
        return {"Location": f"/{meta.bucket}/{quote(meta.key)}", "Bucket": meta.bucket, "Key": meta.key,
                "ETag": meta.etag, **_version(meta), **_checksum_fields(meta.checksums)}

    async def abort_multipart_upload(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        await self.store.abort(await self._upload(params))
        return {}

    async def list_parts(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        upload = await self._upload(params)
        marker = params.get("PartNumberMarker") or 0
        max_parts = _max_keys(params.get("MaxParts"), "max-parts")
        parts, truncated = await self.store.parts(upload, marker=marker, max_parts=max_parts)
        result: dict[str, Any] = {
            "Bucket": upload.bucket, "Key": upload.key, "UploadId": upload.upload_id, "PartNumberMarker": marker,
            "MaxParts": max_parts, "IsTruncated": truncated, "StorageClass": "STANDARD", "Initiator": OWNER,
            "Owner": OWNER,
            "Parts": [{"PartNumber": p.number, "LastModified": when(p.last_modified), "ETag": p.etag, "Size": p.size,
                       **_part_checksums(p)} for p in parts],
        }
        if parts:
            result["NextPartNumberMarker"] = parts[-1].number
        if upload.checksum_algorithm:
            result["ChecksumAlgorithm"] = upload.checksum_algorithm
        return result

    async def list_multipart_uploads(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        url = params.get("EncodingType") == "url"
        max_uploads = _max_keys(params.get("MaxUploads"), "max-uploads")
        await self.store.bucket(params["Bucket"])
        uploads, truncated = await self.store.uploads(
            params["Bucket"], prefix=params.get("Prefix") or "", key_marker=params.get("KeyMarker") or "",
            upload_id_marker=params.get("UploadIdMarker") or "", max_uploads=max_uploads)
        result: dict[str, Any] = {
            "Bucket": params["Bucket"], "KeyMarker": _encode(params.get("KeyMarker") or "", url),
            "UploadIdMarker": params.get("UploadIdMarker") or "", "MaxUploads": max_uploads,
            "IsTruncated": truncated, "Prefix": _encode(params.get("Prefix") or "", url),
            "Uploads": [{"UploadId": u.upload_id, "Key": _encode(u.key, url), "Initiated": when(u.initiated),
                         "StorageClass": "STANDARD", "Owner": OWNER, "Initiator": OWNER,
                         **({"ChecksumAlgorithm": u.checksum_algorithm} if u.checksum_algorithm else {})}
                        for u in uploads],
        }
        if url:
            result["EncodingType"] = "url"
        if truncated and uploads:
            result["NextKeyMarker"] = _encode(uploads[-1].key, url)
            result["NextUploadIdMarker"] = uploads[-1].upload_id
        return result


def _part_checksums(part: Part) -> dict[str, str]:
    return {f"Checksum{name}": value for name, value in part.checksums.items() if name in CHECKSUMS}
