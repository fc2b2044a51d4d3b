"""``python -m bench.objects``: the S3 engine (objects/store.py) alone, under the HTTP layer, on a real nats-server
(file storage) and SQLite: 1 KiB PutObject and GetObject (head + read) per second at 16 concurrent clients, and a
100 MB PUT and GET in MB/s, each against its baseline on the same server: the bare JetStream work underneath
(1 KiB: a SQL insert / select of the same row through kambda/sql.py; 100 MB: publishing the chunks with the
same window of acks outstanding, and reading them with :func:`kambda.bus.chunks.read`).

``--objects`` sets the count of small objects, ``--mb`` the large object's size, ``--pg`` adds PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
from nats.js import JetStreamContext

from kambda.bus import chunks
from kambda.bus.natsserver import NatsServer
from kambda.sql import Database, Tx
from objects import store as engine
from objects.store import CHUNK, Store

CLIENTS = 16


async def _rate(count: int, work: Callable[[int], Awaitable[None]]) -> float:
    async def client(c: int) -> None:
        for i in range(c, count, CLIENTS):
            await work(i)

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(CLIENTS)))
    return count / (time.perf_counter() - start)


async def _small(store: Store, db: Database, count: int) -> dict[str, float]:
    body = os.urandom(1024)
    await store.create_bucket("bench-small", "us-east-1")
    blob = "BLOB" if db.dialect == "sqlite" else "BYTEA"
    await db.write(lambda tx: tx.execute(f"CREATE TABLE IF NOT EXISTS bench_rows (k {blob} PRIMARY KEY, v {blob})"))

    async def put(i: int) -> None:
        await store.put("bench-small", f"k/{i}", body)

    async def get(i: int) -> None:
        meta = await store.head("bench-small", f"k/{i}")
        async for _ in store.read(meta):
            pass

    def insert(i: int) -> Callable[[Tx], object]:
        return lambda tx: tx.execute("INSERT INTO bench_rows (k, v) VALUES (?, ?)", (f"k/{i}".encode(), body))

    async def raw_put(i: int) -> None:
        await db.write(insert(i))

    async def raw_get(i: int) -> None:
        await db.read(lambda tx: tx.execute("SELECT v FROM bench_rows WHERE k = ?", (f"k/{i}".encode(),)))

    result = {"put_1kib_per_s": await _rate(count, put), "get_1kib_per_s": await _rate(count, get),
              "sql_insert_per_s": await _rate(count, raw_put), "sql_select_per_s": await _rate(count, raw_get)}
    result["put_ratio"] = result["put_1kib_per_s"] / result["sql_insert_per_s"]
    result["get_ratio"] = result["get_1kib_per_s"] / result["sql_select_per_s"]
    return result


async def _large(store: Store, js: JetStreamContext, mb: int) -> dict[str, float]:
    data = os.urandom(mb * 1024 * 1024)
    await store.create_bucket("bench-large", "us-east-1")

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 1 << 20):
            yield data[i:i + (1 << 20)]

    start = time.perf_counter()
    await store.put("bench-large", "big", pieces())
    put_s = time.perf_counter() - start
    meta = await store.head("bench-large", "big")
    start = time.perf_counter()
    size = 0
    async for piece in store.read(meta):
        size += len(piece)
    get_s = time.perf_counter() - start
    assert size == len(data)

    publisher = engine._Publisher(js, "bench-baseline")
    await publisher.open()
    start = time.perf_counter()
    for i in range(0, len(data), CHUNK):
        await publisher.publish(data[i:i + CHUNK])
    await publisher.finish()
    raw_put_s = time.perf_counter() - start
    await publisher.close()
    start = time.perf_counter()
    size = 0
    async for piece in chunks.read(js, engine.STREAM, engine.blob_subject("bench-baseline")):
        size += len(piece)
    raw_get_s = time.perf_counter() - start
    assert size == len(data)
    return {"put_mb_per_s": mb / put_s, "get_mb_per_s": mb / get_s, "publish_mb_per_s": mb / raw_put_s,
            "chunk_read_mb_per_s": mb / raw_get_s, "put_ratio": raw_put_s / put_s, "get_ratio": raw_get_s / get_s}


async def run(objects: int, mb: int, dsn: str | None = None) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats")
        nc = await nats.connect(await server.start())
        db = Database.open(dsn, Path(tmp) / "objects.db")
        store = Store(nc.jetstream(timeout=60), db, region="us-east-1")
        try:
            await store.start(background=False)
            return {"small": await _small(store, db, objects), "large": await _large(store, nc.jetstream(), mb)}
        finally:
            await store.close()
            await db.close()
            await nc.close()
            await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=4000)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--pg", action="store_true", help="also on PostgreSQL (bench/pg.py starts one)")
    args = parser.parse_args()
    results = {"sqlite": asyncio.run(run(args.objects, args.mb))}
    if args.pg:
        from bench import pg

        with pg.postgres_server() as dsn:
            results["postgresql"] = asyncio.run(run(args.objects, args.mb, pg.fresh_database(dsn, "bench_s3")))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
