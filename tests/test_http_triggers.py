"""HTTP API routes against a running platform, through a real HTTP client (http.client).

The platform is started with a routes file (``kambda up --routes``) and KAMBDA_HTTP_HOST, so the
file, the /http/ prefix and the host name are all exercised. Events are compared field by field
with the example events in AWS's documentation (API Gateway HTTP APIs, "Working with AWS Lambda
proxy integrations"), for both payload formats.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from apis.api import parse_route
from apis.config import HttpConfig
from apis.triggers import clf_time
from kambda import bus
from tests.conftest import REPO, Platform, make_zip, unique, until, wait_for

HTTP_HOST = "api.kambda.test"

#: One function that answers differently by path (rawPath in 2.0, path in 1.0).
MULTI = '''
import json, time
def handler(event, context):
    path = event.get("rawPath") or event.get("path")
    if path.endswith("/raise"):
        raise ValueError("boom")
    if path.endswith("/sleep"):
        time.sleep(10)
    if path.endswith("/plain"):
        return {"hello": "world", "n": [1, 2]}
    if path.endswith("/bad"):
        return {"statusCode": "nope"}
    if path.endswith("/len"):
        return {"statusCode": 200, "body": str(len(event["body"])), "headers": {"content-type": "text/plain"}}
    if path.endswith("/binary"):
        return {"statusCode": 200, "headers": {"Content-Type": "image/png"}, "body": event["body"],
                "isBase64Encoded": event["isBase64Encoded"]}
    if path.endswith("/multi"):
        return {"statusCode": 201, "headers": {"X-Single": "s", "Content-Type": "text/plain"},
                "multiValueHeaders": {"X-Multi": ["a", "b"]}, "cookies": ["k1=v1; Path=/", "k2=v2"], "body": "made"}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(event)}
'''

# AWS's documented example events (structure; values that depend on AWS's own deployment aside).
DOC_V2 = {
    "version": "2.0", "routeKey": "$default", "rawPath": "/my/path",
    "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
    "cookies": ["cookie1", "cookie2"], "headers": {"header1": "value1", "header2": "value1,value2"},
    "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
    "requestContext": {
        "accountId": "123456789012", "apiId": "api-id", "authentication": {}, "authorizer": {},
        "domainName": "id.execute-api.us-east-1.amazonaws.com", "domainPrefix": "id",
        "http": {"method": "POST", "path": "/my/path", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1",
                 "userAgent": "agent"},
        "requestId": "id", "routeKey": "$default", "stage": "$default", "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390},
    "body": "Hello from Lambda", "pathParameters": {"parameter1": "value1"}, "isBase64Encoded": False,
    "stageVariables": {"stageVariable1": "value1", "stageVariable2": "value2"},
}
DOC_V1 = {
    "version": "1.0", "resource": "/my/path", "path": "/my/path", "httpMethod": "GET",
    "headers": {"header1": "value1", "header2": "value2"},
    "multiValueHeaders": {"header1": ["value1"], "header2": ["value1", "value2"]},
    "queryStringParameters": {"parameter1": "value1", "parameter2": "value"},
    "multiValueQueryStringParameters": {"parameter1": ["value1", "value2"], "parameter2": ["value"]},
    "requestContext": {
        "accountId": "123456789012", "apiId": "id", "authorizer": {"claims": None, "scopes": None},
        "domainName": "id.execute-api.us-east-1.amazonaws.com", "domainPrefix": "id",
        "extendedRequestId": "request-id", "httpMethod": "GET",
        "identity": {"accessKey": None, "accountId": None, "caller": None, "cognitoAuthenticationProvider": None,
                     "cognitoAuthenticationType": None, "cognitoIdentityId": None, "cognitoIdentityPoolId": None,
                     "principalOrgId": None, "sourceIp": "192.0.2.1", "user": None, "userAgent": "user-agent",
                     "userArn": None, "clientCert": {}},
        "path": "/my/path", "protocol": "HTTP/1.1", "requestId": "id=", "requestTime": "04/Mar/2020:19:15:17 +0000",
        "requestTimeEpoch": 1583349317135, "resourceId": None, "resourcePath": "/my/path", "stage": "$default"},
    "pathParameters": None, "stageVariables": None, "body": "Hello from Lambda!", "isBase64Encoded": False,
}

PRECEDENCE_ROUTES = ["GET /pets/dog/1", "GET /pets/dog/{id}", "POST /pets/dog/{id}", "GET /pets/{kind}/{id}",
                     "ANY /pets/cat/{id}", "DELETE /pets/cat/{id}", "ANY /pets/{proxy+}", "GET /"]


def png(width: int = 8, height: int = 8) -> bytes:
    """A real PNG (every byte value appears in its pixels), made with zlib."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes((x * 3 + y * 24 + c) % 256 for x in range(width) for c in range(3))
                    for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    def json(self) -> object:
        return json.loads(self.body)


