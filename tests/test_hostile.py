"""Hostile input (issue 9, part 5): every kind gets an AWS-shaped 4xx, nothing lands where it should
not, and the platform keeps serving. Against a real gateway, with raw sockets where clients would
refuse to send such things."""

from __future__ import annotations

import base64
import io
import json
import socket
import stat
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Platform, make_zip, unique

ECHO = "def handler(event, context):\n    return event\n"


def _request(platform: Platform, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a plain socket, so that nothing cleans up what is sent."""
    url = urlsplit(platform.url)
    head = f"{method} {path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n"
    head += f"Content-Length: {len(body)}\r\n"
    for key, value in (headers or {}).items():
        head += f"{key}: {value}\r\n"
    return _raw(platform, head.encode() + b"\r\n" + body)


def _raw(platform: Platform, data: bytes) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(platform.url)
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _aws_error(status: int, headers: dict[str, str], body: bytes, code: str | None = None) -> dict:
    assert 400 <= status < 500, (status, body[:300])
    parsed = json.loads(body)
    assert isinstance(parsed, dict) and isinstance(parsed.get("message", parsed.get("Message")), str), parsed
    assert headers.get("x-amzn-errortype"), headers
    if code is not None:
        assert headers["x-amzn-errortype"] == code, (headers, parsed)
    return parsed


def _each_answers(platform: Platform, expected: int, requests: Iterable[tuple[str, str]]) -> None:
    """Every (method, path) is answered ``expected`` (a 4xx) with an AWS-shaped error body."""
    for method, path in requests:
        status, headers, body = _request(platform, method, path, b"{}" if method == "POST" else b"")
        assert status == expected, (method, path[:80], status, body[:300])
        _aws_error(status, headers, body)


def _still_serving(platform: Platform, name: str) -> None:
    status, _, body = _request(platform, "POST", f"/2015-03-31/functions/{name}/invocations", b'{"ok": 1}')
    assert status == 200 and json.loads(body) == {"ok": 1}


@pytest.fixture(scope="module")
def echo(lam) -> str:  # type: ignore[no-untyped-def]
    name = unique("echo")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": ECHO})})
    yield name
    lam.delete_function(FunctionName=name)


@pytest.fixture(scope="module")
def fuzzed(lam) -> str:  # type: ignore[no-untyped-def]
    """A function whose configuration the property tests scramble."""
    name = unique("fuzzed")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": ECHO})})
    yield name
    lam.delete_function(FunctionName=name)


def _files_outside_cache(platform: Platform) -> set[Path]:
    """Every file of the state directory that is not in the code cache, logs or NATS's data."""
    skip = {platform.state_dir / d for d in ("code", "logs", "nats", "invokers")}
    return {p for p in platform.state_dir.rglob("*") if not any(s in p.parents or p == s for s in skip)}


def _create_body(name: str, package: bytes) -> bytes:
    return json.dumps({"FunctionName": name, "Runtime": "python3.12", "Handler": "app.handler", "Role": "r",
                       "Code": {"ZipFile": base64.b64encode(package).decode()}}).encode()


def _bomb(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf, zf.open("zeros.bin", "w") as f:
        chunk = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
    return buf.getvalue()


def _with_symlink(name: str, target: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", ECHO)
        info = zipfile.ZipInfo(name)
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return buf.getvalue()


def _raw_names(*names: str) -> bytes:
    """A zip whose entry names are written as given (zipfile itself would normalise some)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", ECHO)
        for name in names:
            info = zipfile.ZipInfo("x" * len(name.encode()))
            zf.writestr(info, b"pwned")
    data = buf.getvalue()
    for name in names:
        data = data.replace(b"x" * len(name.encode()), name.encode())
    return data


BAD_PACKAGES = {
    "unzipped over 250 MB": lambda: _bomb(260 << 20),
    "a crazy ratio": lambda: _bomb(64 << 20),
    "dot-dot": lambda: _raw_names("../../escaped.py"),
    "absolute path": lambda: _raw_names("/tmp/kambda-absolute-escape.py"),
    "symlink out": lambda: _with_symlink("link", "/etc/passwd"),
    "symlink up": lambda: _with_symlink("up", "../../.."),
    "not a zip": lambda: b"PK\x03\x04 this is no zip file at all",
}


@pytest.mark.parametrize("kind", BAD_PACKAGES)
def test_hostile_packages_are_refused_before_anything_is_written(platform: Platform, echo: str, kind: str) -> None:
    package = BAD_PACKAGES[kind]()
    before = _files_outside_cache(platform)
    cache = set((platform.state_dir / "code").glob("*")) if (platform.state_dir / "code").exists() else set()
    name = unique("hostile")
    status, headers, body = _request(platform, "POST", "/2015-03-31/functions", _create_body(name, package),
                                     {"Content-Type": "application/json"})
    _aws_error(status, headers, body, "InvalidParameterValueException")
    after_cache = set((platform.state_dir / "code").glob("*")) if (platform.state_dir / "code").exists() else set()
    assert after_cache == cache
    assert _files_outside_cache(platform) == before
    assert not Path("/tmp/kambda-absolute-escape.py").exists()
    assert not (platform.state_dir.parent / "escaped.py").exists()
    status, headers, body = _request(platform, "GET", f"/2015-03-31/functions/{name}")
    _aws_error(status, headers, body, "ResourceNotFoundException")
    _still_serving(platform, echo)


NESTED = b"[" * 100_000 + b"]" * 100_000
PAYLOADS = {
    "invalid JSON": b'{"a": ',
    "invalid UTF-8": b'{"a": "\xff\xfe"}',
    "deeply nested": NESTED,
    "deeply nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "NUL bytes": b'{"a": "\x00"}\x00',
}


@pytest.mark.parametrize("kind", PAYLOADS)
def test_bad_invoke_payloads_get_invalid_request_content(platform: Platform, echo: str, kind: str) -> None:
    status, headers, body = _request(platform, "POST", f"/2015-03-31/functions/{echo}/invocations", PAYLOADS[kind])
    _aws_error(status, headers, body, "InvalidRequestContentException")
    _still_serving(platform, echo)


@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize("operation", ["create", "update"])
def test_bad_management_bodies_get_a_4xx(platform: Platform, echo: str, kind: str, operation: str) -> None:
    if operation == "create":
        status, headers, body = _request(platform, "POST", "/2015-03-31/functions", PAYLOADS[kind])
    else:
        status, headers, body = _request(platform, "PUT", f"/2015-03-31/functions/{echo}/configuration",
                                         PAYLOADS[kind])
    _aws_error(status, headers, body)
    _still_serving(platform, echo)


@pytest.mark.parametrize("request_bytes", [
    b"GET /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * 200_000 + b"\r\n\r\n",
    b"GET /2015-03-31/functions HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n",
    b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    b"POST /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
], ids=["huge header", "many headers", "huge request line", "malformed header", "tls to plain http",
        "negative length", "bad chunking"])
def test_malformed_http_gets_a_4xx_and_the_gateway_carries_on(platform: Platform, echo: str,
                                                              request_bytes: bytes) -> None:
    status, _, _ = _raw(platform, request_bytes)
    assert 400 <= status < 500
    _still_serving(platform, echo)


def test_a_slow_client_holds_nothing_up_and_is_cut_off(platform: Platform, echo: str) -> None:
    url = urlsplit(platform.url)
    path = f"/2015-03-31/functions/{echo}/invocations"
    with socket.create_connection((url.hostname, url.port), timeout=120) as slow:
        slow.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode())
        slow.setblocking(False)
        deadline = time.monotonic() + 120
        reply = b""
        served_meanwhile = 0
        while time.monotonic() < deadline:
            try:
                slow.send(b" ")  # one byte a second (the server may already have closed: then it tells us)
            except OSError:
                pass
            _still_serving(platform, echo)
            served_meanwhile += 1
            try:
                chunk = slow.recv(65536)
                reply += chunk
                if not chunk or b"\r\n\r\n" in reply:
                    break
            except BlockingIOError:
                pass
            time.sleep(1)  # the slow client's pace, not a wait for luck
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b"RequestTimeoutException" in reply
        assert served_meanwhile > 1


def test_a_client_sending_its_headers_slowly_is_cut_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Slowloris: a connection that never completes its request head is closed after
    KAMBDA_IDLE_TIMEOUT, however steadily it trickles bytes, and the gateway serves on."""
    running = Platform(tmp_path, env={"KAMBDA_IDLE_TIMEOUT": "2"}).start()
    try:
        url = urlsplit(running.url)
        with socket.create_connection((url.hostname, url.port), timeout=30) as slow:
            slow.sendall(b"GET /2015-03-31/functions HTTP/1.1\r\nHost: x\r\n")
            slow.setblocking(False)
            deadline, trickled, closed = time.monotonic() + 30, 0, False
            while not closed and time.monotonic() < deadline:
                try:
                    slow.send(b"X")  # a header line that never ends
                    trickled += 1
                    closed = slow.recv(65536) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    closed = True
                time.sleep(0.25)  # the slow client's pace, not a wait for luck
        assert closed, "the slow connection was never closed"
        assert trickled > 4  # it was still sending when it was cut off
        with urllib.request.urlopen(running.url + "/2015-03-31/functions", timeout=10) as response:
            assert response.status == 200
    finally:
        running.stop()


NAME_CASES = [
    ("a" * 64, 404),
    ("a" * 65, 400),
    ("arn:aws:lambda:us-east-1:000000000000:function:" + "a" * 64, 404),
    ("arn:aws:lambda:us-east-1:000000000000:function:" + "a" * 65, 400),
    ("arn:aws:lambda:us-east-1:000000000000:function:" + "a" * 64 + ":" + "q" * 58, 404),  # 170
    ("arn:aws:lambda:us-east-1:000000000000:function:" + "a" * 64 + ":" + "q" * 59, 400),  # 171
    ("000000000000:function:x", 404),
    ("arn:aws:lambda:us-east-1:000000000000:function:", 400),
    ("a b", 400),
    ("a/../b", 400),
    ("%00", 400),
    ("é" * 10, 400),
    ("a" * 5000, 400),
    ("..", 400),
]


@pytest.mark.parametrize(("name", "expected"), NAME_CASES,
                         ids=[f"{len(n)}-{e}-{i}" for i, (n, e) in enumerate(NAME_CASES)])
def test_names_and_arns_at_and_past_every_bound(platform: Platform, echo: str, name: str, expected: int) -> None:
    quoted = urllib.parse.quote(name, safe="")
    _each_answers(platform, expected, (("GET", f"/2015-03-31/functions/{quoted}"),
                                       ("GET", f"/2015-03-31/functions/{quoted}/configuration"),
                                       ("POST", f"/2015-03-31/functions/{quoted}/invocations"),
                                       ("DELETE", f"/2015-03-31/functions/{quoted}")))
    _still_serving(platform, echo)


@pytest.mark.parametrize(("qualifier", "expected"), [
    ("q" * 128, 404), ("q" * 129, 400), ("$LATEST", 200), ("", 200), ("a b", 400), ("%", 400), ("1" * 200, 400),
])
def test_qualifiers_at_and_past_their_bound(platform: Platform, echo: str, qualifier: str, expected: int) -> None:
    status, headers, body = _request(platform, "GET", f"/2015-03-31/functions/{echo}/configuration?Qualifier="
                                     + urllib.parse.quote(qualifier, safe=""))
    assert status == expected, body[:300]
    if expected != 200:
        _aws_error(status, headers, body)


# -- property-based: the management API's request shapes ------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
_CONFIG_FIELDS = ["FunctionName", "Runtime", "Handler", "Role", "Code", "Timeout", "MemorySize", "Environment",
                  "Description", "Publish", "Layers", "Architectures", "EphemeralStorage", "DeadLetterConfig",
                  "TracingConfig", "SnapStart", "LoggingConfig", "Tags", "PackageType", "KMSKeyArn", "VpcConfig"]
_GOOD = {"FunctionName": "prop", "Runtime": "python3.12", "Handler": "app.handler", "Role": "r",
         "Code": {"ZipFile": base64.b64encode(make_zip({"app.py": ECHO})).decode()}}


def _bodies() -> st.SearchStrategy[dict]:
    """A valid CreateFunction body with some fields replaced by random JSON, and random extra fields."""
    replaced = st.dictionaries(st.sampled_from(_CONFIG_FIELDS), _json_values, max_size=4)
    extra = st.dictionaries(st.text(max_size=10), _json_values, max_size=2)
    return st.builds(lambda r, e: {**_GOOD, **e, **r}, replaced, extra)


def _check_shape(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status < 500, (status, body[:500])
    if status >= 400:
        _aws_error(status, headers, body)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies())
def test_create_function_never_answers_5xx(platform: Platform, body: dict) -> None:
    name = body.get("FunctionName")
    if name == "prop":
        body = {**body, "FunctionName": unique("prop")}
    status, headers, raw = _request(platform, "POST", "/2015-03-31/functions", json.dumps(body).encode())
    _check_shape(status, headers, raw)
    if status == 201:
        created = json.loads(raw)["FunctionName"]
        status, headers, raw = _request(platform, "DELETE", f"/2015-03-31/functions/{created}")
        assert status == 204, raw


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(_CONFIG_FIELDS), _json_values, max_size=5))
def test_update_function_configuration_never_answers_5xx(platform: Platform, echo: str, fuzzed: str,
                                                         body: dict) -> None:
    body.pop("FunctionName", None)
    status, headers, raw = _request(platform, "PUT", f"/2015-03-31/functions/{fuzzed}/configuration",
                                    json.dumps(body).encode())
    _check_shape(status, headers, raw)
    _still_serving(platform, echo)


# -- the APIs merged later: versions and aliases, function URLs, HTTP routes, EventBridge, triggers ---------


def _json_request(platform: Platform, method: str, path: str, body: object) -> tuple[int, dict[str, str], bytes]:
    return _request(platform, method, path, json.dumps(body).encode(), {"Content-Type": "application/json"})


@pytest.mark.parametrize(("name", "expected"), NAME_CASES,
                         ids=[f"{len(n)}-{e}-{i}" for i, (n, e) in enumerate(NAME_CASES)])
def test_names_at_and_past_every_bound_on_versions_aliases_and_urls(platform: Platform, echo: str, name: str,
                                                                      expected: int) -> None:
    quoted = urllib.parse.quote(name, safe="")
    _each_answers(platform, expected, (("GET", f"/2015-03-31/functions/{quoted}/versions"),
                                       ("POST", f"/2015-03-31/functions/{quoted}/versions"),
                                       ("GET", f"/2015-03-31/functions/{quoted}/aliases"),
                                       ("GET", f"/2015-03-31/functions/{quoted}/aliases/live"),
                                       ("GET", f"/2021-10-31/functions/{quoted}/url"),
                                       ("GET", f"/2021-10-31/functions/{quoted}/urls")))
    _still_serving(platform, echo)


@pytest.fixture(scope="module")
def versioned(lam) -> str:  # type: ignore[no-untyped-def]
    """A function with one published version, for aliases."""
    name = unique("versioned")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": ECHO})}, Publish=True)
    yield name
    lam.delete_function(FunctionName=name)


ALIAS_BODIES = {
    "no name": {"FunctionVersion": "1"},
    "empty name": {"Name": "", "FunctionVersion": "1"},
    "name of 129": {"Name": "a" * 129, "FunctionVersion": "1"},
    "all-digit name": {"Name": "123", "FunctionVersion": "1"},
    "name $LATEST": {"Name": "$LATEST", "FunctionVersion": "1"},
    "name with a space": {"Name": "a b", "FunctionVersion": "1"},
    "name not a string": {"Name": ["live"], "FunctionVersion": "1"},
    "huge name": {"Name": "a" * 100_000, "FunctionVersion": "1"},
    "no such version": {"Name": "live", "FunctionVersion": "999999"},
    "version garbage": {"Name": "live", "FunctionVersion": "1.5"},
    "version past int64": {"Name": "live", "FunctionVersion": "9" * 40},
    "weight over 1": {"Name": "live", "FunctionVersion": "1",
                      "RoutingConfig": {"AdditionalVersionWeights": {"1": 1.5}}},
    "negative weight": {"Name": "live", "FunctionVersion": "1",
                        "RoutingConfig": {"AdditionalVersionWeights": {"1": -0.1}}},
    "weight a string": {"Name": "live", "FunctionVersion": "1",
                        "RoutingConfig": {"AdditionalVersionWeights": {"1": "half"}}},
    "weight a bool": {"Name": "live", "FunctionVersion": "1",
                      "RoutingConfig": {"AdditionalVersionWeights": {"1": True}}},
    "weight huge": {"Name": "live", "FunctionVersion": "1",
                    "RoutingConfig": {"AdditionalVersionWeights": {"1": 1e308}}},
    "weight past float": {"Name": "live", "FunctionVersion": "1",
                          "RoutingConfig": {"AdditionalVersionWeights": {"1": 10**400}}},
    "weights a list": {"Name": "live", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": [0.5]}},
    "weight on $LATEST": {"Name": "live", "FunctionVersion": "1",
                          "RoutingConfig": {"AdditionalVersionWeights": {"$LATEST": 0.5}}},
    "weight on a missing version": {"Name": "live", "FunctionVersion": "1",
                                    "RoutingConfig": {"AdditionalVersionWeights": {"77": 0.5}}},
    "weight on garbage version": {"Name": "live", "FunctionVersion": "1",
                                  "RoutingConfig": {"AdditionalVersionWeights": {"x" * 5000: 0.5}}},
    "many weights": {"Name": "live", "FunctionVersion": "1",
                     "RoutingConfig": {"AdditionalVersionWeights": {str(i): 0.0001 for i in range(2, 10_000)}}},
    "routing a string": {"Name": "live", "FunctionVersion": "1", "RoutingConfig": "50/50"},
}


@pytest.mark.parametrize("kind", ALIAS_BODIES)
def test_alias_garbage_gets_a_4xx(platform: Platform, echo: str, versioned: str, kind: str) -> None:
    body = ALIAS_BODIES[kind]
    if kind == "weight past float":  # json.dumps writes the integer; a float that large does not exist
        raw = json.dumps({**body, "RoutingConfig": {"AdditionalVersionWeights": {"1": 0}}}).replace(
            '"1": 0}', '"1": 1' + "0" * 400 + "}").encode()
        status, headers, answer = _request(platform, "POST", f"/2015-03-31/functions/{versioned}/aliases", raw)
    else:
        status, headers, answer = _json_request(platform, "POST", f"/2015-03-31/functions/{versioned}/aliases", body)
    _aws_error(status, headers, answer)
    update = {k: v for k, v in body.items() if k != "Name"}
    status, headers, answer = _json_request(platform, "PUT", f"/2015-03-31/functions/{versioned}/aliases/nosuch",
                                            update)
    _aws_error(status, headers, answer)
    _still_serving(platform, echo)


@pytest.mark.parametrize("alias", ["a" * 129, "123", "a%20b", "%24LATEST", "%FF", "a" * 5000])
def test_alias_names_past_their_bounds_in_the_path(platform: Platform, echo: str, versioned: str, alias: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        status, headers, body = _request(platform, method, f"/2015-03-31/functions/{versioned}/aliases/{alias}",
                                         b"{}" if method == "PUT" else b"")
        _aws_error(status, headers, body)
    _still_serving(platform, echo)


ROUTE_KEYS = {
    "513 characters": "GET /" + "a" * 508,
    "100 KB": "GET /" + "a" * 100_000,
    "no path": "GET",
    "unknown method": "FETCH /x",
    "no slash": "GET x",
    "doubled parameter": "GET /{a}/{a}",
    "greedy not last": "GET /{a+}/b",
    "half a brace": "GET /{a",
    "NUL": "GET /a\x00b",
    "not a string": ["GET /x"],
    "empty": "",
}


@pytest.mark.parametrize("kind", ROUTE_KEYS)
def test_bad_route_keys_get_bad_request(platform: Platform, echo: str, kind: str) -> None:
    status, headers, body = _json_request(platform, "POST", "/_kambda/v1/http/routes",
                                          {"RouteKey": ROUTE_KEYS[kind], "FunctionName": echo})
    _aws_error(status, headers, body, "BadRequestException")
    _still_serving(platform, echo)


def test_route_keys_at_their_bound_and_function_names_past_theirs(platform: Platform, echo: str) -> None:
    key = "GET /" + "a" * 507  # 512 characters, the longest a route key may be
    status, headers, body = _json_request(platform, "POST", "/_kambda/v1/http/routes",
                                          {"RouteKey": key, "FunctionName": echo})
    assert status == 201, body
    route_id = json.loads(body)["RouteId"]
    for name, qualifier in (("a" * 65, None), ("a b", None), ("", None), (echo, "q" * 129), (echo, "a b"),
                            ("arn:aws:lambda:us-east-1:000000000000:function:" + "a" * 65, None)):
        route = {"RouteKey": "GET /bounds", "FunctionName": name, **({"Qualifier": qualifier} if qualifier else {})}
        status, headers, answer = _json_request(platform, "POST", "/_kambda/v1/http/routes", route)
        _aws_error(status, headers, answer)
        status, headers, answer = _json_request(platform, "PUT", f"/_kambda/v1/http/routes/{route_id}",
                                                {k: v for k, v in route.items() if k != "RouteKey"})
        _aws_error(status, headers, answer)
    for ident in ("%FF%FE", "a.b", "*", ">", "a" * 5000):
        status, headers, answer = _request(platform, "GET", f"/_kambda/v1/http/routes/{ident}")
        _aws_error(status, headers, answer, "NotFoundException")
    status, _, body = _request(platform, "DELETE", f"/_kambda/v1/http/routes/{route_id}")
    assert status == 204, body
    _still_serving(platform, echo)


def _events(platform: Platform, operation: str, body: object | bytes) -> tuple[int, dict[str, str], bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return _request(platform, "POST", "/", raw, {"X-Amz-Target": f"AWSEvents.{operation}",
                                                  "Content-Type": "application/x-amz-json-1.1"})


def _events_error(status: int, body: bytes, code: str | None = None) -> dict:
    assert status == 400, (status, body[:300])
    parsed = json.loads(body)
    assert isinstance(parsed.get("__type"), str) and isinstance(parsed.get("message"), str), parsed
    if code is not None:
        assert parsed["__type"] == code, parsed
    return parsed


def _entry(detail: str = '{"a": 1}') -> dict:
    return {"Source": "hostile.test", "DetailType": "t", "Detail": detail}


@pytest.mark.parametrize(("kind", "body"), [
    ("11 entries", {"Entries": [_entry()] * 11}),
    ("no entries", {"Entries": []}),
    ("entries not a list", {"Entries": "many"}),
    ("over 256 KB", {"Entries": [_entry(json.dumps({"a": "x" * (130 * 1024)}))] * 2}),
    ("one entry over 256 KB", {"Entries": [_entry(json.dumps({"a": "x" * (257 * 1024)}))]}),
    ("deeply nested body", b'{"Entries":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("body not JSON", b'{"Entries": ['),
    ("body invalid UTF-8", b'{"Entries": "\xff\xfe"}'),
    ("body not an object", b"[1, 2]"),
])
def test_bad_put_events_requests_get_a_validation_error(platform: Platform, echo: str, kind: str,
                                                         body: object) -> None:
    status, _, answer = _events(platform, "PutEvents", body)
    _events_error(status, answer)
    _still_serving(platform, echo)


@pytest.mark.parametrize(("kind", "detail", "code"), [
    ("invalid JSON", '{"a": ', "MalformedDetail"),
    ("not an object", "[1, 2]", "MalformedDetail"),
    ("deeply nested objects", '{"a":' * 30_000 + "1" + "}" * 30_000, "MalformedDetail"),
    ("deeply nested arrays", '{"a":' + "[" * 50_000 + "]" * 50_000 + "}", "MalformedDetail"),
    ("nested past what is stored", '{"a":' * 300 + "1" + "}" * 300, "MalformedDetail"),
    ("lone surrogate", '{"a": "\\ud800"}', None),
])
def test_bad_event_details_fail_their_entry_only(platform: Platform, echo: str, kind: str, detail: str,
                                                  code: str | None) -> None:
    """EventBridge answers 200 and reports a malformed Detail on the entry; the other entries go on."""
    status, _, answer = _events(platform, "PutEvents", {"Entries": [_entry(detail), _entry()]})
    assert status == 200, answer[:300]
    result = json.loads(answer)
    assert "EventId" in result["Entries"][1], result
    if code is not None:
        assert result["FailedEntryCount"] == 1 and result["Entries"][0]["ErrorCode"] == code, result
    _still_serving(platform, echo)


PATTERNS = {
    "deeply nested objects": '{"a":' * 100_000 + '["x"]' + "}" * 100_000,
    "nested objects within the length bound": '{"":' * 800 + '["x"]' + "}" * 800,
    "deeply nested arrays": '{"a":' + "[" * 4000 + "]" * 4000 + "}",
    "huge": json.dumps({"source": ["x" * 10] * 100_000}),
    "just past 4096": json.dumps({"source": ["x" * 4090]}),
    "not JSON": '{"source": [',
    "not an object": '["source"]',
    "empty": "{}",
    "numeric garbage": '{"n": [{"numeric": [">", "x"]}]}',
    "huge number": '{"n": [{"numeric": [">", 1' + "0" * 400 + "]}]}",
}


@pytest.mark.parametrize("kind", PATTERNS)
@pytest.mark.parametrize("operation", ["PutRule", "TestEventPattern"])
def test_hostile_event_patterns_get_invalid_event_pattern(platform: Platform, echo: str, kind: str,
                                                         operation: str) -> None:
    event = {"id": "1", "account": "000000000000", "source": "x", "time": "2024-01-01T00:00:00Z",
             "region": "us-east-1", "detail-type": "t", "detail": {}}
    body = {"Name": unique("hostile"), "EventPattern": PATTERNS[kind]} if operation == "PutRule" \
        else {"EventPattern": PATTERNS[kind], "Event": json.dumps(event)}
    status, _, answer = _events(platform, operation, body)
    _events_error(status, answer, "InvalidEventPatternException")
    _still_serving(platform, echo)


def test_a_deeply_nested_test_event_gets_a_validation_error(platform: Platform, echo: str) -> None:
    for event in ('{"id": ' + "[" * 100_000 + "]" * 100_000 + "}", "{" * 10, "[]"):
        status, _, answer = _events(platform, "TestEventPattern", {"EventPattern": '{"source": ["x"]}',
                                                                   "Event": event})
        _events_error(status, answer)
    _still_serving(platform, echo)


@pytest.fixture(scope="module")
def trigger(platform: Platform, echo: str) -> str:
    """An HTTP route to the echo function: requests under the returned prefix are triggers."""
    prefix = unique("/hostile")
    status, _, body = _json_request(platform, "POST", "/_kambda/v1/http/routes",
                                    {"RouteKey": f"ANY {prefix}/{{proxy+}}", "FunctionName": echo})
    assert status == 201, body
    yield "/http" + prefix
    _request(platform, "DELETE", f"/_kambda/v1/http/routes/{json.loads(body)['RouteId']}")


def _api_gateway_error(status: int, body: bytes, expected: int) -> None:
    assert status == expected, (status, body[:300])
    assert isinstance(json.loads(body).get("message"), str), body[:300]


def test_the_trigger_route_works(platform: Platform, trigger: str) -> None:
    status, _, body = _request(platform, "POST", f"{trigger}/x", b"hello", {"Content-Type": "text/plain"})
    assert status == 200, (body, [x for x in platform.logs().splitlines() if "rror" in x][-5:])
    assert json.loads(body)["body"] == "hello"


def test_trigger_bodies_over_6_mb_get_413(platform: Platform, echo: str, trigger: str) -> None:
    big = b"x" * (6 * 1024 * 1024 + 1)
    status, _, body = _request(platform, "POST", f"{trigger}/big", big)
    _api_gateway_error(status, body, 413)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
    url = urlsplit(platform.url)
    status, _, body = _raw(platform, f"POST {trigger}/big HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n".encode() + chunked)
    _api_gateway_error(status, body, 413)
    _still_serving(platform, echo)


def test_a_trigger_event_over_6_mb_gets_413(platform: Platform, echo: str, trigger: str) -> None:
    """Under 6 MB of body, but base64 makes the event larger than a synchronous invoke may be."""
    status, _, body = _request(platform, "POST", f"{trigger}/big", b"\xff" * (5 * 1024 * 1024),
                               {"Content-Type": "application/octet-stream"})
    _api_gateway_error(status, body, 413)
    _still_serving(platform, echo)


@pytest.mark.parametrize(("request_line", "shaped"), [
    (b"GET {}/\xff\xfe\x80 HTTP/1.1", False),  # refused by the HTTP parser itself, before any handler
    (b"GET {}/%FF%FE%80?q=%FF HTTP/1.1", True),
    (b"GET {}/a%00b HTTP/1.1", True),
    (b"GET {}/" + b"a" * 7000 + b" HTTP/1.1", True),
], ids=["raw bytes", "percent-encoded", "NUL", "long path"])
def test_trigger_paths_that_are_not_utf8_are_answered(platform: Platform, echo: str, trigger: str,
                                                       request_line: bytes, shaped: bool) -> None:
    url = urlsplit(platform.url)
    line = request_line.replace(b"{}", trigger.encode())
    status, _, body = _raw(platform, line + f"\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode())
    assert status == 200 or 400 <= status < 500, (status, body[:300])
    if status != 200 and shaped:
        assert isinstance(json.loads(body).get("message"), str), body[:300]
    _still_serving(platform, echo)


@pytest.mark.parametrize("headers", [
    {"X-Huge": "a" * 200_000},
    {f"X-H{i}": "v" for i in range(5000)},
    {"X-Bad": "\udcff"},
], ids=["one huge header", "many headers", "invalid UTF-8 header"])
def test_trigger_requests_with_hostile_headers_get_a_4xx(platform: Platform, echo: str, trigger: str,
                                                         headers: dict[str, str]) -> None:
    url = urlsplit(platform.url)
    head = f"GET {trigger}/h HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n".encode()
    for key, value in headers.items():
        head += key.encode() + b": " + value.encode("utf-8", "surrogateescape") + b"\r\n"
    status, _, body = _raw(platform, head + b"\r\n")
    assert status < 500, (status, body[:300])
    _still_serving(platform, echo)
