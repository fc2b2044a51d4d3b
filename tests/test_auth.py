"""SigV4 authentication and IAM-style permissions: the canonical request against botocore's signer,
policy evaluation, credential reloading, and a platform started with a credentials file that boto3,
the AWS CLI, the kambda CLI and hand-made bad signatures talk to for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from kambda.aws import errors, sigv4
from kambda.aws.auth import CredentialsError, CredentialStore, parse_credentials
from kambda.aws.policy import Permissions, Policy, PolicyError
from kambda.cli.up import Platform as UpPlatform
from kambda.cli.up import UpOptions
from kambda.settings import bind_refusal
from tests.conftest import REPO, Platform, make_zip, unique, wait_for

ACCOUNT = "000000000000"
FN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:"
HANDLER = "def handler(event, context):\n    return {'ok': True, 'event': event}\n"

# -- the canonical request, against botocore's signer ----------------------------------------


def _sign(url: str, method: str = "GET", body: bytes = b"", headers: dict[str, str] | None = None,
          when: datetime | None = None, token: str | None = None, secret: str = "SECRET",
          query_form: bool = False) -> AWSRequest:
    """A request signed by botocore's own signer at ``when`` (its pieces, with the clock fixed)."""
    credentials = Credentials("AKIDTEST", secret, token)
    signer = (SigV4QueryAuth(credentials, "lambda", "us-east-1", expires=300) if query_form
              else SigV4Auth(credentials, "lambda", "us-east-1"))
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    request.context["timestamp"] = (when or datetime.now(UTC)).strftime(SIGV4_TIMESTAMP)
    signer._modify_request_before_signing(request)
    canonical = signer.canonical_request(request)
    request.context["canonical"] = canonical
    signer._inject_signature_to_request(request, signer.signature(signer.string_to_sign(request, canonical),
                                                                   request))
    return request


