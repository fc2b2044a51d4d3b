"""Reading request bodies: with a size cap (fixed-length or chunked, never buffering past the cap) and
within a deadline, so a client that trickles its body costs only its own request."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from kambda.aws import errors

#: A body that has not fully arrived after this long is answered 408.
BODY_READ_TIMEOUT_S = 30.0


def _slow_body() -> errors.KambdaError:
    return errors.RequestTimeout(f"The request body did not arrive within {BODY_READ_TIMEOUT_S:.0f} seconds")


async def read_whole(request: web.Request) -> bytes:
    """The body (the app's client_max_size applies), within the deadline."""
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            return await request.read()
    except TimeoutError:
        raise _slow_body() from None


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` bytes (the caller answers in its own shape)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    if request.content.is_eof():
        # All of it is here (a small body arrives with the headers): nothing to wait for, no deadline.
        body = await request.read()
        return body if len(body) <= limit else None
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            return await _read_capped(request, limit)
    except TimeoutError:
        raise _slow_body() from None


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    if request.content.at_eof():  # read already (the auth middleware hashes signed bodies), or empty
        body = await request.read()
        return body if len(body) <= limit else None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await read_whole(request)
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequestContent(f"Could not parse request body into json: {exc}") from None
    if not isinstance(body, dict):
        raise errors.InvalidRequestContent("Could not parse request body into json: expected an object")
    return body
