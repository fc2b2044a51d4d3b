"""gRPC plumbing shared by the controller (server) and the gateway (client).

A :class:`~kambda.aws.errors.KambdaError` crosses gRPC as a status whose trailing metadata carries the
AWS error code (``kambda-error-code``) and any extra body fields as JSON (``kambda-error-extra``);
:func:`call` turns that back into the same exception on the client side, and turns a transport
failure into a ServiceError, so grpc's exceptions never reach the gateway's handlers.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
from grpc import aio

from kambda.aws import errors
from kambda.private import write_private

CODE_KEY = "kambda-error-code"
EXTRA_KEY = "kambda-error-extra"
#: Code packages travel in CreateFunction / UpdateFunctionCode: 50 MB zipped, base64 not involved.
MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]

_STATUS_BY_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    412: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

T = TypeVar("T")


#: The longest error message sent across gRPC (it is percent-encoded on the wire, so up to 3x longer).
MAX_ERROR_MESSAGE = 2048


async def abort_with(context: aio.ServicerContext, err: errors.KambdaError) -> None:
    """Server side: end the call with ``err`` (raises, as grpc's abort does). The message travels as
    metadata, which the client refuses past 16 KB: a message quoting a huge input is cut short."""
    metadata: tuple[tuple[str, str], ...] = ((CODE_KEY, err.code),)
    if err.extra:
        metadata += ((EXTRA_KEY, json.dumps(err.extra)),)
    message = err.message if len(err.message) <= MAX_ERROR_MESSAGE else err.message[:MAX_ERROR_MESSAGE] + "..."
    await context.abort(_STATUS_BY_HTTP.get(err.status, grpc.StatusCode.INTERNAL), message,
                        trailing_metadata=metadata)


async def call(method: Callable[..., Awaitable[T]], request: object, timeout: float = 30.0) -> T:
    """Client side: call a stub method, turning every failure into a KambdaError."""
    try:
        return await method(request, timeout=timeout)
    except aio.AioRpcError as exc:
        trailing = dict(exc.trailing_metadata() or ())
        code = trailing.get(CODE_KEY)
        if isinstance(code, str):
            extra_raw = trailing.get(EXTRA_KEY)
            extra = json.loads(extra_raw) if isinstance(extra_raw, str) else {}
            raise errors.from_code(code, exc.details() or "", **extra) from None
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise errors.ServiceError(f"The controller is not reachable: {exc.code().name}") from None
        raise errors.ServiceError(f"Controller error: {exc.code().name}: {exc.details()}") from None


# --- who may call the controller -------------------------------------------------------------------

#: The metadata key that carries a caller's token (``Bearer <token>``).
TOKEN_KEY = "authorization"


class TokenError(ValueError):
    """A token file that cannot be used; the message names the file."""


def read_token(path: str) -> str:
    """The token in a file (surrounding whitespace dropped); empty path: no token."""
    if not path:
        return ""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise TokenError(f"cannot read the controller token {path}: {exc.strerror or exc}") from None
    if len(token) < 16:
        raise TokenError(f"the controller token in {path} is shorter than 16 characters")
    return token


def write_token(path: Path) -> str:
    """A fresh random token, written to ``path`` with mode 0600."""
    token = secrets.token_urlsafe(32)
    write_private(path, token)
    return token


class TokenGate(aio.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) every call that does not carry the token; compared in constant time."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        given = dict(handler_call_details.invocation_metadata or ()).get(TOKEN_KEY, "")
        if isinstance(given, str) and hmac.compare_digest(given.encode(), self._expected):
            return await continuation(handler_call_details)
        return _REFUSE


async def _unauthenticated(request: object, context: aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the controller takes calls from kambda's components only")


_REFUSE: grpc.RpcMethodHandler = grpc.unary_unary_rpc_method_handler(_unauthenticated)


class _WithToken(aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._pair = (TOKEN_KEY, f"Bearer {token}")

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        metadata = aio.Metadata(*(client_call_details.metadata or ()), self._pair)
        return await continuation(client_call_details._replace(metadata=metadata), request)


def channel(address: str, token: str = "") -> aio.Channel:
    """A channel to the controller (``host:port`` or ``unix:/path``) that presents ``token`` on every call."""
    return aio.insecure_channel(address, options=CHANNEL_OPTIONS,
                                interceptors=[_WithToken(token)] if token else None)