def _verify(request: AWSRequest, secret: str = "SECRET", now: datetime | None = None) -> str:
    """Verify a botocore-signed request with kambda's verifier, as the gateway would see it."""
    parts = urllib.parse.urlsplit(request.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {k: v for k, v in request.headers.items()}
    headers.setdefault("Host", parts.netloc)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    signed = sigv4.parse(headers, query)
    assert signed is not None
    sigv4.check_time(signed, now or signed.date)
    lower: dict[str, list[str]] = {}
    for name, value in headers.items():
        lower.setdefault(name.lower(), []).append(value)
    body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
    canonical = sigv4.canonical_request(request.method, target, lower, signed.signed_headers,
                                        sigv4.payload_hash(headers, body))
    sigv4.verify(signed, secret, canonical)
    return canonical


ODD_URLS = [
    "http://127.0.0.1:8042/2015-03-31/functions/",
    "http://127.0.0.1:8042/2015-03-31/functions/" + urllib.parse.quote(f"{FN}fn:$LATEST", safe="") + "/invocations",
    "http://127.0.0.1:8042/a%20b/c%2Fd/%E2%82%AC/~tilde",
    "http://127.0.0.1:8042/a/./b/../c//d/",
    "http://127.0.0.1:8042/2015-03-31/functions/?MaxItems=5&Marker=a%20b&Marker=%E2%82%AC",
    "http://127.0.0.1:8042/x?b=2&a=&a=1&empty=&c=%2F%3D%26&Z=upper",
    "http://localhost/x?k=v~v-_.",
]


@pytest.mark.parametrize("url", ODD_URLS)
def test_canonical_request_matches_botocore(url: str) -> None:
    request = _sign(url, "POST", b'{"a": "\xe2\x82\xac"}', {"Content-Type": "application/json",
                                                           "X-Amz-Log-Type": "  Tail   x  "})
    assert _verify(request) == request.context["canonical"]


@pytest.mark.parametrize("url", ODD_URLS[:5])
def test_presigned_query_form_matches_botocore(url: str) -> None:
    request = _sign(url, query_form=True, token="TOKEN")
    assert _verify(request) == request.context["canonical"]


def test_botocore_add_auth_verifies_with_the_real_clock() -> None:
    request = AWSRequest(method="PUT", url="http://h:1/2015-03-31/functions/f/code", data=b"{}")
    SigV4Auth(Credentials("AKIDTEST", "SECRET"), "lambda", "us-east-1").add_auth(request)
    _verify(request, now=datetime.now(UTC))
    with pytest.raises(errors.InvalidSignature, match="does not match the signature you provided"):
        _verify(request, secret="OTHER", now=datetime.now(UTC))


def test_skew_and_expiry_use_the_injected_clock() -> None:
    t0 = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
    request = _sign("http://h/x", when=t0)
    _verify(request, now=t0 + timedelta(minutes=14))
    with pytest.raises(errors.InvalidSignature) as expired:
        _verify(request, now=t0 + timedelta(minutes=16))
    assert str(expired.value) == ("Signature expired: 20260131T120000Z is now earlier than 20260131T120100Z "
                                  "(20260131T121600Z - 15 min.)")
    with pytest.raises(errors.InvalidSignature, match="Signature not yet current"):
        _verify(request, now=t0 - timedelta(minutes=16))
    presigned = _sign("http://h/x", when=t0, query_form=True)  # expires in 300 s
    _verify(presigned, now=t0 + timedelta(seconds=299))
    with pytest.raises(errors.InvalidSignature, match="Signature expired"):
        _verify(presigned, now=t0 + timedelta(seconds=301))


def test_date_header_instead_of_x_amz_date() -> None:
    request = _sign("http://h/x", headers={"Date": "Sat, 31 Jan 2026 12:00:00 GMT"})
    assert "X-Amz-Date" not in request.headers
    _verify(request)


def test_malformed_signatures_are_incomplete() -> None:
    for authorization in ("AWS4-HMAC-SHA256 Credential=AKID/20260131/us-east-1/lambda/aws4_request",
                          "AWS4-HMAC-SHA1 Credential=a, SignedHeaders=host, Signature=00",
                          "AWS4-HMAC-SHA256 garbage"):
        with pytest.raises(errors.IncompleteSignature):
            sigv4.parse({"Authorization": authorization, "X-Amz-Date": "20260131T120000Z"}, {})
    with pytest.raises(errors.InvalidSignature, match="'Host' or ':authority' must be a 'SignedHeader'"):
        sigv4.parse({"Authorization": "AWS4-HMAC-SHA256 Credential=A/20260131/us-east-1/lambda/aws4_request, "
                                      "SignedHeaders=x-amz-date, Signature=00", "X-Amz-Date": "20260131T120000Z"}, {})
    assert sigv4.parse({}, {"Qualifier": "1"}) is None


def test_tampered_payload_hash_is_refused() -> None:
    request = _sign("http://h/x", "POST", b'{"a": 1}')
    request.data = b'{"a": 2}'
    with pytest.raises(errors.InvalidSignature):
        _verify(request)
    claimed = _sign("http://h/x", "POST", b'{"a": 1}', {"X-Amz-Content-SHA256": sigv4.EMPTY_SHA256})
    with pytest.raises(errors.InvalidSignature, match="x-amz-content-sha256"):
        _verify(claimed)


# -- policies --------------------------------------------------------------------------------


def test_policy_wildcards_deny_wins_and_default_deny() -> None:
    policy = Policy.parse({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["lambda:Invoke*", "lambda:GetFunction"], "Resource": f"{FN}team-?-*"},
        {"Effect": "Deny", "Action": "lambda:InvokeFunction", "Resource": f"{FN}team-a-secret*"},
    ]})
    assert policy.decide("lambda:InvokeFunction", f"{FN}team-a-web") is True
    assert policy.decide("LAMBDA:invokefunction", f"{FN}team-b-web") is True  # actions ignore case
    assert policy.decide("lambda:InvokeFunction", f"{FN}TEAM-a-web") is None  # resources do not
    assert policy.decide("lambda:InvokeFunction", f"{FN}team-ab-web") is None
    assert policy.decide("lambda:InvokeFunction", f"{FN}team-a-secret") is False
    assert policy.decide("lambda:DeleteFunction", f"{FN}team-a-web") is None
    assert policy.decide("lambda:InvokeFunction", f"{FN}team-a[1]") is None  # [ is literal


