"""S3 through boto3 against a running platform: buckets, objects, ranges, conditions, listings, versions, copies,
multipart uploads, checksums, tagging, presigned URLs, path-style and virtual-host addressing, and S3's errors."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from kambda.aws import chunked, sigv4
from tests.conftest import Platform, invoke_json, make_zip, unique, wait_for

MiB = 1024 * 1024


def client(url: str, style: str = "path", key: str = "x", secret: str = "x", **config: Any) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}, read_timeout=120, connect_timeout=10,
                                      s3={"addressing_style": style}, **config))


def virtual_client(platform: Platform) -> Any:
    """Virtual-hosted addressing (``<bucket>.s3.localhost``): the Host header names the bucket while the
    connection goes to the platform's address (``*.localhost`` need not resolve here)."""
    address = urlsplit(platform.url).netloc
    port = address.rpartition(":")[2]
    s3 = client(f"http://s3.localhost:{port}", "virtual")

    def redirect(request: Any, **_: Any) -> None:
        parts = urlsplit(request.url)
        request.headers["Host"] = parts.netloc
        request.url = request.url.replace(parts.netloc, address, 1)

    s3.meta.events.register("before-send.s3", redirect)
    return s3


def chunked_put(url: str, bucket: str, key: str, data: bytes, mode: str, *, key_id: str = "x",
                secret: str = "x", checksum: str | None = None, tamper: int | None = None,
                algorithm: str = "crc32") -> tuple[int, bytes]:
    """A PUT with an aws-chunked body as the SDKs send it over TLS: signed chunks (chained from the request's
    signature) or unsigned ones, and a CRC32 trailer when ``checksum`` is given (its value as sent)."""
    headers = {"X-Amz-Content-SHA256": mode, "Content-Encoding": "aws-chunked",
               "X-Amz-Decoded-Content-Length": str(len(data))}
    if checksum is not None:
        headers["X-Amz-Trailer"] = f"x-amz-checksum-{algorithm}"
    request = AWSRequest("PUT", f"{url}/{bucket}/{key}", headers=headers)
    SigV4Auth(Credentials(key_id, secret), "s3", "us-east-1").add_auth(request)
    request.headers["X-Amz-Content-SHA256"] = mode
    signed = sigv4.parse(request.headers, {})
    assert signed is not None
    signer = chunked.ChunkSigner.for_request(signed, secret)
    out, previous = [], signed.signature
    pieces = [data[i:i + 65536] for i in range(0, len(data), 65536)] + [b""]
    for number, piece in enumerate(pieces):
        if mode == chunked.UNSIGNED_TRAILER:
            out.append(f"{len(piece):x}\r\n".encode())
        else:
            previous = signer.chunk(previous, hashlib.sha256(piece).hexdigest())
            out.append(f"{len(piece):x};chunk-signature={previous}\r\n".encode())
        if number == tamper:
            piece = piece[:-1] + bytes([piece[-1] ^ 1])
        if piece:
            out.append(piece + b"\r\n")
    if checksum is not None:
        line = f"x-amz-checksum-{algorithm}:{checksum}\n".encode()
        out.append(line.replace(b"\n", b"\r\n"))
        if mode != chunked.UNSIGNED_TRAILER:
            out.append(f"x-amz-trailer-signature:{signer.trailer(previous, line)}\r\n".encode())
    out.append(b"\r\n")
    prepared = request.prepare()
    sent_headers = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    sent = urllib.request.Request(prepared.url, data=b"".join(out), method="PUT", headers=sent_headers)
    try:
        with urllib.request.urlopen(sent, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def crc32_of(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def code_of(caught: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(caught.value.response["Error"]["Code"])


@pytest.fixture(scope="module")
def s3(platform: Platform) -> Any:
    return client(platform.url)


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    name = unique("bkt")
    s3.create_bucket(Bucket=name)
    yield name
    empty(s3, name)


def empty(s3: Any, name: str) -> None:
    with_versions = s3.list_object_versions(Bucket=name)
    for item in with_versions.get("Versions", []) + with_versions.get("DeleteMarkers", []):
        s3.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])
    for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=name)


# -- buckets ------------------------------------------------------------------------------------------------------

def test_buckets_are_made_listed_located_and_deleted(s3: Any) -> None:
    name = unique("bkt")
    s3.create_bucket(Bucket=name)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.create_bucket(Bucket=name)
    assert code_of(caught) == "BucketAlreadyOwnedByYou"
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    other = unique("bkt")
    s3.create_bucket(Bucket=other, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert s3.get_bucket_location(Bucket=other)["LocationConstraint"] == "eu-west-1"
    in_region = [b["Name"] for b in s3.list_buckets(BucketRegion="eu-west-1")["Buckets"]]
    assert other in in_region and name not in in_region
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.delete_bucket(Bucket=name)
    assert code_of(caught) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    s3.delete_bucket(Bucket=other)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.head_bucket(Bucket=name)
    assert code_of(caught) == "404"
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket=name)
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.delete_bucket(Bucket=name)
    assert code_of(caught) == "NoSuchBucket"


def test_invalid_bucket_names_are_refused(s3: Any) -> None:
    for bad in ("ab", "Upper-Case", "under_score", "-leading", "a" * 64, "192.168.5.4"):
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            s3.create_bucket(Bucket=bad)
        assert code_of(caught) == "InvalidBucketName", bad


