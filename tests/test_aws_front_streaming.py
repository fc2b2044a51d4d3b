"""The front door's streaming bodies: an operation registered with ``streaming=True`` reads its body as it arrives,
decoded and verified chunk by chunk, past the size cap the other operations keep; a result may set the status and
an error may carry headers (S3's 206, and a HEAD's ``x-amz-delete-marker``)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import boto3
import botocore.config
import botocore.exceptions
import pytest
from aiohttp import web

from kambda.aws import chunked
from kambda.aws.front import STATUS, Context, Front
from kambda.aws.protocol import faults
from tests.test_aws_chunked import CREDS, Upload

MAX_BODY = 64 * 1024
CONFIG = botocore.config.Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"})


class Server:
    def __init__(self) -> None:
        self.received: dict[str, tuple[int, int, str]] = {}  # key -> (size, largest chunk, sha256)
        self.front = Front(max_body=MAX_BODY, domain="kambda.test",
                           secret_of=lambda key: CREDS.secret_key if key == CREDS.access_key else None)
        self.front.register("s3", "PutObject", self.put_object, streaming=True)
        self.front.register("s3", "PutBucketTagging", self.put_bucket_tagging)
        self.front.register("s3", "GetObject", self.get_object)
        self.front.register("s3", "HeadObject", self.head_object)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""

    async def put_object(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        body = params["Body"]
        assert not isinstance(body, bytes | bytearray)
        size = largest = 0
        digest = hashlib.sha256()
        async for chunk in body:
            size += len(chunk)
            largest = max(largest, len(chunk))
            digest.update(chunk)
        self.received[params["Key"]] = (size, largest, digest.hexdigest())
        return {"ETag": '"e"'}

    async def put_bucket_tagging(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def get_object(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        async def body() -> AsyncIterator[bytes]:
            yield b"part"

        return {"Body": body(), "ContentLength": 4, "ContentRange": "bytes 0-3/10", STATUS: 206}

    async def head_object(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        err = faults.aws_error("NoSuchKey", 404, "The specified key does not exist.")
        err.headers = {"x-amz-delete-marker": "true"}  # type: ignore[attr-defined]
        raise err

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self.front.handle)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def __enter__(self) -> Server:
        self.thread.start()
        assert self.ready.wait(10), "server did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def s3(self) -> Any:
        return boto3.session.Session().client("s3", endpoint_url=self.url, region_name="us-east-1",
                                              aws_access_key_id=CREDS.access_key,
                                              aws_secret_access_key=CREDS.secret_key, config=CONFIG)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server() as running:
        yield running


def test_a_streaming_operation_reads_past_the_cap_a_chunk_at_a_time(server: Server) -> None:
    data = os.urandom(3 * 1024 * 1024)  # 48 times the cap
    server.s3().put_object(Bucket="bkt", Key="big", Body=data)
    size, largest, digest = server.received["big"]
    assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
    assert largest <= MAX_BODY  # never the whole body at once


def test_other_operations_keep_the_cap(server: Server) -> None:
    tags = {"TagSet": [{"Key": f"k{i}", "Value": "v" * 250} for i in range(400)]}  # ~100 KB of XML
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        server.s3().put_bucket_tagging(Bucket="bkt", Tagging=tags)
    assert caught.value.response["Error"]["Code"] == "EntityTooLarge"


def test_a_streamed_body_is_verified_as_it_arrives(server: Server) -> None:
    data = os.urandom(200_000)

    async def send(body: bytes, headers: dict[str, str], key: str) -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session:
            async with session.put(f"{server.url}/{key}", data=body, headers=headers) as response:
                return response.status, await response.read()

    upload = Upload(chunked.SIGNED, data)
    headers = {**dict(upload.headers()), "Host": "vbucket.s3.kambda.test"}
    assert asyncio.run(send(upload.body(), headers, "signed"))[0] == 200
    assert server.received["signed"][0] == len(data)
    status, body = asyncio.run(send(upload.body(tamper=2), headers, "tampered"))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body and "tampered" not in server.received

    def corrupt(request: Any, **_: Any) -> None:
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(b"something else").hexdigest()

    s3 = server.s3()
    s3.meta.events.register("before-send.s3.PutObject", corrupt)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.put_object(Bucket="bkt", Key="mismatch", Body=data)
    assert caught.value.response["Error"]["Code"] == "XAmzContentSHA256Mismatch"


def test_a_result_sets_its_status_and_an_error_its_headers(server: Server) -> None:
    s3 = server.s3()
    got = s3.get_object(Bucket="bkt", Key="k", Range="bytes=0-3")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206 and got["Body"].read() == b"part"
    assert got["ContentRange"] == "bytes 0-3/10"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.head_object(Bucket="bkt", Key="k")
    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