def test_role_and_policy_must_both_allow() -> None:
    narrowed = Permissions.of("invoker", {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": f"{FN}a-*"}]})
    assert narrowed.allows("lambda:InvokeFunction", f"{FN}a-1")
    assert not narrowed.allows("lambda:InvokeFunction", f"{FN}b-1")
    assert not narrowed.allows("lambda:CreateFunction", f"{FN}a-1")
    deployer = Permissions.of("deployer", None)
    assert deployer.allows("lambda:CreateFunction", f"{FN}x") and deployer.allows("events:PutRule", "*")
    assert not deployer.allows("kambda:UndeclaredOperation", "*")
    invoker = Permissions.of("invoker", None)
    assert invoker.allows("lambda:GetFunctionConfiguration", f"{FN}x")
    assert not invoker.allows("lambda:DeleteFunction", f"{FN}x")


@pytest.mark.parametrize("document, message", [
    ({"Statement": []}, "non-empty Statement"),
    ({"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}, "Effect must be Allow or Deny"),
    ({"Statement": [{"Effect": "Allow", "Action": "*"}]}, "Resource must be"),
    ({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {}}]}, "Condition"),
])
def test_bad_policies_name_the_problem(document: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.parse(document)


# -- the credentials file --------------------------------------------------------------------


def _credentials(*entries: dict[str, Any]) -> str:
    return json.dumps({"credentials": list(entries)})


def _key(key: str, role: str | None = "admin", **extra: Any) -> dict[str, Any]:
    entry = {"accessKeyId": key, "secretAccessKey": f"{key}-secret", **extra}
    if role is not None:
        entry["role"] = role
    return entry


def test_bad_credentials_files_are_refused_with_the_reason() -> None:
    for text, message in (("{", "is not JSON"), ("[]", "must be"), (_credentials(), "holds no credentials"),
                          (_credentials({"accessKeyId": "A"}), "needs accessKeyId and secretAccessKey"),
                          (_credentials(_key("A"), _key("A")), "appears twice"),
                          (_credentials(_key("A", "root")), "role must be one of"),
                          (_credentials(_key("A", None)), "needs a role, a policy, or both")):
        with pytest.raises(CredentialsError, match=message):
            parse_credentials(text, "creds.json")


def test_store_follows_symlink_swaps_and_keeps_the_last_good_file(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """The way a Kubernetes Secret volume updates: a new directory, then ..data swapped to it."""
    clock = [0.0]

    def swap(name: str, text: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "credentials.json").write_text(text)
        (tmp_path / "..data.tmp").symlink_to(name)
        os.replace(tmp_path / "..data.tmp", tmp_path / "..data")

    swap("v1", _credentials(_key("OLD")))
    (tmp_path / "credentials.json").symlink_to("..data/credentials.json")
    store = CredentialStore(tmp_path / "credentials.json", monotonic=lambda: clock[0])
    assert store.get("OLD") is not None
    swap("v2", _credentials(_key("NEW", "invoker")))
    assert store.get("NEW") is None  # not re-checked within the interval
    clock[0] += 1
    assert store.get("NEW") is not None and store.get("OLD") is None
    swap("v3", "{not json")
    clock[0] += 1
    assert store.get("NEW") is not None
    assert "is not JSON" in caplog.text and "keeping the last good credentials" in caplog.text


def test_bind_refusal() -> None:
    assert bind_refusal("127.0.0.1", "", False) is None
    assert bind_refusal("::1", "", False) is None
    assert bind_refusal("localhost", "", False) is None
    assert "refusing to listen on 0.0.0.0" in str(bind_refusal("0.0.0.0", "", False))
    assert bind_refusal("0.0.0.0", "/creds.json", False) is None
    assert bind_refusal("0.0.0.0", "", True) is None


# -- a platform that requires signatures -----------------------------------------------------

TEAM_A_ONLY = {"Statement": [{"Effect": "Allow", "Action": "lambda:*", "Resource": f"{FN}team-a-*"}]}
NO_DELETE = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"},
                           {"Effect": "Deny", "Action": "lambda:DeleteFunction", "Resource": f"{FN}keep-*"}]}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    state = tmp_path_factory.mktemp("kambda-auth")
    creds = state / "credentials.json"
    creds.write_text(_credentials(_key("ADMIN"), _key("DEPLOYER", "deployer", policy=TEAM_A_ONLY),
                                  _key("INVOKER", "invoker"), _key("GUARDED", "admin", policy=NO_DELETE),
                                  _key("TEMP", "admin", sessionToken="the-session-token")))
    running = Platform(state / "state", ["--credentials", str(creds)]).start()
    running.credentials_file = creds  # type: ignore[attr-defined]
    yield running
    running.stop()


def client(platform: Platform, key: str, secret: str | None = None, token: str | None = None) -> Any:
    return boto3.client("lambda", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret or f"{key}-secret", aws_session_token=token,
                        config=Config(retries={"max_attempts": 1}, read_timeout=120))


def _create(lam: Any, name: str) -> None:
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                        Role=f"arn:aws:iam::{ACCOUNT}:role/x", Code={"ZipFile": make_zip({"app.py": HANDLER})})


def _code(exc: Any) -> tuple[int, str, str]:
    """Status, code and message of a ClientError (or of the one a pytest.raises caught)."""
    err = getattr(exc, "value", exc).response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err["Error"].get("Message", "")


def _send(request: AWSRequest) -> tuple[int, str, dict[str, Any]]:
    """Send a hand-made (signed or not) request; the status, x-amzn-ErrorType and JSON body."""
    data = request.body if request.body else None
    req = urllib.request.Request(request.url, data=data, method=request.method, headers=dict(request.headers))
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, "", json.loads(response.read() or b"null") or {}
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("x-amzn-ErrorType", ""), json.loads(exc.read() or b"null") or {}


def test_roles_with_boto3(secured: Platform) -> None:
    admin, deployer, invoker = (client(secured, k) for k in ("ADMIN", "DEPLOYER", "INVOKER"))
    other, mine = unique("team-b"), unique("team-a")
    _create(admin, other)
    _create(deployer, mine)  # a deployer creates what its policy covers
    response = deployer.invoke(FunctionName=mine, Payload=b'{"n": 1}')
    assert json.loads(response["Payload"].read()) == {"ok": True, "event": {"n": 1}}
    with pytest.raises(deployer.exceptions.ClientError) as denied:
        deployer.invoke(FunctionName=other, Payload=b"{}")
    assert _code(denied) == (403, "AccessDeniedException",
                             f"User: arn:aws:iam::{ACCOUNT}:user/DEPLOYER is not authorized to perform: "
                             f"lambda:InvokeFunction on resource: {FN}{other}")
    with pytest.raises(deployer.exceptions.ClientError) as denied:
        _create(deployer, unique("team-b"))
    assert _code(denied)[1] == "AccessDeniedException"
    qualified = invoker.invoke(FunctionName=other, Qualifier="$LATEST", Payload=b'{"k": "v"}')
    assert json.loads(qualified["Payload"].read())["event"] == {"k": "v"}
    assert invoker.get_function_configuration(FunctionName=other)["FunctionName"] == other
    location = invoker.get_function(FunctionName=other)["Code"]["Location"]  # presigned, as on AWS
    with urllib.request.urlopen(location, timeout=30) as response:
        assert response.read() == make_zip({"app.py": HANDLER})
    assert _send(AWSRequest("GET", location.split("?")[0]))[1] == "MissingAuthenticationTokenException"
    assert _send(AWSRequest("GET", location[:-4] + "0000"))[1] == "InvalidSignatureException"
    for attempt in (lambda: _create(invoker, unique("team-a")), lambda: invoker.delete_function(FunctionName=other),
                    lambda: invoker.update_function_configuration(FunctionName=other, Timeout=5),
                    lambda: invoker.list_functions()):
        with pytest.raises(invoker.exceptions.ClientError) as denied:
            attempt()
        assert _code(denied)[:2] == (403, "AccessDeniedException")
    assert admin.get_function(FunctionName=other)["Configuration"]["FunctionName"] == other  # still there
    deployer.delete_function(FunctionName=mine)
    admin.delete_function(FunctionName=other)


def test_function_urls_with_aws_iam(secured: Platform) -> None:
    admin = client(secured, "ADMIN")
    name = unique("team-b-url")
    _create(admin, name)
    url = admin.create_function_url_config(FunctionName=name, AuthType="AWS_IAM",
                                           Cors={"AllowOrigins": ["https://app.example"]})["FunctionUrl"]

    def call(key: str | None) -> tuple[int, str, dict[str, Any]]:
        request = AWSRequest(method="GET", url=url + "hello", headers={"Origin": "https://app.example"})
        if key:
            SigV4Auth(Credentials(key, f"{key}-secret"), "lambda", "us-east-1").add_auth(request)
        return _send(request)

    status, code, body = call(None)
    assert (status, code, body) == (403, "AccessDeniedException", {"Message": "Forbidden"})
    assert call("DEPLOYER")[:2] == (403, "AccessDeniedException")  # its policy covers team-a-* only
    status, _, event = call("INVOKER")
    assert status == 200 and event["event"]["rawPath"] == "/hello"
    admin.update_function_url_config(FunctionName=name, AuthType="NONE")
    assert call(None)[0] == 200


def test_event_bus_actions(secured: Platform) -> None:
    def events(key: str, secret: str | None = None) -> Any:
        return boto3.client("events", endpoint_url=secured.url, region_name="us-east-1", aws_access_key_id=key,
                            aws_secret_access_key=secret or f"{key}-secret", config=Config(retries={"max_attempts": 1}))

    put = events("INVOKER").put_events(Entries=[{"Source": "app", "DetailType": "t", "Detail": "{}"}])
    assert put["FailedEntryCount"] == 0
    with pytest.raises(ClientError) as denied:
        events("INVOKER").put_rule(Name=unique("rule"), EventPattern='{"source": ["app"]}')
    assert _code(denied)[:2] == (400, "AccessDeniedException")  # JSON 1.1 APIs answer client errors 400
    with pytest.raises(ClientError) as unknown:
        events("NOBODY").list_rules()
    assert _code(unknown)[:2] == (403, "UnrecognizedClientException")
    rule = unique("rule")
    assert events("ADMIN").put_rule(Name=rule, EventPattern='{"source": ["app"]}')["RuleArn"].endswith(rule)


def test_explicit_deny_wins(secured: Platform) -> None:
    guarded = client(secured, "GUARDED")
    kept, plain = unique("keep"), unique("plain")
    _create(guarded, kept)
    _create(guarded, plain)
    with pytest.raises(guarded.exceptions.ClientError) as denied:
        guarded.delete_function(FunctionName=kept)
    assert _code(denied)[:2] == (403, "AccessDeniedException")
    guarded.delete_function(FunctionName=plain)
    client(secured, "ADMIN").delete_function(FunctionName=kept)


def test_error_codes_of_bad_signatures(secured: Platform) -> None:
    url = f"{secured.url}/2015-03-31/functions/"

    def expect(request: AWSRequest, status: int, code: str, message: str = "") -> None:
        got_status, got_code, body = _send(request)
        assert (got_status, got_code) == (status, code), body
        assert message in body.get("message", "")

    expect(AWSRequest("GET", url), 403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    expect(_sign(url), 403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    wrong = _sign(url, secret="nope")
    wrong.headers.replace_header("Authorization", wrong.headers["Authorization"].replace("AKIDTEST", "ADMIN"))
    expect(wrong, 403, "InvalidSignatureException", "The request signature we calculated does not match")

    def admin(**kw: Any) -> AWSRequest:
        request = _sign(kw.pop("url", url), secret="ADMIN-secret", **kw)
        request.headers.replace_header("Authorization", request.headers["Authorization"].replace("AKIDTEST", "ADMIN"))
        return request

    assert _send(admin())[0] == 200
    expect(admin(when=datetime.now(UTC) - timedelta(minutes=20)), 403, "InvalidSignatureException",
           "Signature expired:")
    tampered = admin(method="PUT", url=f"{url}x/configuration", body=b'{"Timeout": 5}')
    tampered.data = b'{"Timeout": 9}'
    expect(tampered, 403, "InvalidSignatureException", "does not match the signature")
    claimed = admin(method="PUT", url=f"{url}x/configuration", body=b'{"Timeout": 5}',
                    headers={"X-Amz-Content-SHA256": sigv4.EMPTY_SHA256})
    expect(claimed, 403, "InvalidSignatureException", "x-amz-content-sha256")
    unsigned_header = admin(headers={"X-Amz-Log-Type": "Tail"})
    del unsigned_header.headers["X-Amz-Log-Type"]  # signed, then dropped on the way
    expect(unsigned_header, 403, "InvalidSignatureException", "does not match the signature")
    no_host = admin()
    no_host.headers.replace_header("Authorization", no_host.headers["Authorization"].replace(
        "SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date"))
    expect(no_host, 403, "InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader'")
    presigned = _sign(url, query_form=True, secret="ADMIN-secret")
    renamed = AWSRequest("GET", presigned.url.replace("Credential=AKIDTEST", "Credential=ADMIN"))
    expect(renamed, 403, "InvalidSignatureException")  # the credential is part of what is signed
    token = _sign(url, secret="TEMP-secret", token="the-session-token")
    token.headers.replace_header("Authorization", token.headers["Authorization"].replace("AKIDTEST", "TEMP").replace(
        ";x-amz-security-token", ""))
    expect(token, 403, "InvalidSignatureException", "X-Amz-Security-Token must be a signed header")
    expect(AWSRequest("GET", url, headers={"Authorization": "AWS4-HMAC-SHA256 nonsense"}), 400,
           "IncompleteSignatureException")
    assert secured.get_json("/_kambda/health")[0] == 200  # public
    with urllib.request.urlopen(secured.url + "/metrics", timeout=30) as response:  # public on loopback
        assert response.status == 200 and b"# TYPE" in response.read()
    assert secured.get_json("/_kambda/v1/functions/anything")[0] == 403


def test_bytes_that_are_not_utf8_get_a_4xx(secured: Platform) -> None:
    import socket

    host, port = urllib.parse.urlsplit(secured.url).netloc.split(":")
    amz_date = datetime.now(UTC).strftime(SIGV4_TIMESTAMP)
    for target, extra in ((b"/2015-03-31/functions/\xff\xfe/configuration", b""),
                          (b"/2015-03-31/functions/", b"X-Odd: \xff\xfe\r\n")):
        request = (b"GET " + target + b" HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\n" + extra
                   + b"X-Amz-Date: " + amz_date.encode() + b"\r\nAuthorization: AWS4-HMAC-SHA256 Credential=ADMIN/"
                   + amz_date[:8].encode() + b"/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date;x-odd, "
                   b"Signature=" + b"0" * 64 + b"\r\nConnection: close\r\n\r\n")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]
    assert secured.get_json("/_kambda/health")[0] == 200


def test_presigned_query_string_request(secured: Platform) -> None:
    signer = SigV4QueryAuth(Credentials("INVOKER", "INVOKER-secret"), "lambda", "us-east-1", expires=60)
    name = unique("presign")
    _create(client(secured, "ADMIN"), name)
    request = AWSRequest("GET", f"{secured.url}/2015-03-31/functions/{name}/configuration")
    signer.add_auth(request)
    status, _, body = _send(request)
    assert status == 200 and body["FunctionName"] == name
    request = AWSRequest("GET", f"{secured.url}/2015-03-31/functions/{name}/configuration?Qualifier=%24LATEST")
    signer.add_auth(request)
    assert _send(request)[0] == 200
    bad = AWSRequest("GET", request.url[:-4] + "0000")
    assert _send(bad)[:2] == (403, "InvalidSignatureException")
    client(secured, "ADMIN").delete_function(FunctionName=name)


def test_session_tokens(secured: Platform) -> None:
    assert "Functions" in client(secured, "TEMP", token="the-session-token").list_functions()
    for token in (None, "another-token"):
        with pytest.raises(ClientError) as refused:
            client(secured, "TEMP", token=token).list_functions()
        assert _code(refused)[:2] == (403, "UnrecognizedClientException")
    with pytest.raises(ClientError) as refused:
        client(secured, "ADMIN", token="not-expected").list_functions()
    assert _code(refused)[:2] == (403, "UnrecognizedClientException")


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    mine = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**mine, "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
                               "AWS_MAX_ATTEMPTS": "1",
                               "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", **env})


