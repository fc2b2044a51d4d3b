"""S3's browser features: CORS (rule matching, preflights, headers on actual responses), bucket policies (anonymous
public read), static website hosting (index and error documents on the website host), browser POST uploads with a
signed policy, and lifecycle expiration (the pass run with a clock far in the future on a real store).

The pure rule logic is tested directly; the rest against a real platform started with a credentials file (so that
unsigned requests are anonymous, as on AWS), with boto3 and plain HTTP."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import nats
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from nats.js import JetStreamContext

from kambda.aws import roles
from kambda.aws.router import S3_WEBSITE, Router
from kambda.bus.natsserver import NatsServer
from kambda.settings import DEFAULT_ACCOUNT
from kambda.sql import Database
from objects import cors, errors, lifecycle, website
from objects.lifecycle import Lifecycle
from objects.policy import BucketPolicy
from objects.post import InvalidPolicyDocument, PostPolicy
from objects.store import Change, ObjectMeta, Store
from tests.conftest import Platform, unique

KEY, SECRET = "AKIDWEBTESTS", "web-tests-secret"
DAY = 86400.0


def public_read(bucket: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/*"}]})


# -- CORS rules ---------------------------------------------------------------------------------------------------

RULES = cors.validate({"CORSRules": [
    {"AllowedOrigins": ["https://*.example.com"], "AllowedMethods": ["GET", "PUT"],
     "AllowedHeaders": ["x-amz-*", "Content-Type"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]})


def test_the_first_matching_rule_answers_a_preflight() -> None:
    headers = cors.preflight(RULES, {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
                                     "Access-Control-Request-Headers": "Content-Type, X-Amz-Meta-Owner"})
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert headers["Access-Control-Allow-Methods"] == "GET, PUT"
    assert headers["Access-Control-Allow-Headers"] == "content-type, x-amz-meta-owner"
    assert headers["Access-Control-Expose-Headers"] == "ETag"
    assert headers["Access-Control-Max-Age"] == "600"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    anyone = cors.preflight(RULES, {"Origin": "https://other.org", "Access-Control-Request-Method": "GET"})
    assert anyone["Access-Control-Allow-Origin"] == "*" and "Access-Control-Allow-Credentials" not in anyone


@pytest.mark.parametrize("request_headers", [
    {"Origin": "https://other.org", "Access-Control-Request-Method": "PUT"},
    {"Origin": "https://app.example.com", "Access-Control-Request-Method": "DELETE"},
    {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
     "Access-Control-Request-Headers": "authorization"},
    {"Origin": "https://example.com", "Access-Control-Request-Method": "PUT"},
])
def test_a_preflight_no_rule_allows_is_refused(request_headers: dict[str, str]) -> None:
    with pytest.raises(cors.AccessForbidden, match="This CORS request is not allowed"):
        cors.preflight(RULES, request_headers)


def test_preflights_without_origin_method_or_configuration() -> None:
    with pytest.raises(cors.BadRequest, match="Origin request header needed"):
        cors.preflight(RULES, {"Access-Control-Request-Method": "GET"})
    with pytest.raises(cors.BadRequest, match="Access-Control-Request-Method"):
        cors.preflight(RULES, {"Origin": "https://a.example.com"})
    with pytest.raises(cors.AccessForbidden, match="CORS is not enabled"):
        cors.preflight(None, {"Origin": "https://a.example.com", "Access-Control-Request-Method": "GET"})
    with pytest.raises(cors.AccessForbidden, match="Bucket not found"):
        cors.preflight(cors.NO_BUCKET, {"Origin": "https://a.example.com", "Access-Control-Request-Method": "GET"})
    assert cors.actual(RULES, "https://other.org", "PUT") == {}
    assert cors.actual(RULES, "https://a.example.com", "PUT")["Access-Control-Allow-Origin"] == \
        "https://a.example.com"


def test_cors_configurations_s3_refuses() -> None:
    with pytest.raises(errors.InvalidRequest, match="Unsupported method is OPTIONS"):
        cors.validate({"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["OPTIONS"]}]})
    with pytest.raises(errors.InvalidRequest, match="more than one wildcard"):
        cors.validate({"CORSRules": [{"AllowedOrigins": ["https://*.*.com"], "AllowedMethods": ["GET"]}]})
    with pytest.raises(errors.S3Error) as caught:
        cors.validate({"CORSRules": []})
    assert caught.value.code == "MalformedXML"


# -- bucket policies ----------------------------------------------------------------------------------------------

def test_a_public_read_policy_allows_anonymous_gets_only() -> None:
    policy = BucketPolicy.parse(public_read("site"), "site")
    assert policy.public
    assert policy.decide("anonymous", "1", "s3:GetObject", "arn:aws:s3:::site/a/b.html") is True
    assert policy.decide("anonymous", "1", "s3:PutObject", "arn:aws:s3:::site/a") is None
    assert policy.decide("anonymous", "1", "s3:GetObject", "arn:aws:s3:::site") is None


def test_deny_principals_and_conditions() -> None:
    doc = {"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::123456789012:root"]}, "Action": ["s3:*"],
         "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::b/keep/*"},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/lan/*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
    ]}
    policy = BucketPolicy.parse(json.dumps(doc), "b")
    user = "arn:aws:iam::123456789012:user/alice"
    assert policy.decide(user, "123456789012", "s3:PutObject", "arn:aws:s3:::b/x") is True
    assert policy.decide(user, "123456789012", "s3:DeleteObject", "arn:aws:s3:::b/keep/x") is False
    assert policy.decide("anonymous", "123456789012", "s3:PutObject", "arn:aws:s3:::b/x") is None
    assert policy.decide("anonymous", "1", "s3:GetObject", "arn:aws:s3:::b/lan/x", {"aws:sourceip": "10.1.2.3"})
    assert policy.decide("anonymous", "1", "s3:GetObject", "arn:aws:s3:::b/lan/x",
                         {"aws:sourceip": "192.168.1.1"}) is None
    assert not policy.public


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "first byte must be '{'"),
    ("{", "invalid Json"),
    ('{"Version": "2012-10-17"}', "Missing required field Statement"),
    ('{"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]}',
     "Missing required field Principal"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage", '
     '"Resource": "arn:aws:s3:::b/*"}]}', "invalid action"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::other/*"}]}', "invalid resource"),
    ('{"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::b/*"}]}', "Invalid effect"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",'
     ' "Condition": {"IpAddress": {"aws:SourceIp": "somewhere"}}}]}', "Invalid IP address"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",'
     ' "Condition": {"NumericMaybe": {"aws:SourceIp": "1.2.3.4"}}}]}', "Invalid Condition type"),
])
def test_malformed_policies(text: str, message: str) -> None:
    with pytest.raises(errors.MalformedPolicy, match=message):
        BucketPolicy.parse(text, "b")


# -- website routing ----------------------------------------------------------------------------------------------

def test_website_host_names_route_to_the_website_endpoint() -> None:
    router = Router(["s3", S3_WEBSITE], "localhost", "s3")
    for host in ("my.site.s3-website.localhost:8080", "my.site.s3-website-us-east-1.localhost",
                 "my.site.s3-website.eu-west-1.localhost"):
        route = router.route("GET", "/", {}, {"Host": host})
        assert route is not None and (route.service, route.bucket) == (S3_WEBSITE, "my.site")
    route = router.route("GET", "/", {}, {"Host": "my.site.s3.localhost"})
    assert route is not None and (route.service, route.bucket) == ("s3", "my.site")


def test_website_configurations_s3_refuses() -> None:
    with pytest.raises(errors.InvalidArgument, match="IndexDocument Suffix is not well formed"):
        website.validate({"IndexDocument": {"Suffix": "a/index.html"}})
    with pytest.raises(errors.InvalidArgument, match="must be provided"):
        website.validate({"ErrorDocument": {"Key": "e.html"}})
    with pytest.raises(errors.InvalidArgument, match="in conjunction"):
        website.validate({"RedirectAllRequestsTo": {"HostName": "x"}, "IndexDocument": {"Suffix": "i.html"}})
    with pytest.raises(errors.InvalidRequest, match="not both"):
        website.validate({"IndexDocument": {"Suffix": "i.html"}, "RoutingRules": [
            {"Redirect": {"ReplaceKeyWith": "a", "ReplaceKeyPrefixWith": "b"}}]})


def test_routing_rules_match_by_prefix_before_and_by_error_after() -> None:
    rules: list[dict[str, Any]] = [
        {"Condition": {"KeyPrefixEquals": "old/"}, "Redirect": {"ReplaceKeyPrefixWith": "new/"}},
        {"Condition": {"HttpErrorCodeReturnedEquals": "404"},
         "Redirect": {"HostName": "fallback.example.com", "HttpRedirectCode": "302"}},
    ]
    assert website.find_rule(rules, "old/page.html", None) is rules[0]
    assert website.find_rule(rules, "page.html", None) is None
    assert website.find_rule(rules, "page.html", 404) is rules[1]
    assert website.find_rule(rules, "page.html", 403) is None


def test_the_error_page_says_what_s3_says() -> None:
    text = website.page(404, "NoSuchKey", "The specified key does not exist.", "RID", {"Key": "a<b"})
    assert "<h1>404 Not Found</h1>" in text and "<li>Code: NoSuchKey</li>" in text and "a&lt;b" in text


# -- POST policies ------------------------------------------------------------------------------------------------

def _policy(conditions: list[Any], expires: datetime) -> str:
    doc = {"expiration": expires.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "conditions": conditions}
    return base64.b64encode(json.dumps(doc).encode()).decode()


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_post_policy_conditions() -> None:
    encoded = _policy([{"bucket": "b"}, ["starts-with", "$key", "up/"], ["eq", "$content-type", "text/plain"],
                       ["content-length-range", 1, 10]], NOW + timedelta(hours=1))
    policy = PostPolicy.parse(encoded)
    fields = {"bucket": "b", "key": "up/a.txt", "content-type": "text/plain", "policy": encoded,
              "x-amz-signature": "s"}
    policy.check(fields, NOW)
    assert policy.length_range() == (1, 10)
    with pytest.raises(errors.AccessDenied, match=r'Policy Condition failed: \["starts-with", "\$key", "up/"\]'):
        policy.check({**fields, "key": "down/a.txt"}, NOW)
    with pytest.raises(errors.AccessDenied, match="Extra input fields: x-amz-meta-a"):
        policy.check({**fields, "x-amz-meta-a": "1"}, NOW)
    with pytest.raises(errors.AccessDenied, match="Policy expired"):
        policy.check(fields, NOW + timedelta(hours=2))
    policy.check({**fields, "x-ignore-me": "1"}, NOW)


def test_malformed_post_policies() -> None:
    with pytest.raises(InvalidPolicyDocument, match="Invalid JSON"):
        PostPolicy.parse("!!!")
    with pytest.raises(InvalidPolicyDocument, match="expiration"):
        PostPolicy.parse(base64.b64encode(b'{"conditions": []}').decode())
    with pytest.raises(InvalidPolicyDocument):
        PostPolicy.parse(_policy([["ends-with", "$key", "x"]], NOW))


# -- lifecycle rules ----------------------------------------------------------------------------------------------

def _meta(key: str, t: float, *, latest: bool = True, marker: bool = False, version: str = "null",
          size: int = 10, tags: dict[str, str] | None = None) -> ObjectMeta:
    return ObjectMeta("b", key, version, size, '"e"', t, is_latest=latest, delete_marker=marker, tags=tags or {})


def test_days_count_to_the_next_midnight_utc() -> None:
    created = datetime(2026, 1, 15, 10, 30, tzinfo=UTC).timestamp()
    assert lifecycle.due(created, 3) == datetime(2026, 1, 19, tzinfo=UTC).timestamp()


def test_lifecycle_plans_by_filter_and_age() -> None:
    rules = lifecycle.validate({"Rules": [
        {"ID": "logs", "Status": "Enabled",
         "Filter": {"And": {"Prefix": "logs/", "Tags": [{"Key": "t", "Value": "1"}]}}, "Expiration": {"Days": 1}},
        {"ID": "old", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 2, "NewerNoncurrentVersions": 1},
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
    ]})
    t0 = 1_700_000_000.0
    assert lifecycle.plan(rules, [_meta("logs/a", t0, tags={"t": "1"})], t0 + 3 * DAY, False) == (True, [])
    assert lifecycle.plan(rules, [_meta("logs/a", t0)], t0 + 3 * DAY, False) == (False, [])
    assert lifecycle.plan(rules, [_meta("logs/a", t0, tags={"t": "1"})], t0 + 0.5 * DAY, False) == (False, [])
    versions = [_meta("k", t0 + 2 * DAY, version="v3"), _meta("k", t0 + DAY, latest=False, version="v2"),
                _meta("k", t0, latest=False, version="v1")]
    expire, gone = lifecycle.plan(rules, versions, t0 + 10 * DAY, True)
    assert not expire and [m.version_id for m in gone] == ["v1"]  # v2 is kept: the newest noncurrent one
    sized = lifecycle.validate({"Rules": [{"Status": "Enabled", "Filter": {"ObjectSizeGreaterThan": 100},
                                           "Expiration": {"Days": 1}}]})
    assert lifecycle.plan(sized, [_meta("s", t0, size=100)], t0 + 3 * DAY, False) == (False, [])
    assert lifecycle.plan(sized, [_meta("s", t0, size=101)], t0 + 3 * DAY, False) == (True, [])
    lone_marker = [_meta("k", t0, marker=True, version="m1")]
    assert [m.version_id for m in lifecycle.plan(rules, lone_marker, t0, True)[1]] == ["m1"]


def test_only_the_prefixes_rules_select_are_listed() -> None:
    def rule(prefix: str, status: str = "Enabled") -> dict[str, Any]:
        return {"Status": status, "Filter": {"Prefix": prefix}, "Expiration": {"Days": 1}}

    assert lifecycle.scan_prefixes([rule("logs/"), rule("logs/2024/"), rule("tmp/"), rule("x/", "Disabled")]) == \
        ["logs/", "tmp/"]
    assert lifecycle.scan_prefixes([rule("logs/"), rule("")]) == [""]


def test_lifecycle_configurations_s3_refuses() -> None:
    with pytest.raises(errors.InvalidArgument, match="positive integer"):
        lifecycle.validate({"Rules": [{"Status": "Enabled", "Filter": {}, "Expiration": {"Days": 0}}]})
    with pytest.raises(errors.InvalidArgument, match="midnight"):
        lifecycle.validate({"Rules": [{"Status": "Enabled", "Filter": {},
                                       "Expiration": {"Date": datetime(2026, 1, 1, 12, tzinfo=UTC)}}]})
    with pytest.raises(errors.InvalidArgument, match="unique"):
        lifecycle.validate({"Rules": [{"ID": "a", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}},
                                      {"ID": "a", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 2}}]})
    with pytest.raises(errors.InvalidRequest, match="At least one action"):
        lifecycle.validate({"Rules": [{"Status": "Enabled", "Filter": {}}]})


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def js(tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    server = NatsServer(tmp_path / "nats")
    url = await server.start()
    nc = await nats.connect(url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()
        await server.stop()


async def test_the_expiry_pass_applies_the_rules_a_year_later(js: JetStreamContext, tmp_path: Path) -> None:
    clock = Clock()
    changes: list[Change] = []
    db = Database.open(None, tmp_path / "objects.db")
    store = Store(js, db, region="us-east-1", clock=clock, on_commit=lambda tx, change: changes.append(change))
    await store.start(background=False)
    try:
        await store.create_bucket("plain", "us-east-1")
        await store.create_bucket("versioned", "us-east-1")
        await store.set_versioning("versioned", "Enabled")
        await store.put("plain", "tmp/a", b"a")
        await store.put("plain", "keep/b", b"b")
        await store.put("versioned", "doc", b"v1")
        await store.put("versioned", "doc", b"v2")
        upload = await store.create_upload("plain", "tmp/big")
        await store.put_config("plain", "lifecycle", lifecycle.validate({"Rules": [
            {"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 30},
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}},
            {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "keep/"}, "Expiration": {"Days": 1}}]}))
        await store.put_config("versioned", "lifecycle", lifecycle.validate({"Rules": [
            {"ID": "all", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 30},
             "NoncurrentVersionExpiration": {"NoncurrentDays": 10}}]}))
        runner = Lifecycle(store, clock)
        assert await runner.run() == 0  # nothing is due yet
        went = await runner.run(now=clock.now + 365 * DAY)
        assert went == 4  # tmp/a, the upload, doc's noncurrent v1, doc's current version (a delete marker)
        assert [m.key for m in (await store.list("plain")).objects] == ["keep/b"]
        assert (await store.uploads("plain"))[0] == []
        with pytest.raises(errors.S3Error) as caught:
            await store.upload("plain", "tmp/big", upload.upload_id)
        assert caught.value.code == "NoSuchUpload"
        versions = (await store.list_versions("versioned")).objects
        assert [(v.delete_marker, v.is_latest) for v in versions] == [(True, True), (False, False)]
        events = sorted(c.event for c in changes if c.event.startswith("LifecycleExpiration"))
        assert events == ["LifecycleExpiration:Delete", "LifecycleExpiration:Delete",
                          "LifecycleExpiration:DeleteMarkerCreated"]
    finally:
        await store.close()
        await db.close()


# -- on a running platform ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform that requires signatures: unsigned requests are anonymous, as on AWS."""
    state = tmp_path_factory.mktemp("s3-web")
    creds = state / "credentials.json"
    creds.write_text(json.dumps({"credentials": [{"accessKeyId": KEY, "secretAccessKey": SECRET,
                                                  "role": "admin"}]}))
    running = Platform(state / "state", ["--credentials", str(creds)]).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def s3(secured: Platform) -> Any:
    return boto3.client("s3", endpoint_url=secured.url, region_name="us-east-1", aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 1},
                                                                    s3={"addressing_style": "path"}))