def test_bucket_tagging(s3: Any, bucket: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code_of(caught) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "team", "Value": "a"}]
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError):
        s3.get_bucket_tagging(Bucket=bucket)


# -- objects ------------------------------------------------------------------------------------------------------

def test_put_get_head_delete_with_headers_and_metadata(s3: Any, bucket: str) -> None:
    key = "dir/ü x+y%.txt"
    put = s3.put_object(Bucket=bucket, Key=key, Body=b"hello world", ContentType="text/plain",
                        ContentEncoding="identity", ContentDisposition="attachment", ContentLanguage="en",
                        CacheControl="no-cache", Expires=datetime(2030, 1, 1, tzinfo=UTC),
                        Metadata={"Who": "me", "n": "1"})
    assert put["ETag"] == f'"{hashlib.md5(b"hello world").hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == b"hello world"
    assert got["ContentType"] == "text/plain" and got["ContentEncoding"] == "identity"
    assert got["ContentDisposition"] == "attachment" and got["ContentLanguage"] == "en"
    assert got["CacheControl"] == "no-cache" and got["Expires"] == datetime(2030, 1, 1, tzinfo=UTC)
    assert got["Metadata"] == {"who": "me", "n": "1"} and got["ETag"] == put["ETag"]
    assert got["ContentLength"] == 11 and got["AcceptRanges"] == "bytes"
    assert abs((got["LastModified"] - datetime.now(UTC)).total_seconds()) < 120
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == 11 and head["ETag"] == put["ETag"] and head["Metadata"]["who"] == "me"
    overridden = s3.get_object(Bucket=bucket, Key=key, ResponseContentType="application/json",
                               ResponseContentDisposition="inline")
    assert overridden["ContentType"] == "application/json" and overridden["ContentDisposition"] == "inline"
    assert overridden["Body"].read() == b"hello world"
    assert s3.delete_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key=key)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.head_object(Bucket=bucket, Key=key)
    assert code_of(caught) == "404"
    s3.delete_object(Bucket=bucket, Key=key)  # deleting nothing is no error


def test_empty_and_large_objects_round_trip(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b"" and got["ContentLength"] == 0
    data = os.urandom(3 * MiB + 17)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data
    assert s3.head_object(Bucket=bucket, Key="big")["ContentLength"] == len(data)


def test_ranges(s3: Any, bucket: str) -> None:
    data = bytes(range(256)) * 2048  # 512 KiB: several chunks
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    for header, want in (("bytes=0-9", data[:10]), ("bytes=100-", data[100:]), ("bytes=-5", data[-5:]),
                         ("bytes=262140-262150", data[262140:262151]), ("bytes=500000-9999999", data[500000:]),
                         ("bytes=-9999999", data)):
        got = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, header
        assert got["Body"].read() == want, header
        start = len(data) - len(want) if header.startswith("bytes=-") else int(header[6:].split("-")[0])
        assert got["ContentRange"] == f"bytes {start}-{start + len(want) - 1}/{len(data)}"
        assert got["ContentLength"] == len(want)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={len(data)}-")
    assert code_of(caught) == "InvalidRange"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    assert caught.value.response["Error"]["ActualObjectSize"] == str(len(data))
    whole = s3.get_object(Bucket=bucket, Key="r", Range="bytes=9-2")  # not a range: the whole object
    assert whole["ResponseMetadata"]["HTTPStatusCode"] == 200 and whole["Body"].read() == data
    assert s3.get_object(Bucket=bucket, Key="r", PartNumber=1)["Body"].read() == data


def test_conditional_reads(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"v1")["ETag"]
    past, future = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=1)
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"v1"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"nope"')
    assert code_of(caught) == "PreconditionFailed"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.head_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=past)["Body"].read() == b"v1"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert code_of(caught) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=future)["Body"].read() == b"v1"


def test_conditional_writes(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert code_of(caught) == "PreconditionFailed"
    etag = s3.head_object(Bucket=bucket, Key="once")["ETag"]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="once", Body=b"third", IfMatch='"0123"')
    assert code_of(caught) == "PreconditionFailed"
    s3.put_object(Bucket=bucket, Key="once", Body=b"fourth", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"fourth"


def test_checksums_are_verified_stored_and_returned(s3: Any, bucket: str) -> None:
    data = b"checksummed bytes" * 1000
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    put = s3.put_object(Bucket=bucket, Key="crc", Body=data, ChecksumAlgorithm="CRC32")
    assert put["ChecksumCRC32"] == crc
    got = s3.get_object(Bucket=bucket, Key="crc", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == crc and got["Body"].read() == data
    assert "ChecksumCRC32" not in s3.head_object(Bucket=bucket, Key="crc")
    assert s3.head_object(Bucket=bucket, Key="crc", ChecksumMode="ENABLED")["ChecksumCRC32"] == crc
    checked = s3.get_object_attributes(Bucket=bucket, Key="crc", ObjectAttributes=["Checksum"])
    assert checked["Checksum"]["ChecksumCRC32"] == crc and "ETag" not in checked
    s3.put_object(Bucket=bucket, Key="sha", Body=data, ChecksumSHA256=sha)
    assert s3.head_object(Bucket=bucket, Key="sha", ChecksumMode="ENABLED")["ChecksumSHA256"] == sha
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5", Body=data, ContentMD5=md5)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="md5", Body=data, ContentMD5=base64.b64encode(b"0" * 16).decode())
    assert code_of(caught) == "BadDigest"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="sha2", Body=data,
                      ChecksumSHA256=base64.b64encode(hashlib.sha256(b"other").digest()).decode())
    assert code_of(caught) in ("BadDigest", "XAmzContentSHA256Mismatch", "InvalidRequest")
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="sha2")