def _keys(key: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": f"{key}-secret"}


def test_aws_cli_and_kambda_cli_sign(secured: Platform, tmp_path: Path) -> None:
    name = unique("cli")
    done = _cli([sys.executable, "-m", "kambda.cli", "--endpoint", secured.url, "deploy", "examples/hello",
                 "--name", name], _keys("ADMIN"))
    assert done.returncode == 0, done.stderr
    unsigned = _cli([sys.executable, "-m", "kambda.cli", "--endpoint", secured.url, "ls"], {})
    assert unsigned.returncode == 1 and "MissingAuthenticationTokenException" in unsigned.stderr
    listed = _cli([sys.executable, "-m", "kambda.cli", "--endpoint", secured.url, "ls"], _keys("GUARDED"))
    assert listed.returncode == 0 and name in listed.stdout
    aws = [sys.executable, "-m", "awscli", "lambda", "--endpoint-url", secured.url]
    out = tmp_path / "out.json"
    done = _cli([*aws, "invoke", "--function-name", name, "--payload", '{"name": "Ada"}',
                 str(out)], _keys("INVOKER"))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["message"] == "Hello, Ada!"
    done = _cli([*aws, "delete-function", "--function-name", name], _keys("INVOKER"))
    assert done.returncode != 0 and "AccessDeniedException" in done.stderr
    done = _cli([*aws, "delete-function", "--function-name", name], _keys("ADMIN"))
    assert done.returncode == 0, done.stderr


def test_rotation_takes_effect_without_restart(secured: Platform) -> None:
    creds: Path = secured.credentials_file  # type: ignore[attr-defined]
    before = creds.read_text()
    try:
        document = json.loads(before)
        document["credentials"].append(_key("ROTATED", "invoker"))
        staged = creds.with_suffix(".new")
        staged.write_text(json.dumps(document))
        os.replace(staged, creds)

        def rotated_key_works() -> bool:
            try:
                client(secured, "ROTATED").get_function_configuration(FunctionName="nonexistent")
            except ClientError as exc:
                return _code(exc)[1] == "ResourceNotFoundException"
            return False

        wait_for(rotated_key_works, timeout=30, what="the added key to be accepted")
        creds.write_text("{ broken")
        gateway_log = secured.state_dir / "logs" / "gateway.log"

        def broken_file_noticed() -> bool:
            assert rotated_key_works()  # the last good file still holds (the request also makes it look)
            return "keeping the last good credentials" in gateway_log.read_text()

        wait_for(broken_file_noticed, timeout=30, what="the gateway to notice the broken file")
    finally:
        creds.write_text(before)
    wait_for(lambda: not rotated_key_works(), timeout=30, what="the removed key to be refused")
    with pytest.raises(ClientError) as refused:
        client(secured, "ROTATED").list_functions()
    assert _code(refused)[1] == "UnrecognizedClientException"


# -- safe defaults ---------------------------------------------------------------------------


def test_refuses_a_public_address_without_credentials(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "kambda.cli", "up", "--host", "0.0.0.0", "--port", "0",
                           "--state-dir", str(tmp_path / "s")], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={k: v for k, v in os.environ.items() if k not in ("KAMBDA_INSECURE",
                                                                                "KAMBDA_CREDENTIALS_FILE")})
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0 with no credentials" in done.stderr
    assert not (tmp_path / "s").exists()  # refused before anything started
    gateway = subprocess.run([sys.executable, "-m", "gateway"], capture_output=True, text=True, timeout=60, cwd=REPO,
                             env={**os.environ, "KAMBDA_HOST": "0.0.0.0", "KAMBDA_PORT": "0",
                                  "KAMBDA_CREDENTIALS_FILE": "", "KAMBDA_INSECURE": "false"})
    assert gateway.returncode == 1 and "refusing to listen on 0.0.0.0" in gateway.stderr


