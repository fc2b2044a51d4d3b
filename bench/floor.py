"""Floors: the fewest processes and hops a platform of this shape can take, with none of the Lambda
work (no authorization, envelope, timeouts, logs or metrics).

    client -> gateway (aiohttp, uvloop) -> NATS -> relay (nats-py, uvloop; the invoker's place)
           -> socket -> environment process (one request at a time; the runtime's place)

Two buses:

- ``core``: a core NATS request to a queue group; the relay queues what finds every environment
  busy. The floor of any gateway + bus + isolated-process platform (OpenFaaS and Fission look
  like this), and below what ARCHITECTURE.md allows: with more than one relay, a queue group
  hands work to busy environments while others idle.
- ``jetstream``: what ARCHITECTURE.md prescribes, bare: the gateway publishes to a JetStream work
  queue (memory storage) and waits for the result on its inbox; the relay keeps one pull
  outstanding per free environment and sends each ack with its next pull.

The bench measures both beside kambda and the bare baseline in the same run, so kambda's ratios can
be read against what this machine allows such a platform to cost, not only against one aiohttp
process. Started as ``python -m bench.floor gateway|relay BUS NATS_URL ...`` (servers print their
port, or "ready", on their first line of output) and ``python -m bench.floor environment FD``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kambda.bus.natsserver import NatsServer

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from nats.aio.client import Client as NATSClient
    from nats.aio.msg import Msg

_FRAME = struct.Struct("!I")
SUBJECT = "bench.floor"
BUSES = ("core", "jetstream")
STREAM = "BENCH_FLOOR"
CONSUMER = "relay"


def environment(fd: int) -> None:
    """Serve frames from the relay forever: one JSON event in, the bench's handler's JSON result out."""
    from bench.__main__ import HANDLER

    namespace: dict[str, Any] = {}
    exec(HANDLER, namespace)  # the very source kambda runs
    handler = namespace["handler"]
    sock = socket.socket(fileno=fd)
    buffer = b""
    while True:
        while len(buffer) < _FRAME.size or len(buffer) < _FRAME.size + _FRAME.unpack_from(buffer)[0]:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return
            buffer += chunk
        (size,) = _FRAME.unpack_from(buffer)
        event, buffer = buffer[_FRAME.size:_FRAME.size + size], buffer[_FRAME.size + size:]
        out = json.dumps(handler(json.loads(event), None)).encode()
        sock.sendall(_FRAME.pack(len(out)) + out)


async def relay(bus: str, nats_url: str, environments: int) -> None:
    """Take requests from the bus and hand each to a free environment process."""
    import nats

    nc = await nats.connect(nats_url)
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    channels = []  # held here: the loop keeps only weak references to streams and tasks
    running: set[asyncio.Task[None]] = set()
    for _ in range(environments):  # each exits when its socket closes, with this process
        ours, theirs = socket.socketpair()
        subprocess.Popen([sys.executable, "-m", "bench.floor", "environment", str(theirs.fileno())],
                         pass_fds=[theirs.fileno()])
        theirs.close()
        channels.append(await asyncio.open_unix_connection(sock=ours))
        free.put_nowait(channels[-1])

    def spawn(work: Awaitable[None]) -> None:  # served concurrently: nats-py runs callbacks one at a time
        task = asyncio.ensure_future(work)
        running.add(task)
        task.add_done_callback(running.discard)

    async def run(event: bytes) -> bytes:
        reader, writer = await free.get()
        try:
            writer.write(_FRAME.pack(len(event)) + event)
            (size,) = _FRAME.unpack(await reader.readexactly(_FRAME.size))
            return await reader.readexactly(size)
        finally:
            free.put_nowait((reader, writer))

    if bus == "core":
        async def serve(msg: Msg) -> None:
            await nc.publish(msg.reply, await run(msg.data))

        async def take(msg: Msg) -> None:
            spawn(serve(msg))

        await nc.subscribe(SUBJECT, queue="relays", cb=take)
    else:
        await _jetstream_queue(nc)
        inbox = nc.new_inbox()
        pull_subject = f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{CONSUMER}"
        pull = json.dumps({"batch": 1, "expires": 30 * 10**9}).encode()

        async def serve_pulled(msg: Msg) -> None:
            reply_to, _, event = msg.data.partition(b"\n")
            await nc.publish(reply_to.decode(), await run(event))
            await nc.publish(msg.reply, b"+NXT " + pull, reply=inbox)

        async def pulled(msg: Msg) -> None:
            if msg.headers and msg.headers.get("Status"):  # an expired pull: renew it
                await nc.publish(pull_subject, pull, reply=inbox)
            else:
                spawn(serve_pulled(msg))

        await nc.subscribe(inbox, cb=pulled)
        for _ in range(environments):
            await nc.publish(pull_subject, pull, reply=inbox)
    print("ready", flush=True)
    await asyncio.Event().wait()


async def gateway(bus: str, nats_url: str) -> None:
    """An HTTP server that sends each request body over the bus and answers with the result."""
    import itertools

    import nats
    from aiohttp import web

    nc = await nats.connect(nats_url)
    inbox = nc.new_inbox()
    tokens = itertools.count()
    waiting: dict[str, asyncio.Future[bytes]] = {}

    async def on_reply(msg: Msg) -> None:  # results on <inbox>.r.<token>; acks on <inbox>.a.<token>
        kind, token = msg.subject[len(inbox) + 1:].split(".", 1)
        fut = waiting.get(token)
        if kind == "r" and fut is not None and not fut.done():
            fut.set_result(msg.data)

    await nc.subscribe(f"{inbox}.>", cb=on_reply)

    async def queued(body: bytes) -> bytes:
        token = str(next(tokens))
        fut = waiting[token] = asyncio.get_running_loop().create_future()
        try:
            await nc.publish(SUBJECT, f"{inbox}.r.{token}\n".encode() + body, reply=f"{inbox}.a.{token}")
            return await asyncio.wait_for(fut, 10)
        finally:
            del waiting[token]

    async def invoke(request: web.Request) -> web.Response:
        body = await request.read()
        result = (await nc.request(SUBJECT, body, timeout=10)).data if bus == "core" else await queued(body)
        return web.Response(body=result, content_type="application/json")

    app = web.Application()
    app.router.add_post("/invoke", invoke)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await asyncio.Event().wait()


async def _jetstream_queue(nc: NATSClient) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT], retention=RetentionPolicy.WORK_QUEUE,
                                     storage=StorageType.MEMORY))
    await js.add_consumer(STREAM, ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT,
                                                 ack_wait=30, max_ack_pending=-1, max_waiting=4096))


class Floor:
    """nats-server, a relay with ``environments`` environment processes, and a gateway."""

    def __init__(self, state_dir: str, environments: int, bus: str = "core") -> None:
        self._nats = NatsServer(Path(state_dir))
        self._environments = environments
        self._bus = bus
        self._procs: list[subprocess.Popen[str]] = []
        self.url = ""

    def _start(self, *args: str) -> str:
        proc = subprocess.Popen([sys.executable, "-m", "bench.floor", *args], stdout=subprocess.PIPE, text=True)
        self._procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"bench.floor {args[0]} did not start")
        return line

    async def __aenter__(self) -> Floor:
        try:
            nats_url = await self._nats.start()
            await asyncio.to_thread(self._start, "relay", self._bus, nats_url, str(self._environments))
            port = await asyncio.to_thread(self._start, "gateway", self._bus, nats_url)
        except BaseException:
            await self.__aexit__()
            raise
        self.url = f"http://127.0.0.1:{port}/invoke"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            proc.wait(10)
        await self._nats.stop()


def main() -> None:
    role, *args = sys.argv[1:]
    if role == "environment":
        environment(int(args[0]))
        return
    import uvloop

    uvloop.run(relay(args[0], args[1], int(args[2])) if role == "relay" else gateway(args[0], args[1]))


if __name__ == "__main__":
    main()