def request(base: str, method: str, path: str, body: bytes | None = None,
            headers: list[tuple[str, str]] | None = None, chunked: Iterator[bytes] | None = None) -> Answer:
    """One request with http.client: repeated headers, a chosen Host and chunked bodies are all possible."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        headers = headers or []
        conn.putrequest(method, path, skip_host=any(k.lower() == "host" for k, _ in headers),
                        skip_accept_encoding=True)
        for key, value in headers:
            conn.putheader(key, value)
        if chunked is not None:
            conn.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if chunked is not None:
            for piece in chunked:
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
        elif body is not None:
            conn.send(body)
        return Answer(conn.getresponse())
    finally:
        conn.close()


def api(base: str, method: str, path: str, body: object = None) -> Answer:
    data = json.dumps(body).encode() if body is not None else None
    return request(base, method, "/_kambda/v1/http/routes" + path, data, [("Content-Type", "application/json")])


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, str, object]]:
    """A platform with a routes file and an HTTP host; yields it, the MULTI function's name and a boto3 client."""
    state = tmp_path_factory.mktemp("kambda-http")
    fn = unique("multi")
    routes = state / "routes.yaml"
    lines = ["routes:"] + [f"  - RouteKey: {key}\n    FunctionName: {fn}" for key in PRECEDENCE_ROUTES]
    lines += [f"  - RouteKey: ANY /v1/{{proxy+}}\n    FunctionName: {fn}\n    PayloadFormatVersion: 1.0",
              f"  - RouteKey: ANY /v2/{{proxy+}}\n    FunctionName: {fn}"]
    routes.write_text("\n".join(lines) + "\n")
    running = Platform(state, extra_args=["--routes", str(routes)], env={"KAMBDA_HTTP_HOST": HTTP_HOST}).start()
    lam = running.lambda_client()
    lam.create_function(FunctionName=fn, Runtime="python3.12", Handler="app.handler", Timeout=2,
                        Role="arn:aws:iam::000000000000:role/test", Code={"ZipFile": make_zip({"app.py": MULTI})})
    yield running, fn, lam
    running.stop()


def event(web, method: str, path: str, **kwargs: object) -> dict:  # type: ignore[no-untyped-def]
    answer = request(web[0].url, method, path, **kwargs)  # type: ignore[arg-type]
    assert answer.status == 200, (answer.status, answer.body[:500])
    body = answer.json()
    assert isinstance(body, dict)
    return body


