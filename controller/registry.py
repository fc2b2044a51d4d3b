"""The function registry: configurations in a JetStream KV bucket, code in the object store.

The active controller is the only writer, so it keeps every configuration in memory as well:
reads and listings never touch the bus. Code is stored (by sha256) before the configuration that
points to it is committed, so a half-finished deploy is never visible to an invoker or gateway.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from kambda import bus, codepkg, errors
from kambda.names import Arns
from kambda.v1.function_pb2 import FunctionConfig

log = logging.getLogger(__name__)


def now_timestamp() -> str:
    """AWS's LastModified format: 2024-01-31T12:00:00.000+0000."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


class Registry:
    def __init__(self, js: JetStreamContext, arns: Arns) -> None:
        self._js = js
        self._arns = arns
        self._kv: KeyValue | None = None
        self._code: ObjectStore | None = None
        self._functions: dict[str, FunctionConfig] = {}
        #: One change at a time per function and per code package: the controller serves gRPC
        #: calls concurrently, and KV compare-and-set would otherwise fail one of two racing calls.
        self._locks: dict[str, asyncio.Lock] = {}
        self._revisions: dict[str, int] = {}  # KV revision of each entry, for compare-and-set

    async def load(self) -> None:
        self._kv = await self._js.key_value(bus.FUNCTIONS_BUCKET)
        self._code = await self._js.object_store(bus.CODE_BUCKET)
        try:
            keys = await self._kv.keys()
        except NoKeysError:
            keys = []
        for key in keys:
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                continue
            config = FunctionConfig.FromString(entry.value or b"")
            self._functions[config.name] = config
            self._revisions[config.name] = entry.revision or 0
        log.info("registry loaded: %d functions", len(self._functions))

    def __len__(self) -> int:
        return len(self._functions)

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def all(self) -> list[FunctionConfig]:
        return list(self._functions.values())

    def get(self, name: str) -> FunctionConfig:
        config = self._functions.get(name)
        if config is None:
            raise errors.function_not_found(self._arns.function(name))
        return config

    def list(self, marker: str, max_items: int) -> tuple[list[FunctionConfig], str]:
        names = sorted(self._functions)
        start = 0
        if marker:
            # The marker is the last name of the previous page.
            start = next((i for i, n in enumerate(names) if n > marker), len(names))
        page = names[start:start + max_items]
        next_marker = page[-1] if start + max_items < len(names) and page else ""
        return [self._functions[n] for n in page], next_marker

    def lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def store_code(self, data: bytes) -> codepkg.PackageInfo:
        """Validate a package and store it under its sha256 (a no-op when it is stored already)."""
        info = await asyncio.to_thread(codepkg.inspect_package, data)
        assert self._code is not None
        async with self.lock(f"code:{info.sha256_hex}"):
            try:
                await self._code.get_info(info.sha256_hex)
            except NotFoundError:
                await self._code.put(info.sha256_hex, data)
        return info

    async def create(self, config: FunctionConfig) -> FunctionConfig:
        if config.name in self._functions:
            raise errors.ResourceConflict(f"Function already exist: {config.name}")
        config.last_modified = now_timestamp()
        config.revision_id = str(uuid.uuid4())
        assert self._kv is not None
        try:
            revision = await self._kv.create(config.name, config.SerializeToString())
        except KeyWrongLastSequenceError:
            raise errors.ResourceConflict(f"Function already exist: {config.name}") from None
        self._functions[config.name] = config
        self._revisions[config.name] = revision
        return config

    async def update(self, config: FunctionConfig, revision_id: str = "") -> FunctionConfig:
        """Commit a new configuration of an existing function (RevisionId checked when given)."""
        current = self.get(config.name)
        if revision_id and revision_id != current.revision_id:
            raise errors.PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. Call the "
                "GetFunction/GetAlias API to retrieve the latest Revision Id")
        config.last_modified = now_timestamp()
        config.revision_id = str(uuid.uuid4())
        assert self._kv is not None
        revision = await self._kv.update(config.name, config.SerializeToString(),
                                         last=self._revisions[config.name])
        old_sha = current.code_sha256
        self._functions[config.name] = config
        self._revisions[config.name] = revision
        if old_sha != config.code_sha256:
            await self._drop_code_if_unused(old_sha)
        return config

    async def delete(self, name: str) -> FunctionConfig:
        config = self.get(name)
        assert self._kv is not None
        await self._kv.purge(name)
        del self._functions[name]
        del self._revisions[name]
        await self._drop_code_if_unused(config.code_sha256)
        return config

    async def _drop_code_if_unused(self, sha: str) -> None:
        if not sha or any(c.code_sha256 == sha for c in self._functions.values()):
            return
        assert self._code is not None
        try:
            await self._code.delete(sha)
        except NotFoundError:
            pass
