"""On a 3-server NATS cluster (three real nats-server processes, clustered with routes), the
platform's streams and buckets are kept by every server and survive the loss of one of them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
from nats.js.api import StreamInfo

from kambda import bus, procs
from kambda.bus.natsserver import find_binary
from tests.conftest import free_port

SERVERS = 3


async def _start_cluster(root: Path) -> tuple[list[asyncio.subprocess.Process], list[str]]:
    routes = [free_port() for _ in range(SERVERS)]
    clients = [free_port() for _ in range(SERVERS)]
    processes = []
    for i in range(SERVERS):
        home = root / f"n{i}"
        (home / "jetstream").mkdir(parents=True)
        others = ", ".join(f'"nats-route://127.0.0.1:{port}"' for j, port in enumerate(routes) if j != i)
        config = home / "nats.conf"
        config.write_text(
            f'listen: "127.0.0.1:{clients[i]}"\nserver_name: "n{i}"\nmax_payload: {bus.MAX_PAYLOAD}\n'
            f'jetstream {{\n  store_dir: "{home / "jetstream"}"\n}}\n'
            f'cluster {{\n  name: "kambda"\n  listen: "127.0.0.1:{routes[i]}"\n  routes: [{others}]\n}}\n')
        with open(home / "nats.log", "ab") as log:
            processes.append(await procs.spawn([find_binary(), "-c", str(config)], stdout=log.fileno(),
                                               stderr=log.fileno()))
    return processes, [f"nats://127.0.0.1:{port}" for port in clients]


async def _until(attempt: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    """Retry ``attempt`` until it returns True; errors count as not yet (a cluster electing leaders)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if await attempt():
                return
        except Exception as exc:  # noqa: BLE001 - reported if the deadline passes
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


async def _replicated_platform(root: Path) -> None:
    processes, urls = await _start_cluster(root)
    nc = None
    try:
        nc = await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        js = nc.jetstream(timeout=5)

        async def made(replicas: int) -> bool:
            await bus.ensure_platform(js, replicas)
            return True

        # A platform made before it had a cluster: one replica of everything, and a function in it.
        await _until(lambda: made(1), "JetStream on the cluster")
        functions = await js.key_value(bus.FUNCTIONS_BUCKET)
        await functions.put("hello", b"config")

        await _until(lambda: made(3), "the streams and buckets to take three replicas")
        streams = [bus.SYNC_STREAM, bus.ASYNC_STREAM, bus.LOGS_STREAM, bus.EVENTS_STREAM,
                   *(f"KV_{b}" for b in (bus.FUNCTIONS_BUCKET, bus.ALIASES_BUCKET, bus.HTTP_BUCKET, bus.EVENTS_BUCKET)),
                   f"OBJ_{bus.CODE_BUCKET}"]

        async def replicated(stream: str) -> bool:
            info: StreamInfo = await js.stream_info(stream)
            peers = info.cluster.replicas if info.cluster and info.cluster.replicas else []
            return info.config.num_replicas == 3 and len(peers) == 2 and all(p.current for p in peers)

        for stream in streams:
            await _until(lambda s=stream: replicated(s), f"{stream} to be kept by three servers")
        assert (await functions.get("hello")).value == b"config"  # nothing lost in the move

        # Running again changes nothing.
        await bus.ensure_platform(js, 3)
        assert all([(await js.stream_info(s)).config.num_replicas == 3 for s in streams])

        # One server goes: every stream still takes writes and serves what it had.
        processes[2].kill()
        await processes[2].wait()

        async def writable() -> bool:
            await functions.put("after", b"one server down")
            ack = await js.publish(bus.async_subject("hello", "$LATEST"), b"{}")
            return ack.stream == bus.ASYNC_STREAM

        await _until(writable, "writes with one server of three down")
        assert (await functions.get("hello")).value == b"config"
        assert (await functions.get("after")).value == b"one server down"
        info = await js.stream_info(bus.ASYNC_STREAM)
        assert info.state.messages == 1, json.dumps(info.as_dict(), default=str)
    finally:
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        for process in processes:
            await procs.stop(process, 5.0)


def test_streams_and_buckets_survive_one_server_of_three(tmp_path: Path) -> None:
    asyncio.run(_replicated_platform(tmp_path))