def test_unusable_credentials_files_stop_the_start(tmp_path: Path) -> None:
    def up(creds: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kambda.cli", "up", "--port", "0", "--state-dir",
                               str(tmp_path / "state"), "--credentials", str(creds)],
                              capture_output=True, text=True, timeout=120, cwd=REPO)

    missing = up(tmp_path / "missing.json")
    assert missing.returncode == 1 and f"credentials file {tmp_path / 'missing.json'} does not exist" in missing.stderr
    (tmp_path / "bad.json").write_text(_credentials(_key("A", "superuser")))
    bad = up(tmp_path / "bad.json")
    assert bad.returncode == 1, bad.stdout
    assert "the gateway exited during start-up" in bad.stderr and "role must be one of" in bad.stderr


def test_insecure_starts_on_a_public_address(tmp_path: Path) -> None:
    running = Platform(tmp_path / "state", ["--host", "0.0.0.0", "--insecure"]).start()
    try:
        assert any("auth: INSECURE" in line for line in running.output), running.output
        assert running.get_json("/_kambda/health")[0] == 200
        assert "Functions" in running.lambda_client().list_functions()
    finally:
        running.stop()


def test_start_line_says_who_may_call(tmp_path: Path) -> None:
    def summary(environ: dict[str, str], **options: Any) -> str:
        return UpPlatform(UpOptions("127.0.0.1", 0, tmp_path, **options), environ).auth_summary()

    assert "unsigned requests accepted from this machine only" in summary({})
    assert "INSECURE" in summary({}, insecure=True) and "INSECURE" in summary({"KAMBDA_INSECURE": "true"})
    assert f"credentials from {tmp_path / 'c.json'}" in summary({}, credentials=tmp_path / "c.json")
    assert "credentials from /etc/k.json" in summary({"KAMBDA_CREDENTIALS_FILE": "/etc/k.json"})