def test_object_tagging(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b=two%20words")
    tagged = s3.get_object(Bucket=bucket, Key="t")
    assert tagged["TagCount"] == 2 and tagged["Body"].read() == b"x"
    tags = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "1"), ("b", "two words")]
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "c", "Value": "3"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "c", "Value": "3"}]
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    assert "TagCount" not in s3.head_object(Bucket=bucket, Key="t")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.put_object_tagging(Bucket=bucket, Key="t",
                              Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]})
    assert code_of(caught) == "InvalidTag"
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object_tagging(Bucket=bucket, Key="missing")


def test_delete_objects_reports_each_key(s3: Any, bucket: str) -> None:
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"x")
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"d/{i}"} for i in range(3)]
                                                      + [{"Key": "d/never"}]})
    assert sorted(d["Key"] for d in answer["Deleted"]) == ["d/0", "d/1", "d/2", "d/never"]
    assert not answer.get("Errors")
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/3"}], "Quiet": True})
    assert "Deleted" not in quiet
    left = s3.list_objects_v2(Bucket=bucket, Prefix="d/")
    assert [o["Key"] for o in left["Contents"]] == ["d/4"]
    mixed = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k" * 1100}, {"Key": "d/4"}]})
    assert [(e["Key"], e["Code"]) for e in mixed["Errors"]] == [("k" * 1100, "KeyTooLongError")]
    assert [d["Key"] for d in mixed["Deleted"]] == ["d/4"]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="d/")


def test_copy_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source bytes", ContentType="text/plain",
                  Metadata={"m": "1"}, Tagging="t=1")
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]
    assert copied["CopyObjectResult"]["ETag"] == etag
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"source bytes" and got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"m": "1"} and got["TagCount"] == 1
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src", MetadataDirective="REPLACE",
                   ContentType="application/x-new", Metadata={"n": "2"}, TaggingDirective="REPLACE",
                   Tagging="a=1&b=2")
    replaced = s3.head_object(Bucket=bucket, Key="dst2")
    assert replaced["ContentType"] == "application/x-new" and replaced["Metadata"] == {"n": "2"}
    assert replaced["TagCount"] == 2
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src")
    assert code_of(caught) == "InvalidRequest"
    s3.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src", MetadataDirective="REPLACE",
                   Metadata={"again": "yes"})
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"again": "yes"}
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/src", CopySourceIfMatch='"other"')
    assert code_of(caught) == "PreconditionFailed"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/src", CopySourceIfNoneMatch=etag)
    assert code_of(caught) == "PreconditionFailed"
    s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/src", CopySourceIfMatch=etag)
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.copy_object(Bucket=bucket, Key="y", CopySource=f"{bucket}/missing")


def test_aws_chunked_uploads_with_trailing_checksums(platform: Platform, s3: Any, bucket: str) -> None:
    data = os.urandom(300_000)
    status, body = chunked_put(platform.url, bucket, "trailer", data, chunked.UNSIGNED_TRAILER,
                               checksum=crc32_of(data))
    assert status == 200, body
    head = s3.head_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc32_of(data) and head["ContentLength"] == len(data)
    assert s3.get_object(Bucket=bucket, Key="trailer")["Body"].read() == data
    status, body = chunked_put(platform.url, bucket, "bad-trailer", data, chunked.UNSIGNED_TRAILER,
                               checksum=crc32_of(b"other"))
    assert status == 400 and b"<Code>BadDigest</Code>" in body
    # Signed chunks reach a platform without credentials too (no signature is checked there, nor are they).
    status, body = chunked_put(platform.url, bucket, "signed", data, chunked.SIGNED_TRAILER, checksum=crc32_of(data))
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="signed")["Body"].read() == data
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="bad-trailer")
    crc64 = base64.b64encode(chunked.crc64nvme(data).to_bytes(8, "big")).decode()
    status, body = chunked_put(platform.url, bucket, "crc64", data, chunked.UNSIGNED_TRAILER, checksum=crc64,
                               algorithm="crc64nvme")
    assert status == 200, body
    assert s3.head_object(Bucket=bucket, Key="crc64", ChecksumMode="ENABLED")["ChecksumCRC64NVME"] == crc64
    status, body = chunked_put(platform.url, bucket, "crc64-bad", data, chunked.UNSIGNED_TRAILER,
                               checksum=base64.b64encode(b"\0" * 8).decode(), algorithm="crc64nvme")
    assert status == 400 and b"<Code>BadDigest</Code>" in body
    put = s3.put_object(Bucket=bucket, Key="crc64-boto3", Body=data, ChecksumAlgorithm="CRC64NVME")
    assert put["ChecksumCRC64NVME"] == crc64
    got = s3.get_object(Bucket=bucket, Key="crc64-boto3", ChecksumMode="ENABLED")  # boto3 validates it
    assert got["Body"].read() == data and got["ChecksumCRC64NVME"] == crc64


