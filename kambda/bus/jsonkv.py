"""One KV bucket of JSON values with compare-and-set updates (Step Functions' records, ECS's tasks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from kambda.aws import errors

Record = dict[str, Any]
CAS_ATTEMPTS = 8


class Bucket:
    """One KV bucket of JSON values, with compare-and-set updates."""

    def __init__(self, js: JetStreamContext, name: str) -> None:
        self._js = js
        self._name = name
        self._kv: KeyValue | None = None

    async def kv(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._js.key_value(self._name)
        return self._kv

    async def get(self, key: str) -> tuple[Record | None, int]:
        try:
            entry = await (await self.kv()).get(key)
        except KeyNotFoundError:
            return None, 0
        if not entry.value:
            return None, 0
        return orjson.loads(entry.value), entry.revision or 0

    async def create(self, key: str, value: Record) -> bool:
        try:
            await (await self.kv()).create(key, orjson.dumps(value))
        except KeyWrongLastSequenceError:
            return False
        return True

    async def put(self, key: str, value: Record) -> None:
        await (await self.kv()).put(key, orjson.dumps(value))

    async def update(self, key: str, change: Callable[[Record | None], Awaitable[Record | None] | Record | None],
                     ) -> Record | None:
        """Read, change and write back with compare-and-set; ``change`` returns the new value or None to delete."""
        kv = await self.kv()
        for _ in range(CAS_ATTEMPTS):
            current, revision = await self.get(key)
            result = change(current)
            new = await result if isinstance(result, Awaitable) else result
            try:
                if new is None:
                    if revision:
                        await kv.delete(key, last=revision)
                elif revision:
                    await kv.update(key, orjson.dumps(new), last=revision)
                else:
                    await kv.create(key, orjson.dumps(new))
                return new
            except KeyWrongLastSequenceError:
                continue
        raise errors.ConcurrentModification(f"{key} was changed by another request meanwhile; try again")

    async def delete(self, key: str) -> None:
        await (await self.kv()).delete(key)

    async def keys(self, prefix: str = "") -> list[str]:
        """The keys under ``prefix`` (ending with a dot), filtered by the server (nats-py's ``keys(filters=...)``
        filters in the client, after reading every key)."""
        watcher = await (await self.kv()).watch(prefix + ">" if prefix else ">", ignore_deletes=True,
                                                meta_only=True)
        keys = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if entry.operation is None:
                    keys.append(entry.key)
        finally:
            await watcher.stop()
        return sorted(keys)

    async def values(self, prefix: str) -> list[Record]:
        out = []
        for key in await self.keys(prefix):
            value, _ = await self.get(key)
            if value is not None:
                out.append(value)
        return out