# -- the middleware and the hooks other routes use, on a small app served for real ----------------


async def test_hooks_for_trigger_paths_and_undeclared_routes(tmp_path: Path) -> None:
    from aiohttp import ClientSession, web
    from aiohttp.test_utils import TestServer

    from gateway.app import aws_errors
    from kambda.aws import auth
    from kambda.names import Arns

    creds = tmp_path / "credentials.json"
    creds.write_text(_credentials(_key("ADMIN"), _key("INVOKER", "invoker")))

    async def function_url(request: web.Request) -> web.Response:
        if not await auth.allowed(request, "lambda:InvokeFunctionUrl", f"{FN}f"):
            return web.json_response({"Message": "Forbidden"}, status=403)
        return web.Response(body=await request.read())

    async def undeclared(request: web.Request) -> web.Response:
        return web.json_response({"who": request[auth.PRINCIPAL].access_key})

    app = web.Application(middlewares=[aws_errors, auth.middleware])
    app[auth.AUTHENTICATOR] = auth.Authenticator(CredentialStore(creds), Arns("us-east-1", ACCOUNT))
    app.add_routes([web.post("/url/{url_id}", function_url), web.get("/_kambda/v1/new-thing", undeclared)])
    async with TestServer(app, host="127.0.0.1") as server, ClientSession() as session:
        base = str(server.make_url(""))

        async def call(method: str, path: str, key: str | None, body: bytes = b"") -> tuple[int, str, bytes]:
            headers: dict[str, str] = {}
            if key is not None:
                request = _sign(base + path, method, body, secret=f"{key}-secret")
                request.headers.replace_header("Authorization",
                                               request.headers["Authorization"].replace("AKIDTEST", key))
                headers = dict(request.headers)
            async with session.request(method, base + path, data=body, headers=headers) as response:
                return response.status, response.headers.get("x-amzn-ErrorType", ""), await response.read()

        assert await call("POST", "/url/abc", None) == (403, "", b'{"Message": "Forbidden"}')  # its own shape
        assert await call("POST", "/url/abc", "INVOKER", b'{"x": 1}') == (200, "", b'{"x": 1}')
        assert (await call("GET", "/_kambda/v1/new-thing", "ADMIN"))[0] == 200
        assert (await call("GET", "/_kambda/v1/new-thing", "INVOKER"))[:2] == (403, "AccessDeniedException")
        assert (await call("GET", "/no/such/route", "INVOKER"))[:2] == (404, "UnknownOperationException")
        assert (await call("GET", "/no/such/route", None))[:2] == (403, "MissingAuthenticationTokenException")