HOSTILE = [
    ("GET", "?list-type=2&max-keys=abc", None, {}, 400, "InvalidArgument"),
    ("GET", "/k?partNumber=abc", None, {}, 400, "InvalidArgument"),
    ("GET", "/k", None, {"If-Modified-Since": "garbage"}, 400, "InvalidArgument"),
    ("PUT", "/k2", b"x", {"x-amz-tagging": "a=1&a=2"}, 400, "InvalidTag"),
    ("PUT", "/" + "k" * 1100, b"x", {}, 400, "KeyTooLongError"),
    ("GET", "/k?versionId=garbage", None, {}, 404, "NoSuchVersion"),
    ("PUT", "/k3?partNumber=1&uploadId=garbage", b"x", {}, 404, "NoSuchUpload"),
    ("POST", "/k3?uploadId=garbage", b"<CompleteMultipartUpload><Part>", {}, 400, "MalformedXML"),
    ("POST", "?delete", b"not xml at all", {}, 400, "MalformedXML"),
    ("PUT", "/k4", b"", {"x-amz-copy-source": "no-key-here"}, 400, "InvalidArgument"),
    ("PUT", "/k5", b"x", {"Content-MD5": "notbase64!!"}, 400, "InvalidDigest"),
    ("PUT", "/k5", b"x", {"x-amz-checksum-crc32": "zzz"}, 400, "InvalidRequest"),
    ("PUT", "/k5", b"x", {"x-amz-meta-big": "v" * 3000}, 400, "MetadataTooLarge"),
    ("PUT", "?versioning", b"<VersioningConfiguration><Status>Maybe</Status></VersioningConfiguration>", {}, 400,
     "MalformedXML"),
    ("GET", "?versions&version-id-marker=x", None, {}, 400, "InvalidArgument"),
    ("GET", "?uploads&max-uploads=-1", None, {}, 400, "InvalidArgument"),
    ("PUT", "/k8", b"zz\r\nhello", {"x-amz-content-sha256": chunked.UNSIGNED_TRAILER,
                                     "x-amz-decoded-content-length": "5"}, 403, "InvalidChunkSizeError"),
    ("PUT", "/k9", b"0123456789", {"x-amz-content-sha256": "0" * 64}, 400, "XAmzContentSHA256Mismatch"),
    ("GET", "/k?partNumber=1", None, {"Range": "bytes=0-1"}, 400, "InvalidRequest"),
    ("PUT", "/huge", b"0\r\n\r\n", {"x-amz-content-sha256": chunked.UNSIGNED_TRAILER,
                                      "x-amz-decoded-content-length": str(6 * 1024 ** 3)}, 400, "EntityTooLarge"),
]


@pytest.mark.parametrize(("method", "path", "data", "headers", "status", "code"), HOSTILE)
def test_bad_requests_get_s3_errors(platform: Platform, s3: Any, bucket: str, method: str, path: str,
                                    data: bytes | None, headers: dict[str, str], status: int, code: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    request = urllib.request.Request(f"{platform.url}/{bucket}{path}", data=data, method=method,
                                     headers={"Content-Type": "", **headers})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    with caught.value as answer:
        body = answer.read()
        assert (answer.code, f"<Code>{code}</Code>".encode() in body) == (status, True), body


# -- listings -----------------------------------------------------------------------------------------------------

def test_list_objects_v2_pages_prefixes_and_encodes(s3: Any, bucket: str) -> None:
    keys = ["a", "b/1", "b/2", "b/3/x", "c d+e", "c/é", "z"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == sorted(keys)
    rolled = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in rolled["Contents"]] == ["a", "c d+e", "z"]
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["b/", "c/"]
    assert rolled["KeyCount"] == 5
    inside = s3.list_objects_v2(Bucket=bucket, Prefix="b/", Delimiter="/")
    assert [o["Key"] for o in inside["Contents"]] == ["b/1", "b/2"]
    assert [p["Prefix"] for p in inside["CommonPrefixes"]] == ["b/3/"]
    seen, token, pages = [], None, 0
    while True:
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, **({"ContinuationToken": token} if token else {}))
        seen += [o["Key"] for o in page["Contents"]]
        pages += 1
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == sorted(keys) and pages == 4
    rolled_pages, token = [], None
    while True:  # a page may end on a common prefix: the next one starts after all of it
        page = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=1,
                                  **({"ContinuationToken": token} if token else {}))
        rolled_pages += [o["Key"] for o in page.get("Contents", [])]
        rolled_pages += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert rolled_pages == ["a", "b/", "c d+e", "c/", "z"]
    v1_pages, marker = [], ""
    while True:
        page = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=1, Marker=marker)
        v1_pages += [o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        marker = page["NextMarker"]
    assert v1_pages == rolled_pages
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="b/3/x")
    assert [o["Key"] for o in after["Contents"]] == ["c d+e", "c/é", "z"]
    owned = s3.list_objects_v2(Bucket=bucket, MaxKeys=1, FetchOwner=True)
    assert owned["Contents"][0]["Owner"]["ID"] and owned["IsTruncated"]
    assert "Owner" not in s3.list_objects_v2(Bucket=bucket, MaxKeys=1)["Contents"][0]
    raw = s3.list_objects_v2(Bucket=bucket, Prefix="c", EncodingType="url")  # asked for: boto3 leaves it encoded
    assert [o["Key"] for o in raw["Contents"]] == ["c%20d%2Be", "c/%C3%A9"]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="!!!")
    assert code_of(caught) == "InvalidArgument"


