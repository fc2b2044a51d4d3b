"""The Lambda Runtime API (``/2018-06-01/runtime/...``) that execution environments talk to.

One aiohttp application serves every environment of this invoker; each environment gets a
listening socket of its own on 127.0.0.1 (its ``AWS_LAMBDA_RUNTIME_API``), and a request is routed
to its environment by the local port it arrived on. Runtimes are AWS's own clients or kambda's
built-in Python runtime, so the wire details follow LAMBDA_CONTRACT.md section 4 exactly.
"""

from __future__ import annotations

import logging
import socket
from typing import Protocol

from aiohttp import web

log = logging.getLogger(__name__)

PREFIX = "/2018-06-01/runtime"
#: A response over 6 MB is a function error; the body is still read (up to this) to say so.
MAX_RESPONSE = 6 * 1024 * 1024
READ_LIMIT = MAX_RESPONSE + 1024 * 1024


class Event(Protocol):
    request_id: str
    payload: bytes
    headers: dict[str, str]


class Handle(Protocol):
    """What an environment exposes to the Runtime API."""

    #: The uid its processes run as when sandboxed (only they may call its API), else None.
    owner_uid: int | None

    async def next_event(self) -> Event | None: ...

    def post_response(self, request_id: str, body: bytes, too_large: bool) -> bool: ...

    def post_error(self, request_id: str, body: bytes, error_type: str) -> bool: ...

    def post_init_error(self, body: bytes, error_type: str) -> None: ...


class RuntimeApi:
    def __init__(self) -> None:
        self._app = web.Application(client_max_size=READ_LIMIT)
        self._app.add_routes([
            web.get(f"{PREFIX}/invocation/next", self._next),
            web.post(f"{PREFIX}/invocation/{{id}}/response", self._response),
            web.post(f"{PREFIX}/invocation/{{id}}/error", self._error),
            web.post(f"{PREFIX}/init/error", self._init_error),
        ])
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        self._handles: dict[int, Handle] = {}
        self._sites: dict[int, web.TCPSite] = {}

    async def start(self) -> None:
        await self._runner.setup()

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def open(self, handle: Handle) -> int:
        """A listening socket for one environment; returns its port."""
        site = web.TCPSite(self._runner, "127.0.0.1", 0, reuse_address=True)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._handles[port] = handle
        self._sites[port] = site
        return int(port)

    async def close(self, port: int) -> None:
        self._handles.pop(port, None)
        site = self._sites.pop(port, None)
        if site is not None:
            await site.stop()

    def _handle(self, request: web.Request) -> Handle:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        handle = self._handles.get(sockname[1]) if sockname else None
        if handle is None:
            raise web.HTTPGone(text='{"errorMessage": "environment is gone"}',
                               content_type="application/json")
        if handle.owner_uid is not None and _peer_uid(request) != handle.owner_uid:
            # Another function's process found this port on 127.0.0.1: it must not take or answer
            # this environment's events.
            raise web.HTTPForbidden(text='{"errorMessage": "not this environment\'s runtime"}',
                                    content_type="application/json")
        return handle

    async def _next(self, request: web.Request) -> web.StreamResponse:
        event = await self._handle(request).next_event()
        if event is None:  # the environment is being stopped
            raise web.HTTPGone(text='{"errorMessage": "environment is stopping"}',
                               content_type="application/json")
        # Content-Type must be exactly application/json: AWS's clients break on a charset.
        return web.Response(body=event.payload, headers={**event.headers, "Content-Type": "application/json"})

    async def _response(self, request: web.Request) -> web.StreamResponse:
        handle = self._handle(request)
        too_large = (request.content_length or 0) > MAX_RESPONSE
        body = b""
        if not too_large:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                too_large = True
            too_large = too_large or len(body) > MAX_RESPONSE
        if not handle.post_response(request.match_info["id"], body, too_large):
            return _bad_request_id()
        if too_large:
            return web.json_response({"errorMessage": "Response payload size exceeded maximum allowed "
                                      "payload size (6291556 bytes).",
                                      "errorType": "Function.ResponseSizeTooLarge"}, status=413)
        return _accepted()

    async def _error(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        error_type = request.headers.get("Lambda-Runtime-Function-Error-Type", "")
        if not self._handle(request).post_error(request.match_info["id"], body, error_type):
            return _bad_request_id()
        return _accepted()

    async def _init_error(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        error_type = request.headers.get("Lambda-Runtime-Function-Error-Type", "Runtime.Unknown")
        self._handle(request).post_init_error(body, error_type)
        return _accepted()


def _peer_uid(request: web.Request) -> int | None:
    """The uid that owns the client end of this TCP connection (from /proc/net/tcp), if found.

    Runtimes keep their connection open, and the table is small on an invoker, so this is cheap."""
    if request.transport is None:
        return None
    peer = request.transport.get_extra_info("peername")
    local = request.transport.get_extra_info("sockname")
    if not peer or not local:
        return None
    try:
        client = f"{socket.inet_aton(peer[0])[::-1].hex().upper()}:{peer[1]:04X}"
        server = f"{socket.inet_aton(local[0])[::-1].hex().upper()}:{local[1]:04X}"
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                if fields[1] == client and fields[2] == server:
                    return int(fields[7])
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return None


def _accepted() -> web.Response:
    return web.json_response({"status": "OK"}, status=202)


def _bad_request_id() -> web.Response:
    return web.json_response({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"},
                             status=400)
