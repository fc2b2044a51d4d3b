"""The one front door: an aiohttp handler that routes any AWS request to its service's operation handler.

A request is routed (:mod:`kambda.aws.router`), its operation found in the service's model (X-Amz-Target, Query
``Action``, or method and path), its body read under the size cap (S3's streaming forms decoded and verified chunk
by chunk on the way), parsed into params, authorized as ``<iam-prefix>:<Operation>`` on the resources the operation
names (the registration's ``resources`` function of the params; ``*`` by default) by the injected hook, handed to
the handler, and the handler's dict serialised in the protocol's own shape. Every KambdaError becomes the
protocol's error shape; anything else is logged and answered as the protocol's internal error, no traceback leaked.

Wiring: one catch-all route, after the gateway's own routes so that those keep matching first::

    front = Front(authorize=auth_hook, account="123456789012")
    sts.register(front, account="123456789012")
    app.router.add_route("*", "/{tail:.*}", front.handle)

Services without a model (``execute-api``, ``lambda-url``) are mounted whole with :meth:`Front.mount`.

An operation registered with ``streaming=True`` (S3's PutObject and UploadPart: up to 5 GB) is not read up front:
its payload member is an async iterator of decoded bytes (aws-chunked decoded, chunk signatures and checksums
verified as it streams, the declared length enforced), read by the handler at its own pace. A handler's result may
set :data:`STATUS` to answer another status than the model's (S3's 206), and an error may carry ``headers`` (a
HEAD 404 of a delete marker says ``x-amz-delete-marker: true``); a 304 never has a body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from botocore.model import OperationModel, ServiceModel  # type: ignore[import-untyped]

from kambda.aws import bodies, chunked, errors, model, protocol, sigv4
from kambda.aws.protocol import faults
from kambda.aws.router import PSEUDO, Route, Router, action_of
from kambda.names import new_request_id

log = logging.getLogger(__name__)

#: CreateFunction carries a 50 MB zip as base64 inside JSON.
MAX_BODY = 72 * 1024 * 1024
#: The IAM action prefix of each service (``states:StartExecution``, not ``stepfunctions:``).
IAM_PREFIX = {
    "lambda": "lambda", "events": "events", "stepfunctions": "states", "s3": "s3", "dynamodb": "dynamodb",
    "dynamodbstreams": "dynamodb", "ecs": "ecs", "ecr": "ecr", "cloudformation": "cloudformation", "sts": "sts",
    "apigateway": "apigateway", "apigatewayv2": "apigateway", "execute-api": "execute-api", "sqs": "sqs",
    "sns": "sns", "lambda-url": "lambda",
}


@dataclass(frozen=True)
class Context:
    """What a handler knows of its request beyond the params."""

    request: web.Request
    service: str
    operation: OperationModel
    request_id: str
    region: str
    account: str
    #: The access key the request was signed with, if it was (the auth hook has verified it by now).
    access_key: str | None
    route: Route

    @property
    def bucket(self) -> str | None:
        return self.route.bucket


Handler = Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]
#: The ARNs an operation acts on, from its params (IAM checks the action on each).
Resources = Callable[[Context, dict[str, Any]], Iterable[str]]
#: Raises the AWS error (MissingAuthenticationToken, InvalidSignature, ...) unless the request is authentic.
Authenticate = Callable[[web.Request], Awaitable[object]]
#: Raises AccessDenied (or another KambdaError) unless the caller may do the action on every resource.
Authorize = Callable[[web.Request, str, Iterable[str]], Awaitable[None]]
EVERYTHING = ("*",)
#: A result key (not a model member) that overrides the response's status code.
STATUS = "__status__"
Mounted = Callable[[web.Request, Route], Awaitable[web.StreamResponse]]
#: Sees a request before authentication (:meth:`Front.intercept`): a response answers it, None goes on.
Intercept = Callable[[web.Request, Route, str], Awaitable[web.StreamResponse | None]]
#: The secret of an access key, for verifying a signed streaming body (None: unknown key).
SecretOf = Callable[[str], str | None]


async def _allow(request: web.Request, action: str, resources: Iterable[str]) -> None:
    return None


def _internal(service: ServiceModel) -> errors.KambdaError:
    message = "An internal error occurred."
    kind = model.protocol_of(service)
    if kind == "rest-xml":
        return faults.InternalError("We encountered an internal error. Please try again.")
    if kind == "rest-json":
        return errors.ServiceError(message)
    return faults.InternalFailure(message)


def _too_large(service: ServiceModel, limit: int) -> errors.KambdaError:
    message = f"Request must be smaller than {limit} bytes."
    kind = model.protocol_of(service)
    if kind == "rest-xml":
        return faults.EntityTooLarge("Your proposed upload exceeds the maximum allowed size")
    if kind == "query":
        return faults.RequestEntityTooLargeQuery(message)
    return errors.RequestEntityTooLarge(message)


def _unknown(service: ServiceModel, what: str) -> errors.KambdaError:
    kind = model.protocol_of(service)
    if kind == "json":
        return faults.UnknownOperation(f"Unknown operation {what}")
    if kind == "query":
        return faults.InvalidAction(f"Could not find operation {what} for version "
                                    f"{service.metadata.get('apiVersion')}")
    if kind == "rest-xml":
        return faults.MethodNotAllowed("The specified method is not allowed against this resource.")
    return errors.UnknownOperation(f"Unknown operation {what}")


def _unrouted(err: errors.KambdaError, request_id: str) -> web.Response:
    """An error for a request no service claims: in Lambda's shape (the endpoint's oldest tenant), with the JSON
    protocols' ``__type`` too, so that whichever client sent it reads the code."""
    return web.Response(status=err.status, body=orjson.dumps({"__type": err.code, "message": err.message}),
                        content_type="application/json",
                        headers={"x-amzn-ErrorType": err.code, "x-amzn-RequestId": request_id})