def test_list_objects_v1_markers(s3: Any, bucket: str) -> None:
    for key in ("a/1", "a/2", "b", "c/1", "d"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    page = s3.list_objects(Bucket=bucket, MaxKeys=2)
    assert [o["Key"] for o in page["Contents"]] == ["a/1", "a/2"] and page["IsTruncated"]
    assert "NextMarker" not in page  # only with a delimiter
    rest = s3.list_objects(Bucket=bucket, Marker="a/2")
    assert [o["Key"] for o in rest["Contents"]] == ["b", "c/1", "d"]
    rolled = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=2)
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["a/"] and rolled["NextMarker"] == "b"
    nxt = s3.list_objects(Bucket=bucket, Delimiter="/", Marker=rolled["NextMarker"])
    assert [o["Key"] for o in nxt["Contents"]] == ["d"] and [p["Prefix"] for p in nxt["CommonPrefixes"]] == ["c/"]


def test_versioning_and_delete_markers(s3: Any, bucket: str) -> None:
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="v", Body=b"two")["VersionId"]
    assert v1 != v2 and v1 != "null"
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    old = s3.get_object(Bucket=bucket, Key="v", VersionId=v1)
    assert old["Body"].read() == b"one" and old["VersionId"] == v1
    gone = s3.delete_object(Bucket=bucket, Key="v")
    assert gone["DeleteMarker"] is True and gone["VersionId"]
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="v")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.head_object(Bucket=bucket, Key="v")
    headers = caught.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert code_of(caught) == "404" and headers["x-amz-delete-marker"] == "true"
    listed = s3.list_object_versions(Bucket=bucket, Prefix="v")
    assert [v["VersionId"] for v in listed["Versions"]] == [v2, v1]
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [gone["VersionId"]]
    assert listed["DeleteMarkers"][0]["IsLatest"] and not listed["Versions"][0]["IsLatest"]
    paged = s3.list_object_versions(Bucket=bucket, Prefix="v", MaxKeys=1)
    assert paged["IsTruncated"] and paged["NextKeyMarker"] == "v"
    more = s3.list_object_versions(Bucket=bucket, Prefix="v", KeyMarker=paged["NextKeyMarker"],
                                   VersionIdMarker=paged["NextVersionIdMarker"])
    assert len(more.get("Versions", [])) + len(more.get("DeleteMarkers", [])) == 2
    s3.copy_object(Bucket=bucket, Key="restored", CopySource={"Bucket": bucket, "Key": "v", "VersionId": v1})
    assert s3.get_object(Bucket=bucket, Key="restored")["Body"].read() == b"one"
    s3.delete_object(Bucket=bucket, Key="v", VersionId=gone["VersionId"])
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    batch = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "v"}, {"Key": "v", "VersionId": v1}]})
    marked = next(d for d in batch["Deleted"] if "VersionId" not in d)
    assert marked["DeleteMarker"] is True and marked["DeleteMarkerVersionId"]
    assert any(d.get("VersionId") == v1 for d in batch["Deleted"])
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket, Prefix="v")["Versions"]] == [v2]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"


# -- multipart ----------------------------------------------------------------------------------------------------

def test_multipart_upload(s3: Any, bucket: str) -> None:
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ContentType="application/x-mp",
                                        Metadata={"k": "v"})["UploadId"]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload]
    etags = []
    for number, data in enumerate(parts_data, 1):
        etags.append(s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=number, Body=data)["ETag"])
    assert etags[0] == f'"{hashlib.md5(parts_data[0]).hexdigest()}"'
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3] and listed["Parts"][2]["Size"] == 1234
    first = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload, MaxParts=2)
    assert first["IsTruncated"] and first["NextPartNumberMarker"] == 2
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": '"0000"'}]})
    assert code_of(caught) == "InvalidPart"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    md5s = b"".join(hashlib.md5(d).digest() for d in parts_data)
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["Body"].read() == b"".join(parts_data) and got["ContentType"] == "application/x-mp"
    assert got["Metadata"] == {"k": "v"} and got["ETag"] == done["ETag"]
    middle = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={5 * MiB - 3}-{5 * MiB + 2}")
    assert middle["Body"].read() == parts_data[0][-3:] + parts_data[1][:3]
    second = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert second["Body"].read() == parts_data[1] and second["PartsCount"] == 3
    assert second["ContentRange"] == f"bytes {5 * MiB}-{10 * MiB - 1}/{10 * MiB + 1234}"
    assert s3.head_object(Bucket=bucket, Key="mp", PartNumber=3)["ContentLength"] == 1234
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert code_of(caught) == "InvalidPartNumber"
    attributes = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=[
        "ETag", "ObjectParts", "StorageClass", "ObjectSize"])
    assert attributes["ETag"] == done["ETag"].strip('"') and attributes["ObjectSize"] == 10 * MiB + 1234
    assert attributes["ObjectParts"]["TotalPartsCount"] == 3 and attributes["StorageClass"] == "STANDARD"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["Colour"])
    assert code_of(caught) == "InvalidArgument"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload)
    assert code_of(caught) == "NoSuchUpload"


