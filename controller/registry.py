"""The function registry: configurations in a JetStream KV bucket, code in the object store.

The active controller is the only writer, so it keeps every configuration in memory as well:
reads and listings never touch the bus. Code is stored (by sha256) before the configuration that
points to it is committed, so a half-finished deploy is never visible to an invoker or gateway.

Each function has its $LATEST configuration, its published versions (immutable snapshots, keys
``<name>.<N>``) and its aliases (their own bucket, keys ``<name>.<alias>``). A code package is
deleted once no version of any function uses it.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import uuid
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from kambda import bus, codepkg
from kambda.aws import errors
from kambda.bus import kvwatch
from kambda.names import LATEST, Arns
from kambda.v1.function_pb2 import Alias, FunctionConfig

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
        self._alias_kv: KeyValue | None = None
        self._code: ObjectStore | None = None
        self._functions: dict[str, FunctionConfig] = {}
        self._versions: dict[str, dict[str, FunctionConfig]] = {}  # name -> published version -> config
        self._aliases: dict[str, dict[str, Alias]] = {}  # name -> alias name -> alias
        #: One change at a time per function and per code package: the controller serves gRPC
        #: calls concurrently, and KV compare-and-set would otherwise fail one of two racing calls.
        self._locks: dict[str, asyncio.Lock] = {}
        self._revisions: dict[str, int] = {}  # KV revision of each functions-bucket key, for compare-and-set

    async def load(self) -> None:
        self._kv = await self._js.key_value(bus.FUNCTIONS_BUCKET)
        self._alias_kv = await self._js.key_value(bus.ALIASES_BUCKET)
        self._code = await self._js.object_store(bus.CODE_BUCKET)
        for key, value, revision in await _entries(self._js, self._kv):
            config = FunctionConfig.FromString(value)
            if config.version == LATEST:
                self._functions[config.name] = config
            else:
                self._versions.setdefault(config.name, {})[config.version] = config
            self._revisions[key] = revision
        for _, value, _ in await _entries(self._js, self._alias_kv):
            alias = Alias.FromString(value)
            self._aliases.setdefault(alias.function, {})[alias.name] = alias
        for name in set(self._versions) | set(self._aliases):  # left over by a delete that was cut short
            if name not in self._functions:
                self._versions.pop(name, None)
                self._aliases.pop(name, None)
        log.info("registry loaded: %d functions", len(self._functions))

    def __len__(self) -> int:
        return len(self._functions)

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def all(self) -> list[FunctionConfig]:
        """Every version ($LATEST and published) of every function."""
        return [*self._functions.values(), *(c for vs in self._versions.values() for c in vs.values())]

    def get(self, name: str) -> FunctionConfig:
        """A function's $LATEST configuration (which also holds its function-wide settings)."""
        config = self._functions.get(name)
        if config is None:
            raise errors.function_not_found(self._arns.function(name))
        return config

    def get_version(self, name: str, version: str) -> FunctionConfig:
        """$LATEST or a published version; ResourceNotFound names the qualified ARN."""
        self.get(name)
        if version == LATEST:
            return self._functions[name]
        config = self._versions.get(name, {}).get(version)
        if config is None:
            raise errors.function_not_found(self._arns.function(name, version))
        return config

    def has_version(self, name: str, version: str) -> bool:
        return name in self._functions and (version == LATEST or version in self._versions.get(name, {}))

    def versions(self, name: str) -> list[FunctionConfig]:
        """$LATEST, then the published versions in numeric order."""
        published = self._versions.get(name, {})
        return [self.get(name), *(published[v] for v in sorted(published, key=int))]

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

    async def update(self, config: FunctionConfig, revision_id: str = "", touch: bool = True) -> FunctionConfig:
        """Commit a new configuration of an existing function version (RevisionId checked when given).

        ``touch=False`` keeps LastModified and RevisionId: bookkeeping that is no change of the
        function's code or configuration (the published-version counter, provisioned concurrency
        of a version)."""
        current = self.get_version(config.name, config.version)
        if revision_id and revision_id != current.revision_id:
            raise errors.PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. Call the "
                "GetFunction/GetAlias API to retrieve the latest Revision Id")
        if touch:
            config.last_modified = now_timestamp()
            config.revision_id = str(uuid.uuid4())
        assert self._kv is not None
        key = bus.version_key(config.name, config.version)
        revision = await self._kv.update(key, config.SerializeToString(), last=self._revisions[key])
        old_sha = current.code_sha256
        if config.version == LATEST:
            self._functions[config.name] = config
        else:
            self._versions[config.name][config.version] = config
        self._revisions[key] = revision
        if old_sha != config.code_sha256:
            await self._drop_code_if_unused(old_sha)
        return config

    async def add_version(self, config: FunctionConfig) -> FunctionConfig:
        """Commit a newly published version (its number was taken from $LATEST's counter first)."""
        assert self._kv is not None
        key = bus.version_key(config.name, config.version)
        self._revisions[key] = await self._kv.put(key, config.SerializeToString())
        self._versions.setdefault(config.name, {})[config.version] = config
        return config

    async def delete_version(self, name: str, version: str) -> FunctionConfig:
        config = self.get_version(name, version)
        assert self._kv is not None
        key = bus.version_key(name, version)
        await self._kv.purge(key)
        del self._versions[name][version]
        self._revisions.pop(key, None)
        await self._drop_code_if_unused(config.code_sha256)
        return config

    async def delete(self, name: str) -> builtins.list[FunctionConfig]:
        """Delete a function with its versions and aliases; returns every version it had."""
        gone = self.versions(name)
        assert self._kv is not None and self._alias_kv is not None
        for alias in list(self._aliases.get(name, {})):
            await self._alias_kv.purge(bus.alias_key(name, alias))
        for config in reversed(gone):  # $LATEST last: a delete cut short leaves the function visible
            await self._kv.purge(bus.version_key(name, config.version))
            self._revisions.pop(bus.version_key(name, config.version), None)
        del self._functions[name]
        self._versions.pop(name, None)
        self._aliases.pop(name, None)
        for sha in {c.code_sha256 for c in gone}:
            await self._drop_code_if_unused(sha)
        return gone

    # -- aliases ---------------------------------------------------------------------------------

    def aliases(self, name: str) -> builtins.list[Alias]:
        self.get(name)
        found = self._aliases.get(name, {})
        return [found[a] for a in sorted(found)]

    def get_alias(self, name: str, alias: str) -> Alias:
        self.get(name)
        found = self._aliases.get(name, {}).get(alias)
        if found is None:
            raise errors.ResourceNotFound(f"Alias not found: {self._arns.function(name, alias)}")
        return found

    def has_alias(self, name: str, alias: str) -> bool:
        return alias in self._aliases.get(name, {})

    async def caught_up(self) -> bool:
        """The writer's copy is always current (FunctionLookup)."""
        return True

    async def put_alias(self, alias: Alias) -> Alias:
        """Create or replace an alias (one KV entry: a reader sees the old or the new one whole)."""
        alias.revision_id = str(uuid.uuid4())
        assert self._alias_kv is not None
        await self._alias_kv.put(bus.alias_key(alias.function, alias.name), alias.SerializeToString())
        self._aliases.setdefault(alias.function, {})[alias.name] = alias
        return alias

    async def delete_alias(self, name: str, alias: str) -> None:
        self.get_alias(name, alias)
        assert self._alias_kv is not None
        await self._alias_kv.purge(bus.alias_key(name, alias))
        del self._aliases[name][alias]

    async def _drop_code_if_unused(self, sha: str) -> None:
        if not sha or any(c.code_sha256 == sha for c in self.all()):
            return
        assert self._code is not None
        try:
            await self._code.delete(sha)
        except NotFoundError:
            pass


async def _entries(js: JetStreamContext, kv: KeyValue) -> list[tuple[str, bytes, int]]:
    """Every (key, value, revision) of a bucket."""
    return [(e.key, e.value or b"", e.revision or 0) for e in await kvwatch.entries(js, kv)]
