"""Lambda function URLs: the FunctionUrlConfig API through unchanged boto3, and the URLs themselves
through a real HTTP client (payload format 2.0 as Lambda sends it, CORS, AuthType)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Platform, make_zip, unique
from tests.test_http_triggers import request

ECHO = '''
import json
def handler(event, context):
    if event["rawPath"] == "/raise":
        raise RuntimeError("boom")
    return {"statusCode": 200, "body": json.dumps(event),
            "headers": {"Content-Type": "application/json", "Access-Control-Allow-Origin": "https://evil.example"}}
'''
CORS = {"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"], "AllowHeaders": ["x-custom"],
        "ExposeHeaders": ["x-exposed"], "MaxAge": 300, "AllowCredentials": True}
URL_DOMAIN = "kambda.test"


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_url_config_lifecycle_and_the_event(platform, lam, create) -> None:  # type: ignore[no-untyped-def]
    fn = create(ECHO)
    created = lam.create_function_url_config(FunctionName=fn, AuthType="NONE", Cors={"AllowOrigins": ["*"]})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    url = created["FunctionUrl"]
    url_id = path_of(url).split("/")[2]
    assert url == f"{platform.url}/url/{url_id}/" and len(url_id) == 32 and url_id.isalnum()
    assert created["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{fn}"
    assert (created["AuthType"], created["InvokeMode"], created["Cors"]) == ("NONE", "BUFFERED",
                                                                             {"AllowOrigins": ["*"]})
    got = lam.get_function_url_config(FunctionName=fn)
    assert got["FunctionUrl"] == url and got["CreationTime"] == created["CreationTime"] and got["LastModifiedTime"]
    updated = lam.update_function_url_config(FunctionName=fn, Cors=CORS)
    assert updated["Cors"] == CORS and updated["AuthType"] == "NONE"
    listed = lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [url]

    answer = request(platform.url, "POST", path_of(url) + "my/path?a=1&a=2", b'{"k": "v"}',
                     [("Content-Type", "application/json"), ("Cookie", "s=1"), ("User-Agent", "ua")])
    assert answer.status == 200, answer.body
    assert answer.headers["x-amzn-RequestId"]
    event = answer.json()
    assert isinstance(event, dict)
    assert set(event) == {"version", "routeKey", "rawPath", "rawQueryString", "cookies", "headers",
                          "queryStringParameters", "requestContext", "body", "isBase64Encoded"}
    assert (event["version"], event["routeKey"], event["rawPath"], event["rawQueryString"]) == (
        "2.0", "$default", "/my/path", "a=1&a=2")
    assert event["cookies"] == ["s=1"] and event["queryStringParameters"] == {"a": "1,2"}
    assert (event["body"], event["isBase64Encoded"]) == ('{"k": "v"}', False)
    ctx = event["requestContext"]
    assert (ctx["apiId"], ctx["domainPrefix"], ctx["accountId"]) == (url_id, url_id, "anonymous")
    assert ctx["domainName"] == f"{url_id}.lambda-url.us-east-1.on.aws"
    assert (ctx["routeKey"], ctx["stage"], ctx["http"]["method"], ctx["http"]["path"]) == (
        "$default", "$default", "POST", "/my/path")
    assert request(platform.url, "GET", f"/url/{url_id}").json()["rawPath"] == "/"  # type: ignore[index]

    assert lam.delete_function_url_config(FunctionName=fn)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        lam.get_function_url_config(FunctionName=fn)
    assert error_code(exc) == "ResourceNotFoundException"
    assert request(platform.url, "GET", path_of(url)).status == 404
    again = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    assert again["FunctionUrl"] == url  # stable per (function, qualifier)
    assert "Cors" not in again


def test_api_errors(platform, lam, create) -> None:  # type: ignore[no-untyped-def]
    fn = create(ECHO)
    with pytest.raises(ClientError) as exc:
        lam.create_function_url_config(FunctionName=unique("ghost"), AuthType="NONE")
    assert error_code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        lam.get_function_url_config(FunctionName=fn)
    assert error_code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        lam.update_function_url_config(FunctionName=fn, AuthType="NONE")
    assert error_code(exc) == "ResourceNotFoundException"
    for params in ({"AuthType": "OPEN"}, {"AuthType": "NONE", "Cors": {"MaxAge": 90000}},
                   {"AuthType": "NONE", "Cors": {"AllowMethods": ["FETCH"]}},
                   {"AuthType": "NONE", "Qualifier": "1"}, {"AuthType": "NONE", "Qualifier": "$LATEST"},
                   {"AuthType": "NONE", "InvokeMode": "SOMETIMES"}):
        with pytest.raises(ClientError) as exc:
            lam.create_function_url_config(FunctionName=fn, **params)
        assert error_code(exc) == "ValidationException", params
        assert "1 validation error detected" in exc.value.response["Error"]["Message"]
    lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    with pytest.raises(ClientError) as exc:
        lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    assert error_code(exc) == "ResourceConflictException"
    assert "FunctionUrlConfig exists" in exc.value.response["Error"]["Message"]


def test_cors_preflight_and_response_headers(platform, lam, create) -> None:  # type: ignore[no-untyped-def]
    fn = create(ECHO)
    path = path_of(lam.create_function_url_config(FunctionName=fn, AuthType="NONE", Cors=CORS)["FunctionUrl"])
    preflight = request(platform.url, "OPTIONS", path + "x", headers=[
        ("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "x-custom")])
    assert (preflight.status, preflight.body) == (200, b"")  # answered by the gateway, not the function
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert preflight.headers["Access-Control-Allow-Headers"] == "x-custom"
    assert preflight.headers["Access-Control-Max-Age"] == "300"
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    stranger = request(platform.url, "OPTIONS", path, headers=[
        ("Origin", "https://other.example"), ("Access-Control-Request-Method", "POST")])
    assert stranger.status == 200 and "Access-Control-Allow-Origin" not in stranger.headers
    actual = request(platform.url, "GET", path, headers=[("Origin", "https://app.example")])
    assert actual.status == 200
    # The URL's CORS settings win over the function's own CORS headers, as on AWS.
    assert actual.headers.get_all("Access-Control-Allow-Origin") == ["https://app.example"]
    assert actual.headers["Access-Control-Expose-Headers"] == "x-exposed"
    assert actual.headers["Access-Control-Allow-Credentials"] == "true"
    lam.update_function_url_config(FunctionName=fn, Cors={})
    passed_on = request(platform.url, "OPTIONS", path, headers=[
        ("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")])
    assert passed_on.status == 200 and passed_on.json()["requestContext"]["http"]["method"] == "OPTIONS"  # type: ignore[index]


def test_aws_iam_without_credentials_serves_loopback(platform, lam, create) -> None:  # type: ignore[no-untyped-def]
    """With no credentials configured, loopback callers act as admin (signed AWS_IAM URLs: tests/test_auth.py)."""
    fn = create(ECHO)
    path = path_of(lam.create_function_url_config(FunctionName=fn, AuthType="AWS_IAM", Cors=CORS)["FunctionUrl"])
    served = request(platform.url, "GET", path, headers=[("Origin", "https://app.example")])
    assert served.status == 200 and served.headers["Access-Control-Allow-Origin"] == "https://app.example"
    preflight = request(platform.url, "OPTIONS", path, headers=[
        ("Origin", "https://app.example"), ("Access-Control-Request-Method", "GET")])
    assert preflight.status == 200 and preflight.headers["Access-Control-Allow-Methods"] == "GET,POST"


TAGGED = "import os\ndef handler(event, context):\n    return {'tag': os.environ['TAG']}\n"


def test_a_url_on_an_alias_runs_the_aliased_version(platform, lam, create) -> None:  # type: ignore[no-untyped-def]
    fn = create(TAGGED)
    with pytest.raises(ClientError) as missing:
        lam.create_function_url_config(FunctionName=fn, Qualifier="live", AuthType="NONE")
    assert error_code(missing) == "ResourceNotFoundException"
    lam.update_function_configuration(FunctionName=fn, Environment={"Variables": {"TAG": "one"}})
    version = lam.publish_version(FunctionName=fn)["Version"]
    lam.update_function_configuration(FunctionName=fn, Environment={"Variables": {"TAG": "latest"}})
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion=version)
    url = lam.create_function_url_config(FunctionName=fn, Qualifier="live", AuthType="NONE")["FunctionUrl"]
    assert request(platform.url, "GET", path_of(url)).json() == {"tag": "one"}


def test_function_errors_and_deleting_the_function(platform, lam, create) -> None:  # type: ignore[no-untyped-def]
    fn = create(ECHO)
    path = path_of(lam.create_function_url_config(FunctionName=fn, AuthType="NONE")["FunctionUrl"])
    failed = request(platform.url, "GET", path + "raise")
    assert (failed.status, failed.json()) == (502, {"message": "Internal Server Error"})
    assert request(platform.url, "GET", "/url/" + "a" * 32 + "/").status == 404
    lam.delete_function(FunctionName=fn)
    assert request(platform.url, "GET", path).status == 404
    lam.create_function(FunctionName=fn, Runtime="python3.12", Handler="app.handler", Role="arn:aws:iam::0:role/r",
                        Code={"ZipFile": make_zip({"app.py": ECHO})})
    assert lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"] == []


@pytest.fixture(scope="module")
def domain_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(tmp_path_factory.mktemp("kambda-urls"), env={"KAMBDA_URL_DOMAIN": URL_DOMAIN}).start()
    yield running
    running.stop()


def test_url_host_names(domain_platform: Platform) -> None:
    lam = domain_platform.lambda_client()
    fn = unique("hosted")
    lam.create_function(FunctionName=fn, Runtime="python3.12", Handler="app.handler", Role="arn:aws:iam::0:role/r",
                        Code={"ZipFile": make_zip({"app.py": ECHO})})
    url = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")["FunctionUrl"]
    parts = urlsplit(url)
    url_id = (parts.hostname or "").split(".")[0]
    port = urlsplit(domain_platform.url).port
    assert url == f"http://{url_id}.lambda-url.us-east-1.{URL_DOMAIN}:{port}/"
    host = f"{url_id}.lambda-url.us-east-1.{URL_DOMAIN}:{port}"
    answer = request(domain_platform.url, "GET", "/2015-03-31/functions?x=1", headers=[("Host", host)])
    assert answer.status == 200, answer.body
    event = answer.json()
    assert isinstance(event, dict)
    assert event["rawPath"] == "/2015-03-31/functions" and event["rawQueryString"] == "x=1"
    assert event["requestContext"]["domainName"] == f"{url_id}.lambda-url.us-east-1.{URL_DOMAIN}"
    assert request(domain_platform.url, "GET", f"/url/{url_id}/p").json()["rawPath"] == "/p"  # type: ignore[index]
    unknown = request(domain_platform.url, "GET", "/", headers=[("Host", f"nope.lambda-url.us-east-1.{URL_DOMAIN}")])
    assert unknown.status == 404
    assert json.loads(request(domain_platform.url, "GET", "/_kambda/health").body)["status"] == "ok"