def test_multipart_errors_and_abort(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="small", UploadId=upload, PartNumber=n, Body=b"tiny")["ETag"]
             for n in (1, 2)]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]})
    assert code_of(caught) == "EntityTooSmall"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}]})
    assert code_of(caught) == "InvalidPartOrder"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.upload_part(Bucket=bucket, Key="small", UploadId=upload, PartNumber=10001, Body=b"x")
    assert code_of(caught) == "InvalidArgument"
    s3.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=upload)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.upload_part(Bucket=bucket, Key="small", UploadId=upload, PartNumber=3, Body=b"x")
    assert code_of(caught) == "NoSuchUpload"
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="small")


def test_upload_part_copy(s3: Any, bucket: str) -> None:
    source = os.urandom(6 * MiB)
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    whole = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=upload, PartNumber=1,
                                CopySource={"Bucket": bucket, "Key": "source"})
    ranged = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=upload, PartNumber=2,
                                 CopySource=f"{bucket}/source", CopySourceRange="bytes=10-109")
    assert ranged["CopyPartResult"]["ETag"] == f'"{hashlib.md5(source[10:110]).hexdigest()}"'
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=upload, PartNumber=3,
                            CopySource=f"{bucket}/source", CopySourceRange=f"bytes=0-{len(source)}")
    assert code_of(caught) == "InvalidRange"
    s3.complete_multipart_upload(Bucket=bucket, Key="assembled", UploadId=upload, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": whole["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": ranged["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="assembled")["Body"].read() == source + source[10:110]


def test_boto3_transfer_uses_multipart(s3: Any, bucket: str, tmp_path: Path) -> None:
    path = tmp_path / "upload.bin"
    data = os.urandom(12 * MiB + 5)
    path.write_bytes(data)
    s3.upload_file(str(path), bucket, "transfer.bin")
    head = s3.head_object(Bucket=bucket, Key="transfer.bin")
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-2"')
    back = tmp_path / "download.bin"
    s3.download_file(bucket, "transfer.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()


# -- addressing and URLs ------------------------------------------------------------------------------------------

def test_virtual_host_addressing(platform: Platform, s3: Any, bucket: str) -> None:
    virtual = virtual_client(platform)
    virtual.put_object(Bucket=bucket, Key="vh/key", Body=b"virtual")
    assert s3.get_object(Bucket=bucket, Key="vh/key")["Body"].read() == b"virtual"
    assert virtual.get_object(Bucket=bucket, Key="vh/key")["Body"].read() == b"virtual"
    assert [o["Key"] for o in virtual.list_objects_v2(Bucket=bucket)["Contents"]] == ["vh/key"]
    assert virtual.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.mark.parametrize("version", ["s3", "s3v4"])
def test_presigned_get_and_put(platform: Platform, s3: Any, bucket: str, version: str) -> None:
    """boto3 (and ``aws s3 presign``) presign with signature version 2 unless told ``s3v4``: both work."""
    signer = client(platform.url, signature_version=version)
    signer.put_object(Bucket=bucket, Key="shared file.txt", Body=b"presigned")  # v2 in the header, or v4
    url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared file.txt"},
                                    ExpiresIn=300)
    assert ("X-Amz-Signature=" in url) == (version == "s3v4")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"presigned"
    put_url = signer.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "uploaded"},
                                            ExpiresIn=300)
    request = urllib.request.Request(put_url, data=b"from a URL", method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    assert s3.get_object(Bucket=bucket, Key="uploaded")["Body"].read() == b"from a URL"


FUNCTION = """
import boto3, botocore

def handler(event, context):
    s3 = boto3.client("s3", config=botocore.config.Config(retries={"max_attempts": 1}))
    out = {"endpoint": s3.meta.endpoint_url}
    for what, call in (("put", lambda: s3.put_object(Bucket=event["bucket"], Key="allowed/f", Body=b"from a function")),
                       ("get", lambda: s3.get_object(Bucket=event["bucket"], Key="allowed/f")["Body"].read().decode()),
                       ("denied", lambda: s3.put_object(Bucket=event["bucket"], Key="other/f", Body=b"x"))):
        try:
            answer = call()
            out[what] = answer if isinstance(answer, str) else "allowed"
        except botocore.exceptions.ClientError as exc:
            out[what] = exc.response["Error"]["Code"]
    return out
"""


def test_a_function_reaches_s3_with_its_role(platform: Platform, s3: Any, bucket: str, create: Any) -> None:
    """AWS_ENDPOINT_URL_S3 points a function's boto3 at kambda, and its role's policy decides, object by object
    (the operations' resources are ``arn:aws:s3:::<bucket>/<key>``)."""
    iam = boto3.client("iam", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x", config=Config(retries={"max_attempts": 1}))
    role = unique("s3role")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="allowed", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
                                                "Resource": f"arn:aws:s3:::{bucket}/allowed/*"}]}))
    name = create(FUNCTION, Role=arn, Timeout=30)
    lam = platform.lambda_client()

    def called() -> dict[str, Any]:
        response, out = invoke_json(lam, name, {"bucket": bucket})
        assert "FunctionError" not in response, out
        assert isinstance(out, dict)
        return out

    out = wait_for(lambda: (o := called())["put"] == "allowed" and o, 30, what="the role's policy to apply")
    assert isinstance(out, dict) and out["endpoint"] == platform.url
    assert out["get"] == "from a function" and out["denied"] == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="allowed/f")["Body"].read() == b"from a function"


