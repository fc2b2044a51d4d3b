"""The front door end to end: a real aiohttp server on port 0 running Front with tiny handlers, called by real
boto3 clients of each protocol; errors arrive as the clients' modeled exceptions."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import aiohttp
import boto3
import botocore.config
import botocore.exceptions
import pytest
from aiohttp import web

from kambda.aws import errors, sts
from kambda.aws.front import Context, Front
from kambda.aws.protocol import faults
from tests.test_aws_chunked import CREDS, DATA, Upload

ACCOUNT = "123456789012"
MAX_BODY = 256 * 1024
NO_RETRY = botocore.config.Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"})


class Server:
    def __init__(self) -> None:
        self.actions: list[str] = []
        self.resources: list[list[str]] = []
        self.objects: dict[tuple[str, str], bytes] = {}
        self.front = Front(account=ACCOUNT, authorize=self.authorize, max_body=MAX_BODY, domain="kambda.test",
                           secret_of=lambda key: CREDS.secret_key if key == CREDS.access_key else None)
        add_handlers(self)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""

    async def authorize(self, request: web.Request, action: str, resources: Iterable[str]) -> None:
        self.actions.append(action)
        self.resources.append(sorted(resources))
        if action == "lambda:DeleteFunction":
            raise errors.AccessDenied("not you")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(client_max_size=MAX_BODY * 2)
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

    def client(self, service: str) -> Any:
        return boto3.session.Session().client(service, endpoint_url=self.url, region_name="eu-west-1",
                                              aws_access_key_id=CREDS.access_key,
                                              aws_secret_access_key=CREDS.secret_key, config=NO_RETRY)


def add_handlers(server: Server) -> None:
    front = server.front
    sts.register(front, ACCOUNT)

    @front.operation("lambda", "GetFunction")
    async def get_function(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        if params["FunctionName"] == "boom":
            raise RuntimeError("secret internals")
        raise errors.function_not_found(f"arn:aws:lambda:{ctx.region}:{ctx.account}:function:{params['FunctionName']}")

    @front.operation("lambda", "Invoke")
    async def invoke(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {"StatusCode": 200, "Payload": params["Payload"][::-1], "ExecutedVersion": "$LATEST",
                "FunctionError": "Unhandled" if params.get("Qualifier") == "bad" else None}

    @front.operation("lambda", "CreateFunction")
    async def create_function(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {"FunctionName": params["FunctionName"], "CodeSize": len(params["Code"]["ZipFile"])}

    def function_arn(ctx: Context, params: dict[str, Any]) -> list[str]:
        return [f"arn:aws:lambda:{ctx.region}:{ctx.account}:function:{params['FunctionName']}"]

    @front.operation("lambda", "DeleteFunction", resources=function_arn)
    async def delete_function(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    @front.operation("events", "PutEvents")
    async def put_events(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {"FailedEntryCount": 0, "Entries": [{"EventId": f"e{i}"} for i, _ in enumerate(params["Entries"])]}

    @front.operation("events", "DescribeRule")
    async def describe_rule(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        raise errors.ResourceNotFound(f"Rule {params['Name']} does not exist on EventBus default.")

    @front.operation("stepfunctions", "DescribeExecution")
    async def describe_execution(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        raise faults.aws_error("ExecutionDoesNotExist", 400, f"Execution Does Not Exist: '{params['executionArn']}'")

    @front.operation("cloudformation", "DescribeStacks")
    async def describe_stacks(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        raise faults.ValidationError(f"Stack with id {params['StackName']} does not exist")

    @front.operation("dynamodb", "GetItem")
    async def get_item(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {"Item": {**params["Key"], "b": {"B": b"\x00\xff"}, "ns": {"NS": ["1", "2"]}}}

    @front.operation("s3", "HeadBucket")
    async def head_bucket(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        raise faults.aws_error("NoSuchBucket", 404, "The specified bucket does not exist", BucketName=params["Bucket"])

    @front.operation("s3", "PutObject")
    async def put_object(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        server.objects[(params["Bucket"], params["Key"])] = params.get("Body", b"")
        return {"ETag": '"etag"'}

    @front.operation("s3", "HeadObject")
    async def head_object(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        data = server.objects[(params["Bucket"], params["Key"])]
        return {"ContentLength": len(data), "ETag": '"etag"', "Metadata": {"who": "front"}}

    @front.operation("s3", "GetObject")
    async def get_object(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        data = server.objects.get((params["Bucket"], params["Key"]))
        if data is None:
            raise faults.aws_error("NoSuchKey", 404, "The specified key does not exist.", Key=params["Key"])

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 1000):
                yield data[i:i + 1000]

        return {"Body": chunks(), "ContentLength": len(data), "Metadata": {"who": "front"}}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server() as running:
        yield running


def test_rest_json_lambda(server: Server) -> None:
    lam = server.client("lambda")
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as caught:
        lam.get_function(FunctionName="nope")
    assert caught.value.response["Error"]["Message"] == (
        "Function not found: arn:aws:lambda:eu-west-1:123456789012:function:nope")
    answer = lam.invoke(FunctionName="f", Payload=b"abc", Qualifier="bad")
    assert answer["Payload"].read() == b"cba" and answer["FunctionError"] == "Unhandled"
    assert answer["StatusCode"] == 200 and answer["ExecutedVersion"] == "$LATEST"
    created = lam.create_function(FunctionName="f", Role="arn:aws:iam::1:role/r", Code={"ZipFile": b"PK" * 10})
    assert created["CodeSize"] == 20 and created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert "lambda:Invoke" in server.actions and "lambda:CreateFunction" in server.actions


def test_authorize_hook_refuses(server: Server) -> None:
    lam = server.client("lambda")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        lam.delete_function(FunctionName="f")
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # the hook saw the resource the operation's params name; other operations act on "*"
    assert server.resources[server.actions.index("lambda:DeleteFunction")] == [
        f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:f"]  # the region it was signed for


def test_public_operations_skip_the_hook(server: Server) -> None:
    before = len(server.actions)
    assert server.client("sts").get_caller_identity()["Account"] == ACCOUNT
    assert "sts:GetCallerIdentity" not in server.actions[before:]


def test_internal_errors_leak_nothing(server: Server) -> None:
    lam = server.client("lambda")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        lam.get_function(FunctionName="boom")
    response = caught.value.response
    assert response["Error"]["Code"] == "ServiceException" and response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert "secret" not in str(response) and "Traceback" not in str(response)


def test_unknown_operations_in_each_protocol(server: Server) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        server.client("lambda").list_aliases(FunctionName="f")
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        server.client("events").list_rules()
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        server.client("sts").get_session_token()
    assert caught.value.response["Error"]["Code"] == "InvalidAction"


def test_oversize_body_is_413_in_the_protocols_shape(server: Server) -> None:
    lam = server.client("lambda")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        lam.create_function(FunctionName="f", Role="r", Code={"ZipFile": b"x" * MAX_BODY})
    assert caught.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_json_protocols(server: Server) -> None:
    events = server.client("events")
    assert events.put_events(Entries=[{"Source": "a", "DetailType": "t", "Detail": "{}"}] * 2)["Entries"] == [
        {"EventId": "e0"}, {"EventId": "e1"}]
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_rule(Name="r")
    sfn = server.client("stepfunctions")
    with pytest.raises(sfn.exceptions.ExecutionDoesNotExist):
        sfn.describe_execution(executionArn="arn:aws:states:eu-west-1:1:execution:m:x")
    ddb = server.client("dynamodb")
    item = ddb.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"]
    assert item == {"pk": {"S": "a"}, "b": {"B": b"\x00\xff"}, "ns": {"NS": ["1", "2"]}}
    assert "states:DescribeExecution" in server.actions and "dynamodb:GetItem" in server.actions


def test_query_protocols(server: Server) -> None:
    identity = server.client("sts").get_caller_identity()
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{CREDS.access_key}"
    assert identity["Account"] == ACCOUNT and identity["ResponseMetadata"]["RequestId"]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        server.client("cloudformation").describe_stacks(StackName="missing")
    assert caught.value.response["Error"] == {"Type": "Sender", "Code": "ValidationError",
                                              "Message": "Stack with id missing does not exist"}


def test_rest_xml_s3(server: Server) -> None:
    s3 = server.client("s3")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.head_bucket(Bucket="nobucket")
    assert caught.value.response["Error"]["Code"] == "404"  # a HEAD answer has no body, on AWS too
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="b", Key="missing/key")
    s3.put_object(Bucket="b", Key="dir/ü x.bin", Body=DATA)
    assert server.objects[("b", "dir/ü x.bin")] == DATA
    got = s3.get_object(Bucket="b", Key="dir/ü x.bin")
    assert got["Body"].read() == DATA and got["Metadata"] == {"who": "front"}
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    head = s3.head_object(Bucket="b", Key="dir/ü x.bin")
    assert head["ContentLength"] == len(DATA) and head["Metadata"] == {"who": "front"}


def test_virtual_host_bucket_and_aws_chunked_upload(server: Server) -> None:
    upload = Upload("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", DATA)
    headers = dict(upload.headers())
    headers["Host"] = "vbucket.s3.kambda.test"

    async def send(body: bytes) -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session:
            async with session.put(f"{server.url}/key", data=body, headers=headers) as response:
                return response.status, await response.read()

    status, _ = asyncio.run(send(upload.body()))
    assert status == 200 and server.objects[("vbucket", "key")] == DATA
    status, body = asyncio.run(send(upload.body(tamper=3)))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body


def test_endpoint_url_alone_reaches_the_server(server: Server, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Any) -> None:
    for key, value in {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s",
                       "AWS_DEFAULT_REGION": "us-west-2", "AWS_CONFIG_FILE": str(tmp_path / "none"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    session = boto3.session.Session()
    assert session.client("sts").get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/AKIDENV"
    with pytest.raises(session.client("lambda").exceptions.ResourceNotFoundException) as caught:
        session.client("lambda").get_function(FunctionName="x")
    assert ":us-west-2:" in caught.value.response["Error"]["Message"]
    assert session.client("events").put_events(Entries=[{"Source": "s"}])["FailedEntryCount"] == 0


def test_plain_checksum_header_is_verified(server: Server) -> None:
    # boto3 over plain HTTP sends a hex payload hash and an x-amz-checksum header: both are checked
    s3 = server.client("s3")
    s3.put_object(Bucket="b", Key="sum", Body=b"data", ChecksumAlgorithm="CRC32")
    assert server.objects[("b", "sum")] == b"data"

    def corrupt(request: Any, **_: Any) -> None:
        request.headers["x-amz-checksum-crc32"] = "AAAAAA=="

    s3.meta.events.register("before-send.s3.PutObject", corrupt)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.put_object(Bucket="b", Key="sum2", Body=b"data", ChecksumAlgorithm="CRC32")
    assert caught.value.response["Error"]["Code"] == "BadDigest"
    assert ("b", "sum2") not in server.objects


def test_unsigned_query_request_is_routed_by_its_action_and_is_root(server: Server) -> None:
    async def post() -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session:
            async with session.post(server.url, data=b"Action=GetCallerIdentity&Version=2011-06-15",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"}) as response:
                return response.status, await response.read()

    status, body = asyncio.run(post())
    assert status == 200
    assert f"<Arn>arn:aws:iam::{ACCOUNT}:root</Arn>".encode() in body
    assert f"<UserId>{ACCOUNT}</UserId>".encode() in body


def test_requests_no_service_claims(server: Server) -> None:
    async def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, server.url + path, data=body, headers=headers) as response:
                return response.status, response.headers.get("x-amzn-ErrorType", ""), await response.read()

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert asyncio.run(send("GET", "/nowhere", b"", {}))[:2] == (404, "UnknownOperationException")
    assert asyncio.run(send("POST", "/", b"Action=NoSuchThing", form))[:2] == (404, "UnknownOperationException")
    big = b"Action=GetCallerIdentity&Pad=" + b"x" * MAX_BODY
    status, code, _ = asyncio.run(send("POST", "/", big, form))
    assert (status, code) == (413, "RequestEntityTooLargeException")


def test_a_missing_required_member_or_a_null_item_is_the_protocols_validation_error(server: Server) -> None:
    async def send(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{server.url}{path}", data=body, headers=headers) as response:
                return response.status, json.loads(await response.read())

    lambda_json = {"Content-Type": "application/json"}
    status, body = asyncio.run(send("/2015-03-31/functions", b'{"Code": {"ZipFile": ""}}', lambda_json))
    assert status == 400 and "Value null at 'functionName'" in body["message"]
    status, body = asyncio.run(send("/2015-03-31/functions", b'{"FunctionName": "f", "Tags": {"a": null}}',
                                    lambda_json))
    assert status == 400 and "null" in body["message"]
    events = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AWSEvents.PutEvents"}
    status, body = asyncio.run(send("/", b"{}", events))
    assert (status, body["__type"]) == (400, "ValidationException") and "'entries'" in body["message"]
