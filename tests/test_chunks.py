"""The kernel chunk reader against a real nats-server: a subject's messages in order (from a start
sequence too), an object's bytes with their digest checked, a read that survives losing its
consumer, and no consumer left behind after 1,000 reads or an abandoned one (nats-py's
``ObjectStore.get()`` leaves one per call). Read rates: bench/chunks.py."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType, StreamConfig
from nats.js.errors import DigestMismatchError, ObjectNotFoundError

from kambda.bus import chunks
from kambda.bus.natsserver import NatsServer


@pytest.fixture
async def js(tmp_path) -> AsyncIterator[JetStreamContext]:  # type: ignore[no-untyped-def]
    server = NatsServer(tmp_path / "nats")
    url = await server.start()
    nc = await nats.connect(url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()
        await server.stop()


async def consumers(js: JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).state.consumer_count


async def test_a_subject_reads_in_order_and_only_its_own_messages(js: JetStreamContext) -> None:
    await js.add_stream(StreamConfig(name="S", subjects=["s.>"], storage=StorageType.MEMORY))
    seqs = {}
    for i in range(300):
        seqs[i] = (await js.publish("s.a", f"a{i}".encode())).seq
        await js.publish("s.b", f"b{i}".encode())
    got = [m async for m in chunks.read(js, "S", "s.a", batch=7)]
    assert got == [f"a{i}".encode() for i in range(300)]
    from_middle = [m async for m in chunks.read(js, "S", "s.a", first_seq=seqs[250])]
    assert from_middle == [f"a{i}".encode() for i in range(250, 300)]
    assert [m async for m in chunks.read(js, "S", "s.none")] == []
    assert await consumers(js, "S") == 0


async def test_an_object_reads_whole_with_its_digest_checked(js: JetStreamContext) -> None:
    store = await js.create_object_store("code", config=ObjectStoreConfig(bucket="code", storage=StorageType.FILE))
    data = os.urandom(100 * 1024 * 1024)
    await store.put("big", data)
    await store.put("empty", b"")
    assert await chunks.read_object(js, "code", "big") == data
    assert await chunks.read_object(js, "code", "empty") == b""
    with pytest.raises(ObjectNotFoundError):
        await chunks.read_object(js, "code", "missing")
    await store.put("small", b"x" * 300_000)
    info = await chunks.object_info(js, "code", "small")
    await js.publish(chunks.chunk_subject("code", info.nuid or ""), b"forged")  # a chunk nobody wrote with it
    with pytest.raises(DigestMismatchError):
        await chunks.read_object(js, "code", "small")
    assert await consumers(js, "OBJ_code") == 0


async def test_a_thousand_reads_and_an_abandoned_one_leave_no_consumer(js: JetStreamContext) -> None:
    store = await js.create_object_store("code", config=ObjectStoreConfig(bucket="code", storage=StorageType.MEMORY))
    await store.put("pkg", b"p" * 300_000)  # three chunks
    for _ in range(1000):
        assert len(await chunks.read_object(js, "code", "pkg")) == 300_000
    assert await consumers(js, "OBJ_code") == 0
    info = await chunks.object_info(js, "code", "pkg")
    closed = chunks.object_chunks(js, "code", info, batch=1)
    async with contextlib.aclosing(closed):
        async for _chunk in closed:
            assert await consumers(js, "OBJ_code") == 1
            break
    assert await consumers(js, "OBJ_code") == 0
    abandoned = chunks.object_chunks(js, "code", info, batch=1)
    async for _chunk in abandoned:
        break
    del abandoned
    gc.collect()
    deadline = time.monotonic() + 30  # the loop's async-generator finaliser closes it in a task
    while await consumers(js, "OBJ_code"):
        assert time.monotonic() < deadline, "the abandoned read's consumer is still there"
        await asyncio.sleep(0.05)


async def test_a_read_whose_consumer_is_deleted_goes_on_from_where_it_was(js: JetStreamContext) -> None:
    await js.add_stream(StreamConfig(name="S", subjects=["s.>"], storage=StorageType.MEMORY))
    for i in range(20):
        await js.publish("s.a", f"{i}".encode())
    reader = chunks.read(js, "S", "s.a", batch=4, name="mine")
    got = []
    async with contextlib.aclosing(reader):
        async for data in reader:
            got.append(data)
            if len(got) == 6:
                await js.delete_consumer("S", "mine")
    assert got == [f"{i}".encode() for i in range(20)]
    assert await consumers(js, "S") == 0