# -- signed requests ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    state = tmp_path_factory.mktemp("kambda-s3-auth")
    creds = state / "credentials.json"
    creds.write_text(json.dumps({"credentials": [{"accessKeyId": "S3ADMIN", "secretAccessKey": "s3-secret",
                                                  "role": "admin"}]}))
    running = Platform(state / "state", ["--credentials", str(creds)]).start()
    yield running
    running.stop()


def test_signed_requests_and_presigned_urls_are_verified(secured: Any, tmp_path: Path) -> None:
    s3 = client(secured.url, key="S3ADMIN", secret="s3-secret")
    name = unique("sec")
    s3.create_bucket(Bucket=name)
    key = "a dir/ü+x=y&z.txt"
    data = os.urandom(200_000)
    s3.put_object(Bucket=name, Key=key, Body=data)
    assert s3.get_object(Bucket=name, Key=key)["Body"].read() == data
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(9 * MiB))
    s3.upload_file(str(path), name, "multi")
    assert s3.head_object(Bucket=name, Key="multi")["ContentLength"] == 9 * MiB
    for version in ("s3", "s3v4"):
        signer = client(secured.url, key="S3ADMIN", secret="s3-secret", signature_version=version)
        url = signer.generate_presigned_url("get_object", Params={"Bucket": name, "Key": key}, ExpiresIn=300)
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == data
        mark = "X-Amz-Signature=" if version == "s3v4" else "Signature="
        bad = url.replace(mark, mark + "0")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(bad, timeout=30)
        with caught.value as refused:
            assert refused.code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in refused.read(), version
        put_url = signer.generate_presigned_url("put_object", Params={"Bucket": name, "Key": f"put-{version}"},
                                                ExpiresIn=300)
        request = urllib.request.Request(put_url, data=b"put", method="PUT", headers={"Content-Type": ""})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        assert s3.get_object(Bucket=name, Key=f"put-{version}")["Body"].read() == b"put"
    for mode in (chunked.SIGNED, chunked.SIGNED_TRAILER):
        trailer = crc32_of(data) if mode == chunked.SIGNED_TRAILER else None
        status, body = chunked_put(secured.url, name, "chunked", data, mode, key_id="S3ADMIN", secret="s3-secret",
                                   checksum=trailer)
        assert status == 200, body
        assert s3.get_object(Bucket=name, Key="chunked")["Body"].read() == data
        status, body = chunked_put(secured.url, name, "tampered", data, mode, key_id="S3ADMIN", secret="s3-secret",
                                   checksum=trailer, tamper=1)
        assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=name, Key="tampered")
    v2 = client(secured.url, key="S3ADMIN", secret="s3-secret", signature_version="s3")  # Authorization: AWS k:sig
    v2.put_object(Bucket=name, Key="v2 key+ü", Body=b"version 2", ContentType="text/plain", Metadata={"a": "b"})
    assert v2.get_object(Bucket=name, Key="v2 key+ü", VersionId="null")["Body"].read() == b"version 2"
    assert "v2 key+ü" in [o["Key"] for o in v2.list_objects(Bucket=name)["Contents"]]
    v2.delete_object(Bucket=name, Key="v2 key+ü")
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        client(secured.url, key="S3ADMIN", secret="nope", signature_version="s3").get_object(Bucket=name, Key=key)
    assert code_of(denied) == "SignatureDoesNotMatch"
    wrong = client(secured.url, key="S3ADMIN", secret="not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        wrong.get_object(Bucket=name, Key=key)
    assert code_of(denied) == "SignatureDoesNotMatch"
    unsigned = urllib.request.Request(f"{secured.url}/{name}/x", method="GET")
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(unsigned, timeout=30)
    with anonymous.value as refused:
        assert refused.code == 403 and b"<Code>AccessDenied</Code>" in refused.read()


ROLE_CHUNKS = """
import hashlib, hmac, os, urllib.error, urllib.request
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

def handler(event, context):
    region, mode = os.environ["AWS_REGION"], "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    creds = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                        os.environ["AWS_SESSION_TOKEN"])
    data = event["data"].encode()
    url = os.environ["AWS_ENDPOINT_URL_S3"] + "/" + event["bucket"] + "/" + event["key"]
    request = AWSRequest("PUT", url, headers={"X-Amz-Content-SHA256": mode, "Content-Encoding": "aws-chunked",
                                              "X-Amz-Decoded-Content-Length": str(len(data))})
    SigV4Auth(creds, "s3", region).add_auth(request)
    request.headers["X-Amz-Content-SHA256"] = mode
    previous, amz_date = request.headers["Authorization"].rsplit("Signature=", 1)[1], request.headers["X-Amz-Date"]
    scope = amz_date[:8] + "/" + region + "/s3/aws4_request"
    key = ("AWS4" + creds.secret_key).encode()
    for part in (amz_date[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    body = []
    for piece in (data[:1000], data[1000:], b""):
        text = "\\n".join(("AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, hashlib.sha256(b"").hexdigest(),
                          hashlib.sha256(piece).hexdigest()))
        previous = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        if event.get("tamper") and piece:
            piece = piece[:-1] + b"?"
        body.append(f"{len(piece):x};chunk-signature={previous}\\r\\n".encode() + (piece + b"\\r\\n" if piece else b""))
    body.append(b"\\r\\n")
    headers = {k: v for k, v in request.prepare().headers.items() if k.lower() != "content-length"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, b"".join(body), headers, method="PUT")) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
"""


def test_a_role_session_signs_streamed_chunks(secured: Any) -> None:
    """A function's execution-role credentials sign an aws-chunked upload: the chunks verify with the session's
    secret (remembered when its request verified), and a tampered chunk is refused."""
    kw: dict[str, Any] = {"endpoint_url": secured.url, "region_name": "us-east-1", "aws_access_key_id": "S3ADMIN",
                          "aws_secret_access_key": "s3-secret", "config": Config(retries={"max_attempts": 1})}
    iam, lam = boto3.client("iam", **kw), boto3.client("lambda", **kw)
    s3 = client(secured.url, key="S3ADMIN", secret="s3-secret")
    bucket, role = unique("role"), unique("chunks")
    s3.create_bucket(Bucket=bucket)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="put", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject",
                                                "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    name = unique("chunker")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=arn, Timeout=30,
                        Code={"ZipFile": make_zip({"app.py": ROLE_CHUNKS})})
    data = "x" * 2500
    try:
        status = wait_for(lambda: (got := invoke_json(lam, name, {"bucket": bucket, "key": "k", "data": data})[1])
                          != 403 and got, 30, what="the role's policy to apply")
        assert status == 200
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data.encode()
        assert invoke_json(lam, name, {"bucket": bucket, "key": "bad", "data": data, "tamper": True})[1] == 403
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket=bucket, Key="bad")
    finally:
        lam.delete_function(FunctionName=name)