def shape(value: object) -> object:
    """The structure of a JSON value: the keys of objects, recursively, and the kind of everything else."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__


@pytest.mark.parametrize(("method", "path", "route", "params"), [
    ("GET", "/pets/dog/1", "GET /pets/dog/1", None),                       # exact beats parameters
    ("GET", "/pets/dog/2", "GET /pets/dog/{id}", {"id": "2"}),              # more literals from the left win
    ("POST", "/pets/dog/2", "POST /pets/dog/{id}", {"id": "2"}),
    ("GET", "/pets/bird/4", "GET /pets/{kind}/{id}", {"kind": "bird", "id": "4"}),
    ("GET", "/pets/cat/3", "ANY /pets/cat/{id}", {"id": "3"}),              # a literal beats the method
    ("DELETE", "/pets/cat/3", "DELETE /pets/cat/{id}", {"id": "3"}),        # a named method beats ANY
    ("PUT", "/pets/dog/2", "ANY /pets/{proxy+}", {"proxy": "dog/2"}),       # greedy after everything else
    ("GET", "/pets/a/b/c", "ANY /pets/{proxy+}", {"proxy": "a/b/c"}),
    ("GET", "/pets/bird/a%20b", "GET /pets/{kind}/{id}", {"kind": "bird", "id": "a b"}),
    ("GET", "/", "GET /", None),
])
def test_route_precedence(web, method: str, path: str, route: str, params: dict | None) -> None:  # type: ignore[no-untyped-def]
    got = event(web, method, "/http" + path)
    assert (got["routeKey"], got.get("pathParameters"), got["rawPath"]) == (route, params, path)
    assert got["requestContext"]["http"]["method"] == method


def test_unmatched_is_404_and_default_catches_the_rest(web) -> None:  # type: ignore[no-untyped-def]
    base, fn = web[0].url, web[1]
    for path in ("/http/pets", "/http/nothing/here", "/http/pets/dog/1/2/"):
        answer = request(base, "GET", path)
        if path == "/http/pets/dog/1/2/":
            assert answer.status == 200 and answer.json()["routeKey"] == "ANY /pets/{proxy+}"  # type: ignore[index]
            continue
        assert (answer.status, answer.json()) == (404, {"message": "Not Found"})
        assert answer.headers["apigw-requestid"]
    created = api(base, "POST", "", {"RouteKey": "$default", "FunctionName": fn})
    assert created.status == 201, created.body
    try:
        for path in ("/http/pets", "/http/nothing/here"):
            got = event(web, "PATCH", path)
            assert got["routeKey"] == "$default" and got["requestContext"]["routeKey"] == "$default"
            assert "pathParameters" not in got
    finally:
        assert api(base, "DELETE", "/" + created.json()["RouteId"]).status == 204  # type: ignore[index]
    assert request(base, "GET", "/http/nothing/here").status == 404


def test_payload_2_0_field_by_field(web) -> None:  # type: ignore[no-untyped-def]
    before = int(time.time() * 1000)
    got = event(web, "POST", "/http/v2/my/path?parameter1=value1&parameter1=value2&parameter2=value",
                body=b"Hello from Lambda", headers=[("Header1", "value1"), ("header2", "value1"), ("Header2", "value2"),
                                                    ("Cookie", "cookie1; cookie2"), ("User-Agent", "agent"),
                                                    ("Content-Type", "text/plain")])
    after = int(time.time() * 1000)
    # Every documented field is there, except those AWS also leaves out when unused (no authorizer, no stage variables).
    expected_keys = set(DOC_V2) - {"stageVariables"}
    assert set(got) == expected_keys
    assert set(got["requestContext"]) == set(DOC_V2["requestContext"]) - {"authentication", "authorizer"}  # type: ignore[arg-type]
    assert shape(got["requestContext"]["http"]) == shape(DOC_V2["requestContext"]["http"])  # type: ignore[index]
    for key in ("version", "rawQueryString", "cookies", "queryStringParameters", "body", "isBase64Encoded"):
        assert got[key] == DOC_V2[key], key
    assert got["rawPath"] == "/v2/my/path" and got["routeKey"] == "ANY /v2/{proxy+}"
    assert got["pathParameters"] == {"proxy": "my/path"}
    headers = got["headers"]
    assert headers["header1"] == "value1" and headers["header2"] == "value1,value2"
    assert "cookie" not in headers and all(k == k.lower() for k in headers)
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-proto"] == "http"
    assert headers["x-amzn-trace-id"].startswith("Root=1-")
    ctx = got["requestContext"]
    port = urlsplit(web[0].url).port
    assert ctx["http"] == {"method": "POST", "path": "/v2/my/path", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                           "userAgent": "agent"}
    assert ctx["accountId"] == "000000000000" and ctx["stage"] == "$default" and ctx["routeKey"] == got["routeKey"]
    assert ctx["domainName"] == f"127.0.0.1:{port}" and ctx["domainPrefix"] == "127"
    assert len(ctx["apiId"]) == 10 and ctx["requestId"]
    assert before <= ctx["timeEpoch"] <= after and ctx["time"] == clf_time(ctx["timeEpoch"])


def test_payload_1_0_field_by_field(web) -> None:  # type: ignore[no-untyped-def]
    before = int(time.time() * 1000)
    got = event(web, "GET", "/http/v1/my/path?parameter1=value1&parameter1=value2&parameter2=value",
                headers=[("Header1", "value1"), ("Header2", "value1"), ("Header2", "value2"),
                         ("User-Agent", "user-agent")])
    after = int(time.time() * 1000)
    assert set(got) == set(DOC_V1)
    doc_ctx = DOC_V1["requestContext"]
    assert set(got["requestContext"]) == set(doc_ctx)  # type: ignore[arg-type]
    # clientCert is only there with mutual TLS.
    assert set(got["requestContext"]["identity"]) == set(doc_ctx["identity"]) - {"clientCert"}  # type: ignore[index]
    for key in ("version", "queryStringParameters", "multiValueQueryStringParameters", "stageVariables",
                "isBase64Encoded"):
        assert got[key] == DOC_V1[key], key
    assert got["resource"] == "/v1/{proxy+}" and got["path"] == "/v1/my/path" and got["httpMethod"] == "GET"
    assert got["pathParameters"] == {"proxy": "my/path"} and got["body"] is None
    assert got["headers"]["Header1"] == "value1" and got["headers"]["Header2"] == "value2"
    assert got["multiValueHeaders"]["Header1"] == ["value1"]
    assert got["multiValueHeaders"]["Header2"] == ["value1", "value2"]
    ctx = got["requestContext"]
    assert ctx["authorizer"] == {"claims": None, "scopes": None}
    assert ctx["identity"]["sourceIp"] == "127.0.0.1" and ctx["identity"]["userAgent"] == "user-agent"
    assert {k: v for k, v in ctx["identity"].items() if k not in ("sourceIp", "userAgent")} == dict.fromkeys(
        set(doc_ctx["identity"]) - {"clientCert", "sourceIp", "userAgent"})  # type: ignore[arg-type]
    assert (ctx["httpMethod"], ctx["path"], ctx["protocol"], ctx["stage"]) == ("GET", "/v1/my/path", "HTTP/1.1",
                                                                               "$default")
    assert ctx["resourcePath"] == "/v1/{proxy+}" and ctx["accountId"] == "000000000000"
    assert ctx["requestId"] == ctx["extendedRequestId"]
    assert before <= ctx["requestTimeEpoch"] <= after and ctx["requestTime"] == clf_time(ctx["requestTimeEpoch"])


def test_binary_round_trip_and_text_bodies(web) -> None:  # type: ignore[no-untyped-def]
    image = png()
    for prefix in ("/http/v2", "/http/v1"):
        answer = request(web[0].url, "POST", prefix + "/binary", image, [("Content-Type", "image/png")])
        assert answer.status == 200 and answer.headers["Content-Type"] == "image/png"
        assert answer.body == image
    got = event(web, "POST", "/http/v2/echo", body=image, headers=[("Content-Type", "image/png")])
    assert got["isBase64Encoded"] is True and base64.b64decode(got["body"]) == image
    for content_type in ("application/json", "text/html; charset=utf-8", "application/xml", "application/javascript",
                         "application/vnd.api+json"):
        got = event(web, "POST", "/http/v2/echo", body='{"é": 1}'.encode(), headers=[("Content-Type", content_type)])
        assert (got["isBase64Encoded"], got["body"]) == (False, '{"é": 1}'), content_type
    form = [("Content-Type", "application/x-www-form-urlencoded")]
    got = event(web, "POST", "/http/v2/echo", body=b"a=1&b=2", headers=form)
    assert got["isBase64Encoded"] is True and base64.b64decode(got["body"]) == b"a=1&b=2"


def test_response_mapping_headers_cookies_and_shorthand(web) -> None:  # type: ignore[no-untyped-def]
    base = web[0].url
    answer = request(base, "GET", "/http/v2/multi")
    assert (answer.status, answer.body) == (201, b"made")
    assert answer.headers.get_all("X-Multi") == ["a", "b"] and answer.headers["X-Single"] == "s"
    assert answer.headers.get_all("Set-Cookie") == ["k1=v1; Path=/", "k2=v2"]
    plain = request(base, "GET", "/http/v2/plain")
    assert (plain.status, plain.headers["Content-Type"], plain.json()) == (200, "application/json",
                                                                             {"hello": "world", "n": [1, 2]})
    # Format 1.0 has no shorthand: an answer without statusCode is malformed.
    assert (request(base, "GET", "/http/v1/plain").status, request(base, "GET", "/http/v2/bad").status) == (502, 502)


def test_function_error_timeout_and_throttle(web) -> None:  # type: ignore[no-untyped-def]
    base, fn, lam = web
    failed = request(base.url, "GET", "/http/v2/raise")
    assert (failed.status, failed.json()) == (502, {"message": "Internal Server Error"})
    slow = request(base.url, "GET", "/http/v2/sleep")
    assert (slow.status, slow.json()) == (504, {"message": "Endpoint request timed out"})
    assert request(base.url, "GET", "/http/v2/plain").status == 200  # the platform keeps serving
    lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=0)
    try:
        throttled = request(base.url, "GET", "/http/v2/plain")
        assert (throttled.status, throttled.json()) == (429, {"message": "Too Many Requests"})
    finally:
        lam.delete_function_concurrency(FunctionName=fn)
    wait_for(lambda: request(base.url, "GET", "/http/v2/plain").status == 200, what="the route to serve again")


def test_six_megabyte_limit_and_chunked_uploads(web) -> None:  # type: ignore[no-untyped-def]
    base = web[0].url
    text = [("Content-Type", "text/plain")]
    big = b"x" * 6_000_000
    answer = request(base, "POST", "/http/v2/len", big, text)
    assert (answer.status, answer.body) == (200, b"6000000")
    too_big = request(base, "POST", "/http/v2/len", b"x" * (6 * 1024 * 1024 + 1), text)
    assert (too_big.status, too_big.json()) == (413, {"message": "Request Entity Too Large"})
    chunks = request(base, "POST", "/http/v2/len", headers=text, chunked=iter([b"y" * 65536] * 16))
    assert (chunks.status, chunks.body) == (200, str(65536 * 16).encode())
    endless = request(base, "POST", "/http/v2/len", headers=text, chunked=iter([b"z" * (1 << 20)] * 7))
    assert endless.status == 413
    # A binary body grows by a third in the event: past Lambda's 6 MB event it is refused too.
    binary = request(base, "POST", "/http/v2/len", os.urandom(5 * 1024 * 1024), [("Content-Type", "image/png")])
    assert binary.status == 413
    assert request(base, "GET", "/http/v2/plain").status == 200


def test_host_name_routes_the_full_path(web) -> None:  # type: ignore[no-untyped-def]
    got = event(web, "GET", "/pets/bird/9?x=1", headers=[("Host", f"{HTTP_HOST}:8080")])
    assert got["routeKey"] == "GET /pets/{kind}/{id}" and got["rawPath"] == "/pets/bird/9"
    assert got["requestContext"]["domainName"] == f"{HTTP_HOST}:8080"
    assert got["requestContext"]["domainPrefix"] == "api"
    # On that host even the Lambda API's paths are routes.
    assert request(web[0].url, "GET", "/2015-03-31/functions", headers=[("Host", HTTP_HOST)]).status == 404


def test_management_api_errors(web) -> None:  # type: ignore[no-untyped-def]
    base, fn = web[0].url, web[1]
    for key, why in [("GET users", "start with '/'"), ("FETCH /x", "method must be one of"),
                     ("GET /a/{p+}/b", "must be the last segment"), ("GET /a//b", "empty segment"),
                     ("GET /a/b{c}", "whole {variable}"), ("GET", "'$default' or 'METHOD /path'"),
                     ("GET /{a}/{a}", "appears twice")]:
        answer = api(base, "POST", "", {"RouteKey": key, "FunctionName": fn})
        assert answer.status == 400 and answer.headers["x-amzn-ErrorType"] == "BadRequestException", key
        assert why in answer.json()["message"], answer.json()  # type: ignore[index]
    for body in ({"RouteKey": "GET /ok"}, {"RouteKey": "GET /ok", "FunctionName": fn, "PayloadFormatVersion": "3.0"},
                 {"RouteKey": "GET /ok", "FunctionName": fn, "Extra": 1}):
        assert api(base, "POST", "", body).status == 400, body
    bad_name = api(base, "POST", "", {"RouteKey": "GET /ok", "FunctionName": "no such"})
    assert bad_name.headers["x-amzn-ErrorType"] == "ValidationException"
    not_json = request(base, "POST", "/_kambda/v1/http/routes", b"{", [("Content-Type", "application/json")])
    assert not_json.headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    duplicate = api(base, "POST", "", {"RouteKey": "GET /pets/dog/1", "FunctionName": fn})
    assert (duplicate.status, duplicate.headers["x-amzn-ErrorType"]) == (409, "ConflictException")
    for method in ("GET", "DELETE", "PUT"):
        missing = api(base, method, "/nosuch", {} if method == "PUT" else None)
        assert (missing.status, missing.headers["x-amzn-ErrorType"]) == (404, "NotFoundException")
    # A route to a function that does not exist answers API Gateway's 500.
    ghost = api(base, "POST", "", {"RouteKey": "GET /ghost", "FunctionName": unique("ghost")})
    assert ghost.status == 201
    assert (request(base, "GET", "/http/ghost").status, request(base, "GET", "/http/ghost").json()) == (
        500, {"message": "Internal Server Error"})
    listed = [r["RouteKey"] for r in api(base, "GET", "").json()["Items"]]  # type: ignore[index]
    assert set(PRECEDENCE_ROUTES) <= set(listed) and "GET /ghost" in listed


def test_update_switches_payload_format(web) -> None:  # type: ignore[no-untyped-def]
    base, fn = web[0].url, web[1]
    created = api(base, "POST", "", {"RouteKey": "GET /switch/{x}", "FunctionName": fn}).json()
    assert created["PayloadFormatVersion"] == "2.0" and created["Target"].endswith(f":function:{fn}")  # type: ignore[index]
    route_id = created["RouteId"]  # type: ignore[index]
    assert event(web, "GET", "/http/switch/1")["version"] == "2.0"
    updated = api(base, "PUT", f"/{route_id}", {"PayloadFormatVersion": "1.0"})
    assert updated.status == 200 and updated.json()["PayloadFormatVersion"] == "1.0"  # type: ignore[index]
    got = event(web, "GET", "/http/switch/1")
    assert got["version"] == "1.0" and got["pathParameters"] == {"x": "1"}
    assert api(base, "PUT", f"/{route_id}", {"RouteKey": "GET /other"}).status == 400
    assert api(base, "GET", f"/{route_id}").json()["RouteKey"] == "GET /switch/{x}"  # type: ignore[index]
    assert api(base, "DELETE", f"/{route_id}").status == 204
    assert request(base, "GET", "/http/switch/1").status == 404


def test_cli_route_add_ls_rm(web) -> None:  # type: ignore[no-untyped-def]
    base, fn = web[0].url, web[1]

    def kambda(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kambda.cli", "--endpoint", base, "route", *args],
                              capture_output=True, text=True, timeout=60, cwd=REPO,
                              env={**os.environ, "COLUMNS": "200"})

    added = kambda("add", "GET /cli/{id}", fn, "--payload-format", "1.0")
    assert added.returncode == 0 and "added GET /cli/{id}" in added.stdout, added.stderr
    assert event(web, "GET", "/http/cli/7")["pathParameters"] == {"id": "7"}
    assert "GET /cli/{id}" in kambda("ls").stdout
    again = kambda("add", "GET /cli/{id}", fn)
    assert again.returncode == 1 and "ConflictException" in again.stderr
    bad = kambda("add", "GET cli", fn)
    assert bad.returncode == 1 and "BadRequestException" in bad.stderr
    assert kambda("rm", "GET /cli/{id}").returncode == 0
    assert "GET /cli/{id}" not in kambda("ls").stdout
    assert kambda("rm", "GET /cli/{id}").returncode == 1


def test_bad_routes_file_stops_kambda_up_with_a_clear_message(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  - RouteKey: GET /a/{p+}/b\n    FunctionName: f\n")
    done = subprocess.run([sys.executable, "-m", "kambda.cli", "up", "--port", "0", "--state-dir",
                           str(tmp_path / "state"), "--routes", str(routes)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 1
    assert "routes[0]" in done.stderr and "must be the last segment" in done.stderr, done.stderr


async def test_every_replica_sees_changes_and_no_update_is_lost(web) -> None:  # type: ignore[no-untyped-def]
    """Two more copies of the HTTP config (as two more gateway replicas would hold) on the platform's NATS."""
    nc = await bus.connect(web[0].nats_address(), "test-replica", web[0].nats_creds("gateway"))
    replicas = [HttpConfig(nc.jetstream()), HttpConfig(nc.jetstream())]
    try:
        for replica in replicas:
            await replica.start()
        assert {r.route_key for r in replicas[0].routes.values()} >= set(PRECEDENCE_ROUTES)
        created = api(web[0].url, "POST", "", {"RouteKey": "GET /replicated", "FunctionName": web[1]})
        route_id = created.json()["RouteId"]  # type: ignore[index]
        for replica in replicas:
            await until(lambda r=replica: route_id in r.routes, what="the watch to deliver the new route")
        # Concurrent read-modify-writes from both replicas: each retries on the other's revision, none is lost.
        seen: list[str] = []

        def change(tag: str):  # type: ignore[no-untyped-def]
            def apply(old):  # type: ignore[no-untyped-def]
                seen.append(tag)
                return parse_route({"RouteKey": old.route_key, "FunctionName": old.function + tag}, old.created)
            return apply

        await asyncio.gather(*(replicas[i % 2].modify(f"route.{route_id}", change(f"-{i}"), KeyError())
                               for i in range(6)))
        def tags() -> list[str]:  # as the gateway's own copy has it once its watch delivered the last write
            final = api(web[0].url, "GET", f"/{route_id}").json()["FunctionName"]  # type: ignore[index]
            return sorted(final[len(web[1]):].split("-")[1:])

        await until(lambda: tags() == [str(i) for i in range(6)], what="every change, none lost")
        assert api(web[0].url, "DELETE", f"/{route_id}").status == 204
        for replica in replicas:
            await until(lambda r=replica: route_id not in r.routes, what="the watch to deliver the deletion")
    finally:
        for replica in replicas:
            await replica.stop()
        await nc.close()
