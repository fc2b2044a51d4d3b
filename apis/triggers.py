"""Lambda proxy integration: HTTP requests in, payload format 2.0 / 1.0 events out, and back.

Pure parts (``event_v2``, ``event_v1``, ``map_response``, ``is_text``) build events the way API
Gateway's HTTP APIs and Lambda function URLs do, and map a function's answer to an HTTP response;
``Triggers`` serves both kinds of trigger on the gateway's port:

- HTTP API routes under ``/http/...`` (the event's rawPath is what follows the prefix, like API
  Gateway's ``$default`` stage), and with the full path on the host KAMBDA_HTTP_HOST if set;
- function URLs under ``/url/<url-id>/...``, and on ``<url-id>.lambda-url.<region>.<KAMBDA_URL_DOMAIN>``
  if a domain is set.

A function error answers 502, a timeout 504, a throttle 429, an unmatched request 404, each with
API Gateway's ``{"message": ...}`` body. The response is written once the function returns
(buffered, like API Gateway; the Runtime API's response streaming is not used).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from multidict import CIMultiDict

from apis.config import HttpConfig, Route, UrlConfig, url_id
from apis.routes import DEFAULT
from functions.urls import cors_headers, is_preflight
from kambda.aws import errors
from kambda.aws.bodies import read_capped
from kambda.names import FunctionRef, new_request_id
from kambda.settings import Site
from kambda.v1.invocation_pb2 import InvocationResult

log = logging.getLogger(__name__)

#: Request bodies and events, like Lambda's sync invoke payload (6 MB).
MAX_BODY = 6 * 1024 * 1024
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEXT_TYPES = ("json", "xml", "javascript")
_DROPPED_RESPONSE_HEADERS = ("content-length", "transfer-encoding", "connection")

Call = Callable[[FunctionRef, bytes, str], Awaitable[InvocationResult]]
#: Decides whether a request may call an AWS_IAM function URL (the SigV4 hook).
IamAuthorizer = Callable[[web.Request, UrlConfig], Awaitable[bool]]


async def deny_iam(request: web.Request, config: UrlConfig) -> bool:
    """Until request signing is configured, no caller is authorised for AWS_IAM function URLs."""
    return False


class HttpError(Exception):
    """An API-Gateway-shaped failure: a status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


NOT_FOUND = HttpError(404, "Not Found")


class Forbidden(Exception):
    """An AWS_IAM function URL refused the caller (Lambda's 403 AccessDeniedException shape)."""


@dataclass(frozen=True)
class HttpRequest:
    """What the events are built from (everything comes from the wire, nothing is decoded twice)."""

    method: str
    raw_path: str          # percent-encoded, after the trigger's prefix
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str
    host: str
    epoch_ms: int


def is_text(content_type: str) -> bool:
    """API Gateway's binary handling: text/* and JSON, XML and JavaScript types are passed as text."""
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or any(kind in mime for kind in _TEXT_TYPES)


def _body(request: HttpRequest) -> tuple[str | None, bool]:
    if not request.body:
        return None, False
    content_type = next((v for k, v in request.headers if k.lower() == "content-type"), "")
    if is_text(content_type):
        try:
            return request.body.decode(), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(request.body).decode(), True


def clf_time(epoch_ms: int) -> str:
    """``12/Mar/2020:19:03:58 +0000``, the same in every locale."""
    t = time.gmtime(epoch_ms / 1000)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def _user_agent(request: HttpRequest) -> str:
    return next((v for k, v in request.headers if k.lower() == "user-agent"), "")


@dataclass(frozen=True)
class Context:
    """Where the event says it came from (requestContext)."""

    account: str
    api_id: str
    domain_name: str
    domain_prefix: str
    request_id: str