class Front:
    """Routes, parses, authorizes, calls and serialises; see the module docstring for the wiring."""

    def __init__(self, *, account: str = "000000000000", region: str = "us-east-1", domain: str = "localhost",
                 authorize: Authorize = _allow, max_body: int = MAX_BODY, fallback: str | None = None,
                 secret_of: SecretOf | None = None, authenticate: Authenticate | None = None) -> None:
        self.account, self.region, self.domain = account, region, domain
        self.authorize, self.max_body, self.fallback, self.secret_of = authorize, max_body, fallback, secret_of
        #: Called once the service is known, so that its failure is answered in that service's protocol.
        self.authenticate = authenticate
        self._handlers: dict[tuple[str, str], tuple[Handler, Resources | None, bool, bool]] = {}
        self._mounted: dict[str, Mounted] = {}
        self._intercepts: dict[str, list[Intercept]] = {}
        self._services: dict[str, None] = {}
        self._router: Router | None = None

    # -- registration ---------------------------------------------------------------------------------------------

    def register(self, service: str, operation: str, handler: Handler, resources: Resources | None = None,
                 public: bool = False, streaming: bool = False) -> None:
        """``resources``: the ARNs the call acts on (default ``*``); ``public``: any caller may (as STS's
        GetCallerIdentity, which needs no permission on AWS); ``streaming``: the payload member is an async
        iterator of the decoded body instead of its bytes (see the module docstring)."""
        if operation not in model.service_model(service).operation_names:
            raise ValueError(f"{service} has no operation {operation}")
        if streaming:
            shape = model.service_model(service).operation_model(operation).input_shape
            payload = shape.serialization.get("payload") if shape is not None else None
            if payload is None or shape.members[payload].type_name != "blob":
                raise ValueError(f"{service} {operation} has no blob payload to stream")
        self._handlers[(service, operation)] = (handler, resources, public, streaming)
        self._services[service] = None
        self._router = None

    def operation(self, service: str, operation: str, resources: Resources | None = None,
                  public: bool = False, streaming: bool = False) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`."""

        def mark(handler: Handler) -> Handler:
            self.register(service, operation, handler, resources, public, streaming)
            return handler

        return mark

    def intercept(self, service: str, hook: Intercept) -> None:
        """``hook(request, route, request_id)`` sees each request routed to ``service`` before it is authenticated,
        and answers it (a response) or lets it go on (None): S3's CORS preflights need no signature and its browser
        POST uploads carry theirs in the form. Its errors are answered in the service's protocol."""
        self._intercepts.setdefault(service, []).append(hook)

    def mount(self, service: str, handler: Mounted) -> None:
        """A service without a botocore model (``execute-api``, ``lambda-url``), handed the request whole."""
        if service not in PSEUDO:
            raise ValueError(f"only {sorted(PSEUDO)} are mounted whole, not {service}")
        self._mounted[service] = handler
        self._services[service] = None
        self._router = None

    @property
    def router(self) -> Router:
        if self._router is None:
            self._router = Router(self._services, self.domain, self.fallback)
        return self._router

    # -- the request path -----------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = new_request_id()  # uuid4 asks the kernel for entropy: ~100 us here
        raw_path = request.raw_path.partition("?")[0]
        query = request.query
        headers = request.headers
        body: bytes | None = None
        too_large = False
        route = self.router.route(request.method, raw_path, query, headers)
        unclaimed = route is None or route.rule == "fallback"  # the fallback (S3) takes no form-encoded bodies
        if unclaimed and headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            try:  # a Query request names its service only by the Action in its body
                body = await bodies.read_capped(request, self.max_body)
            except errors.KambdaError as err:
                return _unrouted(err, request_id)
            except web.HTTPRequestEntityTooLarge:
                body = None
            too_large = body is None
            action, version = action_of(query, headers.get("Content-Type"), body)
            route = self.router.route(request.method, raw_path, query, headers, action, version)
        if route is not None and route.rule == "fallback" and \
                headers.get("Content-Type", "").startswith("application/x-amz-json"):
            route = None  # a JSON protocol's request that names no target: not the fallback's (S3's) to answer
        if route is None:
            if self.authenticate is not None:
                try:
                    await self.authenticate(request)
                except errors.KambdaError as err:
                    return _unrouted(err, request_id)
            if too_large:
                return _unrouted(errors.RequestEntityTooLarge(f"Request must be smaller than {self.max_body} bytes."),
                                 request_id)
            return _unrouted(errors.UnknownOperation(f"No service answers {request.method} {raw_path}"), request_id)
        if route.service in self._mounted:
            return await self._mounted[route.service](request, route)
        service = model.service_model(route.service)
        try:
            for intercept in self._intercepts.get(route.service, ()):
                answered = await intercept(request, route, request_id)
                if answered is not None:
                    return answered
            if self.authenticate is not None:
                await self.authenticate(request)
            if too_large:
                raise _too_large(service, self.max_body)
            return await self._serve(request, route, service, raw_path, body, request_id)
        except errors.KambdaError as err:
            return self._error(request, service, err, request_id)
        except Exception:
            log.exception("%s %s failed (request %s)", request.method, raw_path, request_id)
            return self._error(request, service, _internal(service), request_id)

    async def _serve(self, request: web.Request, route: Route, service: ServiceModel, raw_path: str,
                     body: bytes | None, request_id: str) -> web.StreamResponse:
        if route.bucket is not None:
            raw_path = f"/{route.bucket}{raw_path}" if raw_path != "/" else f"/{route.bucket}"
        operation, body = await self._operation(request, service, raw_path, body)
        registered = self._handlers.get((service.service_name, operation.name))
        if registered is None:
            raise _unknown(service, operation.name)
        handler, resources, public, streaming = registered
        if streaming and body is None:
            params = protocol.parse_request(operation, request.method, raw_path, request.query, request.headers,
                                            b"")
            params[operation.input_shape.serialization["payload"]] = self._stream_body(request)
        else:
            if body is None:
                body = await self._body(request, service)
            params = protocol.parse_request(operation, request.method, raw_path, request.query, request.headers,
                                            body)
        shape = operation.input_shape
        for member in shape.required_members if shape is not None else ():
            if params.get(member) is None:
                raise faults.missing(service.service_name, model.protocol_of(service), member)
        ctx = Context(request, service.service_name, operation, request_id, route.region or self.region,
                      self.account, route.access_key, route)
        if not public:
            await self.authorize(request, f"{IAM_PREFIX.get(service.service_name, service.service_name)}:"
                                          f"{operation.name}", resources(ctx, params) if resources else EVERYTHING)
        result = await handler(ctx, params)
        override = result.pop(STATUS, None) if result else None
        status, headers, payload = protocol.serialize_response(operation, result or {}, request_id)
        status = int(override) if override is not None else status
        headers.update(protocol.request_id_headers(service, request_id))
        if request.method == "HEAD":
            return web.Response(status=status, headers=headers)
        if isinstance(payload, bytes | bytearray):
            return web.Response(status=status, headers=headers, body=payload)
        return await self._stream(request, status, headers, payload)

    async def _operation(self, request: web.Request, service: ServiceModel, raw_path: str,
                         body: bytes | None) -> tuple[OperationModel, bytes | None]:
        """The operation, and the body when finding it took reading it (a Query ``Action``)."""
        index = model.index(service.service_name)
        if index.protocol == "json":
            target = request.headers.get("X-Amz-Target", "")
            found = index.by_target(target)
            if found is None:
                raise _unknown(service, target or "(no X-Amz-Target)")
            return found, body
        if index.protocol == "query":
            if body is None:
                body = await self._body(request, service)
            action, _ = action_of(request.query, request.headers.get("Content-Type"), body)
            op = index.by_name(action) if action else None
            if op is None:
                raise _unknown(service, action or "(no Action)")
            return op, body
        matched = index.match(request.method, raw_path, request.query, request.headers)
        if matched is None:
            raise _unknown(service, f"{request.method} {raw_path}")
        return matched[0], body

    async def _body(self, request: web.Request, service: ServiceModel) -> bytes:
        headers = request.headers
        mode = headers.get("x-amz-content-sha256")
        try:
            if chunked.is_streaming(headers) or (mode is not None and service.service_name == "s3"):
                reader = self._reader(request, mode)
                async with asyncio.timeout(bodies.BODY_READ_TIMEOUT_S):
                    decoded = await reader.read_all(self.max_body)
            else:
                decoded = await bodies.read_capped(request, self.max_body)
        except web.HTTPRequestEntityTooLarge:  # the app's client_max_size is below max_body
            decoded = None
        except TimeoutError:
            raise errors.RequestTimeout(f"The request body did not arrive within "
                                        f"{bodies.BODY_READ_TIMEOUT_S:.0f} seconds") from None
        if decoded is None:
            raise _too_large(service, self.max_body)
        return decoded

    def _stream_body(self, request: web.Request) -> AsyncIterator[bytes]:
        """The body as it arrives, decoded and verified (:class:`kambda.aws.chunked.BodyReader`: aws-chunked,
        chunk signatures, checksums, the declared or Content-Length), each read within the body deadline."""
        reader = self._reader(request, request.headers.get("x-amz-content-sha256"))

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                try:
                    async with asyncio.timeout(bodies.BODY_READ_TIMEOUT_S):
                        chunk = await reader.read_chunk()
                except TimeoutError:
                    raise errors.RequestTimeout(f"The request body stalled for more than "
                                                f"{bodies.BODY_READ_TIMEOUT_S:.0f} seconds") from None
                if not chunk:
                    return
                yield chunk

        return chunks()

    def _reader(self, request: web.Request, mode: str | None) -> chunked.BodyReader:
        """The body's decoder; without ``secret_of`` (no signatures checked anywhere) chunk signatures are not
        either."""
        if self.secret_of is None:
            return chunked.BodyReader(request.content, request.headers, verify=False)
        return chunked.BodyReader(request.content, request.headers, self._signer(request, mode))

    def _signer(self, request: web.Request, mode: str | None) -> chunked.ChunkSigner | None:
        if mode not in (chunked.SIGNED, chunked.SIGNED_TRAILER):
            return None
        signed = sigv4.parse(request.headers, request.query)
        secret = self.secret_of(signed.access_key) if signed is not None and self.secret_of else None
        if signed is None or secret is None:
            raise chunked.SignatureDoesNotMatch("A signed streaming payload needs a known signing credential.")
        return chunked.ChunkSigner.for_request(signed, secret)

    async def _stream(self, request: web.Request, status: int, headers: dict[str, str],
                      chunks: AsyncIterator[bytes]) -> web.StreamResponse:
        """The first chunk is read before the status goes out, so that a failure to start is still an error
        answer; the iterator is closed however the stream ends (a reader's consumer goes with it)."""
        try:
            first = await anext(chunks, b"")
            response = web.StreamResponse(status=status, headers=headers)
            await response.prepare(request)
            if first:
                await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    def _error(self, request: web.Request, service: ServiceModel, err: errors.KambdaError,
               request_id: str) -> web.Response:
        status, headers, body = protocol.serialize_error(service, err, request_id)
        headers.update(getattr(err, "headers", None) or {})
        if request.method == "HEAD" or status == 304:
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, headers=headers, body=body)
