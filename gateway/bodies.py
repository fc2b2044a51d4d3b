"""Reading a request body with a size cap, fixed-length or chunked, without buffering past the cap."""

from __future__ import annotations

from aiohttp import web


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` bytes (the caller answers in its own shape)."""
    if request.content_length is not None and request.content_length > limit:
        return None
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