@pytest.fixture
def bucket(s3: Any) -> str:
    name = unique("web")
    s3.create_bucket(Bucket=name)
    return name


def http(platform: Platform, method: str, path: str, host: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """An unsigned request to the gateway with an explicit Host (a virtual-hosted or website host name)."""
    port = platform.url.rsplit(":", 1)[1]
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                     headers={"Host": f"{host}:{port}", **(headers or {})})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def test_cors_preflight_and_headers_on_responses(secured: Platform, s3: Any, bucket: str) -> None:
    host = f"{bucket}.s3.localhost"
    status, _, body = http(secured, "OPTIONS", "/page.html", host,
                           headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"})
    assert status == 403 and b"<Code>AccessForbidden</Code>" in body and b"CORS is not enabled" in body
    status, _, body = http(secured, "OPTIONS", "/k", f"no-{bucket}.s3.localhost",
                           headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"})
    assert status == 403 and b"CORSResponse: Bucket not found" in body
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["GET", "PUT"],
         "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 300}]})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedMethods"] == ["GET", "PUT"]
    status, headers, _ = http(secured, "OPTIONS", "/page.html", host, headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "Content-Type"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert headers["Access-Control-Allow-Methods"] == "GET, PUT"
    assert headers["Access-Control-Allow-Headers"] == "content-type"
    assert headers["Access-Control-Max-Age"] == "300"
    status, _, body = http(secured, "OPTIONS", "/page.html", host, headers={
        "Origin": "https://evil.example.org", "Access-Control-Request-Method": "GET"})
    assert status == 403 and b"This CORS request is not allowed" in body
    s3.put_object(Bucket=bucket, Key="page.html", Body=b"<p>hi</p>")
    s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
    status, headers, body = http(secured, "GET", "/page.html", host, headers={"Origin": "https://app.example.com"})
    assert (status, body) == (200, b"<p>hi</p>")
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert headers["Access-Control-Expose-Headers"] == "ETag"
    status, headers, _ = http(secured, "GET", "/page.html", host, headers={"Origin": "https://evil.example.org"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    big = bytes(range(256)) * 1024  # streamed from JetStream, not inline: the headers go out with the first bytes
    s3.put_object(Bucket=bucket, Key="big.bin", Body=big)
    status, headers, body = http(secured, "GET", "/big.bin", host, headers={"Origin": "https://app.example.com"})
    assert (status, body, headers["Access-Control-Allow-Origin"]) == (200, big, "https://app.example.com")
    status, headers, _ = http(secured, "GET", "/missing", host, headers={"Origin": "https://app.example.com"})
    assert status == 403 and headers["Access-Control-Allow-Origin"] == "https://app.example.com"  # errors too
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_cors(Bucket=bucket)
    assert caught.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"


def test_a_public_read_policy_lets_unsigned_gets_through(secured: Platform, s3: Any, bucket: str) -> None:
    host = f"{bucket}.s3.localhost"
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"public bytes")
    status, _, body = http(secured, "GET", "/a/b.txt", host)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_policy(Bucket=bucket)
    assert caught.value.response["Error"]["Code"] == "NoSuchBucketPolicy"
    with pytest.raises(ClientError) as caught:
        s3.put_bucket_policy(Bucket=bucket, Policy='{"Statement": []}')
    assert caught.value.response["Error"]["Code"] == "MalformedPolicy"
    s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(public_read(bucket))
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    assert http(secured, "GET", "/a/b.txt", host)[::2] == (200, b"public bytes")
    with urllib.request.urlopen(f"{secured.url}/{bucket}/a/b.txt", timeout=30) as response:  # path-style
        assert response.read() == b"public bytes"
    assert http(secured, "HEAD", "/a/b.txt", host)[0] == 200
    status, _, body = http(secured, "PUT", "/c.txt", host, body=b"x")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    status, _, body = http(secured, "GET", "/", host)  # listing is not granted
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    status, _, body = http(secured, "GET", "/missing.txt", host)  # nor, then, learning which keys are missing
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key="missing.txt")  # the owner may list: 404
    assert caught.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as caught:
        s3.get_public_access_block(Bucket=bucket)
    assert caught.value.response["Error"]["Code"] == "NoSuchPublicAccessBlockConfiguration"
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "RestrictPublicBuckets": True, "BlockPublicPolicy": True})
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    assert http(secured, "GET", "/a/b.txt", host)[0] == 403  # the public policy grants anonymous callers nothing
    with pytest.raises(ClientError) as caught:
        s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    assert "BlockPublicPolicy" in caught.value.response["Error"]["Message"]
    s3.delete_public_access_block(Bucket=bucket)
    assert http(secured, "GET", "/a/b.txt", host)[0] == 200
    s3.delete_bucket_policy(Bucket=bucket)
    assert http(secured, "GET", "/a/b.txt", host)[0] == 403