# -- throughput (printed, not asserted) ---------------------------------------------------------------------------

def test_throughput_is_measured(s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    small = b"k" * 1024
    clients = [client(s3.meta.endpoint_url) for _ in range(16)]
    count = 50

    def work(index: int) -> None:
        c = clients[index]
        for i in range(count):
            c.put_object(Bucket=bucket, Key=f"small/{index}/{i}", Body=small)
            assert c.get_object(Bucket=bucket, Key=f"small/{index}/{i}")["Body"].read() == small

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(work, range(16)))
    small_rate = 16 * count * 2 / (time.monotonic() - started)
    big = os.urandom(100 * MiB)
    started = time.monotonic()
    s3.put_object(Bucket=bucket, Key="big100", Body=big)
    put_rate = 100 / (time.monotonic() - started)
    started = time.monotonic()
    assert hashlib.md5(s3.get_object(Bucket=bucket, Key="big100")["Body"].read()).digest() == \
        hashlib.md5(big).digest()
    get_rate = 100 / (time.monotonic() - started)
    with capsys.disabled():
        print(f"\nS3 1 KiB PUT+GET at 16 clients: {small_rate:.0f} requests/s; 100 MB PUT {put_rate:.1f} MB/s, "
              f"GET {get_rate:.1f} MB/s")


# -- PostgreSQL ---------------------------------------------------------------------------------------------------

def test_the_same_api_on_postgresql(tmp_path: Path) -> None:
    """KAMBDA_TABLES_DSN names PostgreSQL: S3's metadata lives there too, keys still in UTF-8 byte order."""
    from contextlib import ExitStack

    from tests.ddb import start_platform

    with ExitStack() as stack:
        running = start_platform("postgresql", tmp_path / "state", stack)
        s3 = client(running.url)
        name = unique("pg")
        s3.create_bucket(Bucket=name)
        keys = ["a/1", "a/2", "b", "z", "é", "\U0001f600", "Z"]
        for key in keys:
            s3.put_object(Bucket=name, Key=key, Body=key.encode())
        listed = s3.list_objects_v2(Bucket=name, Delimiter="/")
        assert [o["Key"] for o in listed["Contents"]] == sorted((k for k in keys if "/" not in k),
                                                                key=lambda k: k.encode())
        assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["a/"]
        data = os.urandom(5 * MiB + 1)
        s3.put_object(Bucket=name, Key="big", Body=data)
        assert s3.get_object(Bucket=name, Key="big", Range="bytes=-10")["Body"].read() == data[-10:]
        upload = s3.create_multipart_upload(Bucket=name, Key="mp")["UploadId"]
        etags = [s3.upload_part(Bucket=name, Key="mp", UploadId=upload, PartNumber=n, Body=part)["ETag"]
                 for n, part in enumerate((data, b"tail"), 1)]
        s3.complete_multipart_upload(Bucket=name, Key="mp", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
        assert s3.get_object(Bucket=name, Key="mp")["Body"].read() == data + b"tail"
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket=name, Key="b", Body=b"again")
        versions = s3.list_object_versions(Bucket=name, Prefix="b")["Versions"]
        assert [v["Key"] for v in versions] == ["b", "b", "big"] and versions[0]["IsLatest"]
        empty(s3, name)