def event_v2(request: HttpRequest, route_key: str, path_params: dict[str, str], ctx: Context) -> dict[str, Any]:
    """Payload format 2.0: headers lower-cased and joined with commas, cookies apart, query values
    joined with commas; empty optional fields left out, as API Gateway does."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        lname = name.lower()
        if lname == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        else:
            headers[lname] = f"{headers[lname]},{value}" if lname in headers else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    body, b64 = _body(request)
    event: dict[str, Any] = {"version": "2.0", "routeKey": route_key, "rawPath": request.raw_path,
                             "rawQueryString": request.raw_query}
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": ctx.account, "apiId": ctx.api_id, "domainName": ctx.domain_name,
        "domainPrefix": ctx.domain_prefix,
        "http": {"method": request.method, "path": request.raw_path, "protocol": request.protocol,
                 "sourceIp": request.source_ip, "userAgent": _user_agent(request)},
        "requestId": ctx.request_id, "routeKey": route_key, "stage": "$default",
        "time": clf_time(request.epoch_ms), "timeEpoch": request.epoch_ms,
    }
    if body is not None:
        event["body"] = body
    if path_params:
        event["pathParameters"] = path_params
    event["isBase64Encoded"] = b64
    return event


def event_v1(request: HttpRequest, route_key: str, path_params: dict[str, str], ctx: Context) -> dict[str, Any]:
    """Payload format 1.0 (API Gateway's REST-style event): single- and multi-value headers and
    query strings; in the single-value maps a header keeps its last value and a query parameter its
    first, as AWS's documented example shows. Absent fields are null."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for name, value in request.headers:
        name = names.setdefault(name.lower(), name)
        headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for key, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query.setdefault(key, value)
        multi_query.setdefault(key, []).append(value)
    body, b64 = _body(request)
    resource = route_key.partition(" ")[2] if route_key != DEFAULT else DEFAULT
    return {
        "version": "1.0", "resource": resource, "path": request.raw_path, "httpMethod": request.method,
        "headers": headers, "multiValueHeaders": multi_headers,
        "queryStringParameters": query or None, "multiValueQueryStringParameters": multi_query or None,
        "requestContext": {
            "accountId": ctx.account, "apiId": ctx.api_id, "authorizer": {"claims": None, "scopes": None},
            "domainName": ctx.domain_name, "domainPrefix": ctx.domain_prefix,
            "extendedRequestId": ctx.request_id, "httpMethod": request.method,
            "identity": {"accessKey": None, "accountId": None, "caller": None,
                         "cognitoAuthenticationProvider": None, "cognitoAuthenticationType": None,
                         "cognitoIdentityId": None, "cognitoIdentityPoolId": None, "principalOrgId": None,
                         "sourceIp": request.source_ip, "user": None, "userAgent": _user_agent(request),
                         "userArn": None},
            "path": request.raw_path, "protocol": request.protocol, "requestId": ctx.request_id,
            "requestTime": clf_time(request.epoch_ms), "requestTimeEpoch": request.epoch_ms,
            "resourceId": route_key, "resourcePath": resource, "stage": "$default",
        },
        "pathParameters": path_params or None, "stageVariables": None, "body": body, "isBase64Encoded": b64,
    }


def _header_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError("a header value must be a string or a number")


def map_response(payload: bytes, payload_format: str) -> tuple[int, CIMultiDict[str], bytes]:
    """The HTTP response for a function's answer. Raises ValueError when the answer is malformed.

    Format 2.0 accepts any JSON: an object with ``statusCode`` is a structured response, anything
    else is a 200 with that JSON as the body. Format 1.0 requires the structured response.
    """
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ValueError("the function's answer is not JSON") from None
    headers: CIMultiDict[str] = CIMultiDict()
    if not (isinstance(value, dict) and "statusCode" in value):
        if payload_format == "1.0":
            raise ValueError("a payload format 1.0 answer must carry statusCode")
        headers["Content-Type"] = "application/json"
        return 200, headers, payload
    status = value["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError("statusCode must be an integer from 100 to 599")
    single = {} if value.get("headers") is None else value["headers"]
    multi = {} if value.get("multiValueHeaders") is None else value["multiValueHeaders"]
    cookies = [] if value.get("cookies") is None else value["cookies"]
    if not isinstance(single, dict) or not isinstance(multi, dict) or not isinstance(cookies, list):
        raise ValueError("headers and multiValueHeaders must be objects, cookies a list")
    for name, values in multi.items():
        for item in values if isinstance(values, list) else [values]:
            headers.add(str(name), _header_value(item))
    for name, item in single.items():
        if str(name) not in headers:
            headers.add(str(name), _header_value(item))
    for cookie in cookies:
        headers.add("Set-Cookie", _header_value(cookie))
    for name in _DROPPED_RESPONSE_HEADERS:
        headers.popall(name, None)
    body = value.get("body")
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        raise ValueError("body must be a string")
    elif value.get("isBase64Encoded") is True:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("isBase64Encoded is true but the body is not base64") from None
    else:
        raw = body.encode()
    if raw and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    return status, headers, raw


def _error_answer(err: HttpError, extra: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=err.status, body=orjson.dumps({"message": err.message}),
                        content_type="application/json", headers=extra)


def _failure(result: InvocationResult) -> HttpError | None:
    if not result.function_error:
        return None
    try:
        error_type = orjson.loads(result.payload).get("errorType", "")
    except (orjson.JSONDecodeError, AttributeError):
        error_type = ""
    if error_type == "Sandbox.Timedout":
        return HttpError(504, "Endpoint request timed out")
    return HttpError(502, "Internal Server Error")


async def read_body(request: web.Request) -> bytes:
    """The request body, fixed-length or chunked, refused past 6 MB."""
    body = await read_capped(request, MAX_BODY)
    if body is None:
        raise HttpError(413, "Request Entity Too Large")
    return body


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}"


class Triggers:
    def __init__(self, config: HttpConfig, call: Call, settings: Site,
                 now: Callable[[], float] = time.time) -> None:
        self._config = config
        self._call = call
        self._settings = settings
        self._now = now
        self._api_id = api_id(settings)
        self._url_suffix = (f".lambda-url.{settings.region}.{settings.url_domain}".lower()
                            if settings.url_domain else "")
        #: The SigV4 hook: the auth work replaces this with a real check of the request's signature.
        self.authorize_iam: IamAuthorizer = deny_iam

    def routes(self) -> list[web.RouteDef]:
        return [
            web.route("*", "/http", self._route_prefixed),
            web.route("*", "/http/{tail:.*}", self._route_prefixed),
            web.route("*", "/url/{url_id}", self._url_prefixed),
            web.route("*", "/url/{url_id}/{tail:.*}", self._url_prefixed),
        ]

    @web.middleware
    async def by_host(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Requests to the HTTP API's host or to a function URL's host are triggers, whatever the path."""
        host = (request.url.host or "").lower()
        if self._settings.http_host and host == self._settings.http_host:
            return await self.serve_route(request, _raw_path(request, ""))
        if self._url_suffix and host.endswith(self._url_suffix):
            url_id = host[: -len(self._url_suffix)]
            if "." not in url_id:
                return await self.serve_url(request, url_id, _raw_path(request, ""))
        return await handler(request)

    async def _route_prefixed(self, request: web.Request) -> web.StreamResponse:
        return await self.serve_route(request, _raw_path(request, "/http"))

    async def _url_prefixed(self, request: web.Request) -> web.StreamResponse:
        url_id = request.match_info["url_id"]
        return await self.serve_url(request, url_id, _raw_path(request, f"/url/{url_id}"))

    def _http_request(self, request: web.Request, raw_path: str, body: bytes) -> HttpRequest:
        source_ip = request.remote or ""
        headers = [(str(name), value) for name, value in request.headers.items()]  # istr keys upset orjson
        lower = {name.lower() for name, _ in headers}
        forwarded = request.headers.get("X-Forwarded-For")
        headers = [(n, v) for n, v in headers if n.lower() != "x-forwarded-for"]
        headers.append(("X-Forwarded-For", f"{forwarded}, {source_ip}" if forwarded else source_ip))
        if "x-forwarded-proto" not in lower:
            headers.append(("X-Forwarded-Proto", request.scheme))
        if "x-forwarded-port" not in lower:
            headers.append(("X-Forwarded-Port", str(request.url.port or (443 if request.secure else 80))))
        if "x-amzn-trace-id" not in lower:
            headers.append(("X-Amzn-Trace-Id", _trace_id()))
        return HttpRequest(
            method=request.method, raw_path=raw_path or "/", raw_query=request.rel_url.raw_query_string,
            headers=headers, body=body, source_ip=source_ip,
            protocol=f"HTTP/{request.version.major}.{request.version.minor}", host=request.host,
            epoch_ms=int(self._now() * 1000),
        )

    async def serve_route(self, request: web.Request, raw_path: str) -> web.StreamResponse:
        request_id = base64.b64encode(os.urandom(10)).decode()
        extra = {"apigw-requestid": request_id}
        try:
            match = self._config.router().match(request.method, raw_path or "/")
            if match is None:
                raise NOT_FOUND
            route, params = match
            req = self._http_request(request, raw_path, await read_body(request))
            hostname = request.url.host or ""
            ctx = Context(self._settings.account, self._api_id, req.host, hostname.split(".")[0],
                          request_id)
            build = event_v1 if route.payload_format == "1.0" else event_v2
            event = build(req, route.route_key, params, ctx)
            return await self._answer(route_ref(route), event, route.payload_format, _trace(req), extra,
                                      missing=HttpError(500, "Internal Server Error"))
        except HttpError as err:
            return _error_answer(err, extra)
        except Exception:
            log.exception("unexpected failure serving %s %s", request.method, request.path)
            return _error_answer(HttpError(500, "Internal Server Error"), extra)

    async def serve_url(self, request: web.Request, url_id: str, raw_path: str) -> web.StreamResponse:
        config = self._config.urls.get(url_id)
        request_id = new_request_id()
        extra = {"x-amzn-RequestId": request_id}
        try:
            if config is None:
                raise NOT_FOUND
            if config.cors and is_preflight(request):
                # Browsers do not sign preflights: they are answered before any auth, as on AWS.
                return web.Response(status=200, headers={
                    **extra, **cors_headers(config.cors, request.headers.get("Origin"), True)})
            if config.auth_type == "AWS_IAM" and not await self.authorize_iam(request, config):
                raise Forbidden()
            req = self._http_request(request, raw_path, await read_body(request))
            ctx = Context("anonymous" if config.auth_type == "NONE" else self._settings.account, url_id,
                          f"{url_id}.lambda-url.{self._settings.region}.{self._settings.url_domain or 'on.aws'}",
                          url_id, request_id)
            event = event_v2(req, DEFAULT, {}, ctx)
            response = await self._answer(FunctionRef(config.function, config.qualifier or None), event, "2.0",
                                          _trace(req), extra, missing=NOT_FOUND)
        except Forbidden:
            response = web.Response(status=403, body=orjson.dumps({"Message": "Forbidden"}),
                                    content_type="application/json",
                                    headers={**extra, "x-amzn-ErrorType": "AccessDeniedException"})
        except HttpError as err:
            response = _error_answer(err, extra)
        except Exception:
            log.exception("unexpected failure serving %s %s", request.method, request.path)
            response = _error_answer(HttpError(500, "Internal Server Error"), extra)
        if config is not None and config.cors and request.headers.get("Origin"):
            for name in list(response.headers):
                if name.lower().startswith("access-control-"):
                    del response.headers[name]
            response.headers.update(cors_headers(config.cors, request.headers["Origin"], False))
        return response

    async def _answer(self, ref: FunctionRef, event: dict[str, Any], payload_format: str, trace_id: str,
                      extra: dict[str, str], missing: HttpError) -> web.Response:
        try:
            payload = orjson.dumps(event)
        except orjson.JSONEncodeError:  # bytes that are not UTF-8 in the path or a header: no event can carry them
            raise HttpError(400, "Bad Request") from None
        if len(payload) > MAX_BODY:
            raise HttpError(413, "Request Entity Too Large")
        try:
            result = await self._call(ref, payload, trace_id)
        except errors.TooManyRequests:
            raise HttpError(429, "Too Many Requests") from None
        except errors.ResourceNotFound:
            raise missing from None
        except errors.KambdaError:
            raise HttpError(500, "Internal Server Error") from None
        failure = _failure(result)
        if failure is not None:
            raise failure
        try:
            status, headers, body = map_response(result.payload, payload_format)
        except ValueError:
            raise HttpError(502, "Internal Server Error") from None
        headers.extend(extra)
        return web.Response(status=status, headers=headers, body=body)


def api_id(settings: Site) -> str:
    """The one HTTP API's id: stable for an account and region (10 characters, like API Gateway's)."""
    return url_id(settings.account, settings.region, "http-api", "")[:10]


def route_ref(route: Route) -> FunctionRef:
    return FunctionRef(route.function, route.qualifier or None)


def _trace(request: HttpRequest) -> str:
    return next((v for k, v in request.headers if k.lower() == "x-amzn-trace-id"), "")


def _raw_path(request: web.Request, prefix: str) -> str:
    """The percent-encoded path as sent, without the query and without the trigger's prefix."""
    path = request.raw_path.split("?", 1)[0]
    return path[len(prefix):] or "/"