@pytest.mark.parametrize("insecure, public_metrics", [(False, False), (True, False), (False, True)])
async def test_without_credentials_only_loopback_is_served(insecure: bool, public_metrics: bool) -> None:
    """A remote address stands in through ``request.clone(remote=...)``, as a trusted proxy's would."""
    from aiohttp import ClientSession, web
    from aiohttp.test_utils import TestServer

    from gateway.app import aws_errors
    from kambda.aws import auth
    from kambda.names import Arns

    @web.middleware
    async def remote_from_header(request: web.Request, handler: Any) -> web.StreamResponse:
        remote = request.headers.get("X-Test-Remote")
        return await handler(request.clone(remote=remote) if remote else request)

    async def ok(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application(middlewares=[aws_errors, remote_from_header, auth.middleware])
    app[auth.AUTHENTICATOR] = auth.Authenticator(None, Arns("us-east-1", ACCOUNT), insecure, public_metrics)
    app.add_routes([web.get("/2015-03-31/functions/", ok), web.get("/metrics", ok),
                    web.get("/_kambda/health", ok)])
    async with TestServer(app, host="127.0.0.1") as server, ClientSession() as session:
        async def status(path: str, remote: str | None) -> tuple[int, str]:
            headers = {"X-Test-Remote": remote} if remote else {}
            async with session.get(server.make_url(path), headers=headers) as response:
                return response.status, response.headers.get("x-amzn-ErrorType", "")

        assert await status("/2015-03-31/functions/", None) == (200, "")
        assert await status("/2015-03-31/functions/", "::ffff:127.0.0.1") == (200, "")
        remote_api = await status("/2015-03-31/functions/", "203.0.113.9")
        assert remote_api == ((200, "") if insecure else (403, "MissingAuthenticationTokenException"))
        remote_metrics = await status("/metrics", "203.0.113.9")
        assert remote_metrics == ((200, "") if insecure or public_metrics
                                  else (403, "MissingAuthenticationTokenException"))
        assert await status("/_kambda/health", "203.0.113.9") == (200, "")


def test_sts_names_the_verified_caller_and_needs_no_permission(secured: Platform) -> None:
    for key in ("ADMIN", "INVOKER"):  # the invoker role may do nothing but invoke, and still asks who it is
        sts = boto3.client("sts", endpoint_url=secured.url, region_name="us-east-1", aws_access_key_id=key,
                           aws_secret_access_key=f"{key}-secret", config=Config(retries={"max_attempts": 1}))
        me = sts.get_caller_identity()
        assert (me["Account"], me["Arn"], me["UserId"]) == (ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/{key}", key)
    forged = boto3.client("sts", endpoint_url=secured.url, region_name="us-east-1", aws_access_key_id="ADMIN",
                          aws_secret_access_key="not-the-secret", config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as caught:
        forged.get_caller_identity()
    assert _code(caught)[:2] == (403, "InvalidSignatureException")


def test_every_served_service_accepts_its_own_signing_name() -> None:
    from botocore.session import get_session

    from kambda.aws.auth import ACCEPTED_SERVICES
    from kambda.aws.endpoints import SERVED

    models = get_session()
    names = {models.get_service_model(s).signing_name or models.get_service_model(s).endpoint_prefix for s in SERVED}
    assert names <= ACCEPTED_SERVICES, names - ACCEPTED_SERVICES


def test_signed_dynamodb_and_step_functions_calls_are_answered(secured: Platform) -> None:
    kw: dict[str, Any] = {"endpoint_url": secured.url, "region_name": "us-east-1", "aws_access_key_id": "ADMIN",
                          "aws_secret_access_key": "ADMIN-secret", "config": Config(retries={"max_attempts": 1})}
    assert "TableNames" in boto3.client("dynamodb", **kw).list_tables()
    assert "stateMachines" in boto3.client("stepfunctions", **kw).list_state_machines()


@pytest.mark.parametrize("mode", ["UNSIGNED-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"])
def test_s3_payload_forms_are_signed_by_their_header_not_by_a_hash_of_the_body(secured: Platform, mode: str) -> None:
    """S3's unsigned and streaming uploads sign the literal x-amz-content-sha256: the authenticator takes the
    signature without hashing (or even reading) the body; the chunks are the front door's to verify."""

    def put(secret: str) -> tuple[int, str, dict[str, Any]]:
        request = AWSRequest("PUT", f"{secured.url}/bucket/key", data=b"5;chunk-signature=x\r\nhello\r\n",
                             headers={"X-Amz-Content-SHA256": mode, "Content-Encoding": "aws-chunked",
                                      "X-Amz-Decoded-Content-Length": "5"})
        SigV4Auth(Credentials("ADMIN", secret), "s3", "us-east-1").add_auth(request)
        request.headers["X-Amz-Content-SHA256"] = mode  # add_auth keeps it, as S3's signer does
        prepared = request.prepare()
        req = urllib.request.Request(prepared.url, data=prepared.body, method="PUT", headers=dict(prepared.headers))
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return response.status, "", {}
        except urllib.error.HTTPError as exc:
            with exc:
                found = re.search(rb"<Code>([^<]+)</Code>", exc.read())
                return exc.code, found.group(1).decode() if found else "", {}

    status, code, _ = put("ADMIN-secret")
    # Authenticated: S3 answers for the bucket (or, for the signed stream, for its made-up chunk signature).
    expected = {(404, "NoSuchBucket")} if mode == "UNSIGNED-PAYLOAD" else {(404, "NoSuchBucket"),
                                                                            (403, "SignatureDoesNotMatch")}
    assert (status, code) in expected
    status, code, _ = put("wrong-secret")
    assert (status, code) == (403, "SignatureDoesNotMatch")
