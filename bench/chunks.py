"""``python -m bench.chunks``: read rate of one object-store object, kambda's chunk reader against
nats-py's ``ObjectStore.get()``, on a real nats-server (file storage), and the consumers each leaves.

``--mb`` sets the object's size (100 MB by default); ``--reads`` how many times each reads it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import ObjectStoreConfig, StorageType

from kambda.bus import chunks
from kambda.bus.natsserver import NatsServer


async def run(mb: int, reads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats")
        nc = await nats.connect(await server.start())
        try:
            js = nc.jetstream(timeout=60)
            store = await js.create_object_store("b", config=ObjectStoreConfig(bucket="b", storage=StorageType.FILE))
            data = os.urandom(mb * 1024 * 1024)
            await store.put("o", data)
            result: dict[str, float] = {"megabytes": float(mb)}
            start = time.perf_counter()
            for _ in range(reads):
                assert await chunks.read_object(js, "b", "o") == data
            result["chunks_mb_per_s"] = mb * reads / (time.perf_counter() - start)
            result["chunks_consumers_left"] = float((await js.stream_info("OBJ_b")).state.consumer_count)
            start = time.perf_counter()
            for _ in range(reads):
                assert (await store.get("o")).data == data
            result["object_store_get_mb_per_s"] = mb * reads / (time.perf_counter() - start)
            result["object_store_get_consumers_left"] = float((await js.stream_info("OBJ_b")).state.consumer_count)
            result["ratio"] = result["chunks_mb_per_s"] / result["object_store_get_mb_per_s"]
            return result
        finally:
            await nc.close()
            await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--reads", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.mb, args.reads)), indent=2))


if __name__ == "__main__":
    main()
