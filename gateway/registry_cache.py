"""The gateway's read-only copy of the function registry, kept current by a KV watch.

The invoke path reads configurations from here, never from the bus; a name that is not here yet
(a function created a moment ago through another gateway) is looked up once in the KV bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from kambda import bus
from kambda.v1.function_pb2 import FunctionConfig

log = logging.getLogger(__name__)


class RegistryCache:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None
        self._configs: dict[str, FunctionConfig] = {}
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()

    async def start(self) -> None:
        self._kv = await self._js.key_value(bus.FUNCTIONS_BUCKET)
        self._task = asyncio.create_task(self._watch())
        await asyncio.wait_for(self._loaded.wait(), 30)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        assert self._kv is not None
        while True:
            try:
                watcher = await self._kv.watchall()
                async for entry in watcher:
                    if entry is None:
                        self._loaded.set()
                        continue
                    if entry.operation in (KV_DEL, KV_PURGE):
                        self._configs.pop(entry.key, None)
                    else:
                        self.put(FunctionConfig.FromString(entry.value or b""))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watch broke (NATS restarted): start it again
                log.warning("registry watch failed (%s); restarting it", exc)
                await asyncio.sleep(0.5)

    def put(self, config: FunctionConfig) -> None:
        current = self._configs.get(config.name)
        if current is None or current.revision_id != config.revision_id:
            self._configs[config.name] = config

    def forget(self, name: str) -> None:
        self._configs.pop(name, None)

    async def get(self, name: str) -> FunctionConfig | None:
        config = self._configs.get(name)
        if config is not None:
            return config
        assert self._kv is not None
        try:
            entry = await self._kv.get(name)
        except KeyNotFoundError:
            return None
        config = FunctionConfig.FromString(entry.value or b"")
        self._configs[name] = config
        return config