def test_a_static_site_with_index_and_error_documents(secured: Platform, s3: Any, bucket: str) -> None:
    site = f"{bucket}.s3-website.localhost"
    status, _, body = http(secured, "GET", "/", site)
    assert status == 404 and b"NoSuchWebsiteConfiguration" in body
    for key, text in (("index.html", "<h1>home</h1>"), ("docs/index.html", "<h1>docs</h1>"),
                      ("error.html", "<h1>oops</h1>")):
        s3.put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType="text/html")
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration={
        "IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "error.html"}})
    assert s3.get_bucket_website(Bucket=bucket)["IndexDocument"] == {"Suffix": "index.html"}
    status, _, body = http(secured, "GET", "/", site)
    assert status == 403 and b"<li>Code: AccessDenied</li>" in body  # not public yet, nor is the error document
    s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
    status, headers, body = http(secured, "GET", "/", site)
    assert (status, body) == (200, b"<h1>home</h1>") and headers["Content-Type"] == "text/html"
    assert http(secured, "GET", "/docs/", site)[::2] == (200, b"<h1>docs</h1>")
    status, headers, body = http(secured, "GET", "/index.html", site, headers={"Range": "bytes=4-7"})
    assert (status, body, headers["Content-Range"]) == (206, b"home", "bytes 4-7/13")
    assert http(secured, "GET", "/", site, headers={"If-None-Match": headers["ETag"]})[0] == 304
    status, headers, _ = http(secured, "GET", "/docs", site)
    assert status == 302 and headers["Location"] == "/docs/"
    # who may not list the bucket gets 403 for a missing key (the error document still answers it)
    assert http(secured, "GET", "/no/such/page.html", site)[::2] == (403, b"<h1>oops</h1>")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [
        *json.loads(public_read(bucket))["Statement"],
        {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"}]}))
    assert http(secured, "GET", "/no/such/page.html", site)[::2] == (404, b"<h1>oops</h1>")
    status, _, body = http(secured, "POST", "/", site, body=b"x")
    assert status == 405 and b"405 Method Not Allowed" in body
    s3.delete_object(Bucket=bucket, Key="error.html")
    status, headers, body = http(secured, "GET", "/missing", site)
    assert status == 404 and headers["Content-Type"].startswith("text/html")
    assert b"<li>Code: NoSuchKey</li>" in body and b"Custom Error Document" in body
    other = unique("web")
    s3.create_bucket(Bucket=other)
    s3.put_bucket_website(Bucket=other, WebsiteConfiguration={
        "RedirectAllRequestsTo": {"HostName": "example.com", "Protocol": "https"}})
    status, headers, _ = http(secured, "GET", "/a/b?c=d", f"{other}.s3-website-us-east-1.localhost")
    assert status == 301 and headers["Location"] == "https://example.com/a/b?c=d"
    s3.put_object(Bucket=bucket, Key="moved.html", Body=b"", WebsiteRedirectLocation="/docs/")
    status, headers, _ = http(secured, "GET", "/moved.html", site)
    assert status == 301 and headers["Location"] == "/docs/"
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration={
        "IndexDocument": {"Suffix": "index.html"}, "RoutingRules": [
            {"Condition": {"KeyPrefixEquals": "old/"}, "Redirect": {"ReplaceKeyPrefixWith": "docs/"}},
            {"Condition": {"HttpErrorCodeReturnedEquals": "404"},
             "Redirect": {"HostName": "elsewhere.example.com", "Protocol": "https", "HttpRedirectCode": "302"}}]})
    status, headers, _ = http(secured, "GET", "/old/a.html", site)
    assert status == 301 and headers["Location"] == f"http://{site}:{secured.url.rsplit(':', 1)[1]}/docs/a.html"
    status, headers, _ = http(secured, "GET", "/gone.html", site)
    assert status == 302 and headers["Location"] == "https://elsewhere.example.com/gone.html"
    s3.delete_bucket_website(Bucket=bucket)
    assert http(secured, "GET", "/", site)[0] == 404


def test_a_site_published_with_the_aws_cli(secured: Platform, bucket: str, tmp_path: Path) -> None:
    """How a site is published by hand: ``aws s3 sync`` of a folder, ``aws s3 website``, ``aws s3api
    put-bucket-policy``; then served on the website host with the types sync guessed."""
    site = tmp_path / "site"
    (site / "blog").mkdir(parents=True)
    (site / "index.html").write_text("<h1>welcome</h1>")
    (site / "blog" / "index.html").write_text("<h1>blog</h1>")
    (site / "404.html").write_text("<h1>not here</h1>")
    (site / "style.css").write_text("h1 { color: red }")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": str(tmp_path / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-creds")}
    env.pop("AWS_ENDPOINT_URL", None)
    for args in (["s3", "sync", str(site), f"s3://{bucket}"],
                 ["s3", "website", f"s3://{bucket}", "--index-document", "index.html", "--error-document", "404.html"],
                 ["s3api", "put-bucket-policy", "--bucket", bucket, "--policy", public_read(bucket)]):
        done = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", secured.url, *args],
                              capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, f"aws {' '.join(args)}: {done.stdout}\n{done.stderr}"
    host = f"{bucket}.s3-website-us-east-1.localhost"
    status, headers, body = http(secured, "GET", "/", host)
    assert (status, body, headers["Content-Type"]) == (200, b"<h1>welcome</h1>", "text/html")
    assert http(secured, "GET", "/blog/", host)[::2] == (200, b"<h1>blog</h1>")
    status, headers, _ = http(secured, "GET", "/style.css", host)
    assert status == 200 and headers["Content-Type"] == "text/css"
    assert http(secured, "GET", "/nope", host)[::2] == (403, b"<h1>not here</h1>")  # no s3:ListBucket granted


