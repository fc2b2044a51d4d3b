"""Route keys, matching and response mapping as pure functions (no server)."""

from __future__ import annotations

import base64

import pytest

from apis.routes import Router, parse_route_key
from apis.triggers import is_text, map_response
from kambda.aws import errors

KEYS = ["GET /pets/dog/1", "GET /pets/dog/{id}", "GET /pets/{kind}/{id}", "ANY /pets/cat/{id}",
        "DELETE /pets/cat/{id}", "ANY /pets/{proxy+}", "GET /pets/dog/{proxy+}", "GET /{a}/dog/x", "$default"]


@pytest.fixture
def router() -> Router[str]:
    return Router((parse_route_key(k), k) for k in KEYS)


@pytest.mark.parametrize(("method", "path", "winner", "params"), [
    ("GET", "/pets/dog/1", "GET /pets/dog/1", {}),
    ("GET", "/pets/dog/x", "GET /pets/dog/{id}", {"id": "x"}),        # literals from the left beat /{a}/dog/x
    ("GET", "/pets/dog/1/2", "GET /pets/dog/{proxy+}", {"proxy": "1/2"}),  # the longer literal prefix
    ("POST", "/pets/dog/1/2", "ANY /pets/{proxy+}", {"proxy": "dog/1/2"}),
    ("GET", "/pets/cat/3", "ANY /pets/cat/{id}", {"id": "3"}),
    ("DELETE", "/pets/cat/3", "DELETE /pets/cat/{id}", {"id": "3"}),
    ("GET", "/cats/dog/x", "GET /{a}/dog/x", {"a": "cats"}),
    ("GET", "/pets", "$default", {}),
    ("HEAD", "/pets/dog/1", "ANY /pets/{proxy+}", {"proxy": "dog/1"}),  # GET routes do not take HEAD
    ("GET", "/pets/%7Bx%7D/a%2Fb", "GET /pets/{kind}/{id}", {"kind": "{x}", "id": "a/b"}),
])
def test_precedence(router: Router[str], method: str, path: str, winner: str, params: dict[str, str]) -> None:
    assert router.match(method, path) == (winner, params)


def test_no_default_means_no_match() -> None:
    router = Router([(parse_route_key("GET /a"), "a")])
    assert router.match("GET", "/b") is None and router.match("POST", "/a") is None
    assert router.match("GET", "/a") == ("a", {})


@pytest.mark.parametrize("key", ["", "GET", "get /x", "GET x", "GET /a//b", "GET /a/", "GET /{p+}/x",
                                 "GET /a{b}", "GET /{a}/{a}", "GET /a b", "x" * 600, "GET /{}"])
def test_bad_route_keys(key: str) -> None:
    with pytest.raises(errors.BadRequest):
        parse_route_key(key)


def test_text_or_binary() -> None:
    assert all(is_text(t) for t in ("text/plain", "application/json; charset=utf-8", "application/xml",
                                    "application/javascript", "application/ld+json", "image/svg+xml"))
    assert not any(is_text(t) for t in ("image/png", "application/octet-stream", "", "application/pdf"))


def test_response_mapping() -> None:
    status, headers, body = map_response(b'{"statusCode": 204}', "2.0")
    assert (status, body, "Content-Type" in headers) == (204, b"", False)
    status, headers, body = map_response(b'[1, 2]', "2.0")
    assert (status, headers["Content-Type"], body) == (200, "application/json", b"[1, 2]")
    raw = bytes(range(256))
    status, headers, body = map_response(
        b'{"statusCode": 200, "isBase64Encoded": true, "headers": {"Content-Type": "x/y", "X-N": 5, '
        b'"Content-Length": "1"}, "body": "' + base64.b64encode(raw) + b'"}', "1.0")
    assert (status, body, headers["Content-Type"], headers["X-N"], "Content-Length" in headers) == (
        200, raw, "x/y", "5", False)
    for bad in (b'{"statusCode": 99}', b'{"statusCode": 200, "body": {}}', b'{"statusCode": 200, "headers": []}',
                b'{"statusCode": 200, "isBase64Encoded": true, "body": "***"}', b"not json"):
        with pytest.raises(ValueError):
            map_response(bad, "2.0")
    with pytest.raises(ValueError):
        map_response(b'{"hello": 1}', "1.0")