def _form(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode()
    out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def _post(platform: Platform, bucket: str, fields: dict[str, str], filename: str,
          data: bytes) -> tuple[int, dict[str, str], bytes]:
    body, content_type = _form(fields, filename, data)
    return http(platform, "POST", "/", f"{bucket}.s3.localhost", body=body, headers={"Content-Type": content_type})


@pytest.mark.parametrize("version", ["s3v4", "s3"])
def test_a_browser_post_upload_with_a_signed_policy(secured: Platform, s3: Any, version: str, bucket: str) -> None:
    """boto3 signs a POST policy with signature version 2 unless told ``s3v4``: both are taken."""
    signer = boto3.client("s3", endpoint_url=secured.url, region_name="us-east-1", aws_access_key_id=KEY,
                          aws_secret_access_key=SECRET, config=Config(signature_version=version))
    tagging = "<Tagging><TagSet><Tag><Key>from</Key><Value>form</Value></Tag></TagSet></Tagging>"
    post = signer.generate_presigned_post(
        bucket, "uploads/${filename}",
        Fields={"success_action_status": "201", "Content-Type": "text/plain", "tagging": tagging},
        Conditions=[{"success_action_status": "201"}, {"Content-Type": "text/plain"}, {"tagging": tagging},
                    ["content-length-range", 1, 1000]], ExpiresIn=600)
    status, headers, body = _post(secured, bucket, post["fields"], "hello.txt", b"hello from a form")
    assert status == 201, body
    assert b"<Key>uploads/hello.txt</Key>" in body and b"<Bucket>" + bucket.encode() in body
    got = s3.get_object(Bucket=bucket, Key="uploads/hello.txt")
    assert got["Body"].read() == b"hello from a form" and got["ContentType"] == "text/plain"
    assert got["ETag"] == headers["ETag"]
    assert s3.get_object_tagging(Bucket=bucket, Key="uploads/hello.txt")["TagSet"] == [{"Key": "from", "Value": "form"}]
    status, _, body = _post(secured, bucket, post["fields"], "big.txt", b"x" * 2000)
    assert status == 400 and b"<Code>EntityTooLarge</Code>" in body
    status, _, body = _post(secured, bucket, post["fields"], "empty.txt", b"")
    assert status == 400 and b"<Code>EntityTooSmall</Code>" in body
    status, _, body = _post(secured, bucket, {**post["fields"], "key": "elsewhere/x.txt"}, "x.txt", b"x")
    assert status == 403 and b"Policy Condition failed" in body and b"starts-with" in body
    status, _, body = _post(secured, bucket, {**post["fields"], "x-amz-meta-extra": "1"}, "x.txt", b"x")
    assert status == 403 and b"Extra input fields: x-amz-meta-extra" in body
    forged = {**post["fields"], "x-amz-signature" if version == "s3v4" else "signature": "0" * 64}
    status, _, body = _post(secured, bucket, forged, "x.txt", b"x")
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["uploads/hello.txt"]
    body, content_type = _form(post["fields"], "again.txt", b"to the path-style URL boto3 gave")
    request = urllib.request.Request(post["url"], data=body, method="POST", headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
    assert s3.get_object(Bucket=bucket, Key="uploads/again.txt")["Body"].read() == b"to the path-style URL boto3 gave"
    status, _, body = _post(secured, bucket, {"key": "anon.txt"}, "anon.txt", b"x")  # no policy: anonymous
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    for content_type, garbage in (("multipart/form-data; boundary=b", b"not a form at all"),
                                  ("multipart/form-data", b"--b\r\n\r\n"),
                                  ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data\r\n")):
        status, _, body = http(secured, "POST", "/", f"{bucket}.s3.localhost", body=garbage,
                               headers={"Content-Type": content_type})
        assert status == 400 and b"<Code>MalformedPOSTRequest</Code>" in body, (garbage, body)


def test_a_post_policy_signed_with_a_functions_role_credentials(secured: Platform, s3: Any, bucket: str) -> None:
    """A function hands a browser a form signed with its execution role's session: the token proves it, and the
    bucket's policy (the role has no permissions of its own here) decides."""
    role = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/uploader"
    key = roles.read_key(str(secured.state_dir / "keys" / "roles.key"))
    session = roles.mint(key, role, f"arn:aws:lambda:us-east-1:{DEFAULT_ACCOUNT}:function:signer", time.time())
    signer = boto3.client("s3", endpoint_url=secured.url, region_name="us-east-1",
                          aws_access_key_id=session.access_key, aws_secret_access_key=session.secret,
                          aws_session_token=session.token, config=Config(signature_version="s3v4"))
    post = signer.generate_presigned_post(bucket, "from-role.txt", ExpiresIn=600)
    assert "x-amz-security-token" in post["fields"]
    status, _, body = _post(secured, bucket, post["fields"], "f.txt", b"signed by a role")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": role}, "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    status, _, body = _post(secured, bucket, post["fields"], "f.txt", b"signed by a role")
    assert status == 204, body
    assert s3.get_object(Bucket=bucket, Key="from-role.txt")["Body"].read() == b"signed by a role"
    forged = {**post["fields"], "x-amz-security-token": post["fields"]["x-amz-security-token"][:-2] + "xx"}
    status, _, body = _post(secured, bucket, forged, "f.txt", b"x")
    assert status == 403 and b"<Code>InvalidAccessKeyId</Code>" in body


def test_without_credentials_forms_and_sites_work_from_loopback(platform: Platform) -> None:
    """``kambda up``'s default: nothing to verify a form's signature with, so the loopback caller is admin; the
    policy's conditions still hold, and the website endpoint is still anonymous."""
    s3 = boto3.client("s3", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x", config=Config(signature_version="s3v4"))
    name = unique("open")
    s3.create_bucket(Bucket=name)
    post = s3.generate_presigned_post(name, "f.txt", Conditions=[["content-length-range", 0, 10]])
    assert _post(platform, name, post["fields"], "f.txt", b"short")[0] == 204
    assert _post(platform, name, post["fields"], "f.txt", b"far too long")[0] == 400
    assert s3.get_object(Bucket=name, Key="f.txt")["Body"].read() == b"short"
    s3.put_bucket_website(Bucket=name, WebsiteConfiguration={"IndexDocument": {"Suffix": "f.txt"}})
    assert http(platform, "GET", "/", f"{name}.s3-website.localhost")[0] == 403
    s3.put_bucket_policy(Bucket=name, Policy=public_read(name))
    assert http(platform, "GET", "/", f"{name}.s3-website.localhost")[::2] == (200, b"short")


def test_lifecycle_configuration_through_the_api(s3: Any, bucket: str) -> None:
    rules = [{"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 7},
              "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
             {"ID": "old", "Status": "Enabled", "Filter": {"Tag": {"Key": "old", "Value": "yes"}},
              "Expiration": {"Date": datetime(2030, 1, 1, tzinfo=UTC)},
              "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert got == rules
    with pytest.raises(ClientError) as caught:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
            {"ID": "x", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 0}}]})
    assert caught.value.response["Error"]["Code"] == "InvalidArgument"
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError) as caught:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert caught.value.response["Error"]["Code"] == "NoSuchLifecycleConfiguration"
