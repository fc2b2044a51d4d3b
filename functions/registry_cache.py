"""The gateway's read-only copy of the function registry, kept current by KV watches.

The invoke path reads configurations from here, never from the bus; a key that is not here yet
(a function, version or alias created a moment ago through another gateway) is looked up once in
its KV bucket.

:meth:`RegistryCache.resolve` is the one place a (function, qualifier) becomes the configuration
that runs: $LATEST, a published version, or an alias, whose weighted choice between its two
versions is made here, per call. An alias is one KV entry, replaced whole, so a call sees either
the old alias or the new one; calls already sent to the old version finish there.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import NamedTuple

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from kambda import bus
from kambda.aws import errors
from kambda.bus.kvwatch import KvWatch
from kambda.names import LATEST, Arns, is_alias_name, is_published_version, pick_version
from kambda.v1.function_pb2 import Alias, FunctionConfig

log = logging.getLogger(__name__)


class Resolved(NamedTuple):
    """What a qualified call runs.

    ``config`` is the configuration of the version that runs (code, handler, timeout);
    ``version`` is that version (``X-Amz-Executed-Version``); ``function`` is $LATEST, which holds
    the function-wide settings (reserved concurrency)."""

    config: FunctionConfig
    version: str
    function: FunctionConfig


class RegistryCache:
    def __init__(self, js: JetStreamContext, arns: Arns, rng: Callable[[], float] = random.random) -> None:
        self._js = js
        self._arns = arns
        #: Draws the weighted choice of an alias's version: uniform in [0, 1). Tests inject their own.
        self._rng = rng
        self._kv: KeyValue | None = None
        self._alias_kv: KeyValue | None = None
        self._configs: dict[str, FunctionConfig] = {}  # $LATEST by name
        self._versions: dict[tuple[str, str], FunctionConfig] = {}
        self._aliases: dict[tuple[str, str], Alias] = {}
        self._watches = (KvWatch(js, bus.FUNCTIONS_BUCKET, self._on_config, "registry"),
                         KvWatch(js, bus.ALIASES_BUCKET, self._on_alias, "alias"))

    async def start(self) -> None:
        for watch in self._watches:
            await watch.start()
        self._kv, self._alias_kv = (watch.kv for watch in self._watches)

    async def stop(self) -> None:
        for watch in self._watches:
            await watch.stop()

    def _on_config(self, key: str, value: bytes | None) -> None:
        name, version = bus.split_key(key)
        if value is not None:
            self.put(FunctionConfig.FromString(value))
        elif version == LATEST:
            self._configs.pop(name, None)
        else:
            self._versions.pop((name, version), None)

    def _on_alias(self, key: str, value: bytes | None) -> None:
        if value is not None:
            self.put_alias(Alias.FromString(value))
        else:
            self._aliases.pop(bus.split_key(key), None)

    def put(self, config: FunctionConfig) -> None:
        if config.version and config.version != LATEST:
            self._versions[(config.name, config.version)] = config  # immutable but for provisioning
            return
        current = self._configs.get(config.name)
        if current is None or current.revision_id != config.revision_id:
            self._configs[config.name] = config

    def put_alias(self, alias: Alias) -> None:
        self._aliases[(alias.function, alias.name)] = alias

    def forget(self, name: str, qualifier: str | None = None) -> None:
        """Drop a function with its versions and aliases, or (qualifier given) one version or alias."""
        if qualifier:
            self._versions.pop((name, qualifier), None)
            self._aliases.pop((name, qualifier), None)
            return
        self._configs.pop(name, None)
        for key in [k for k in self._versions if k[0] == name]:
            del self._versions[key]
        for key in [k for k in self._aliases if k[0] == name]:
            del self._aliases[key]

    def cached(self, name: str) -> FunctionConfig | None:
        """A function's $LATEST configuration as the watch has it, without asking the bus (None: not seen)."""
        return self._configs.get(name)

    async def get(self, name: str) -> FunctionConfig | None:
        """A function's $LATEST configuration, or None."""
        config = self._configs.get(name)
        if config is not None:
            return config
        config = await self._lookup(name, LATEST)
        if config is not None:
            self._configs[name] = config
        return config

    async def get_version(self, name: str, version: str) -> FunctionConfig | None:
        if version == LATEST:
            return await self.get(name)
        config = self._versions.get((name, version))
        if config is None:
            config = await self._lookup(name, version)
            if config is not None:
                self._versions[(name, version)] = config
        return config

    async def get_alias(self, name: str, alias: str) -> Alias | None:
        found = self._aliases.get((name, alias))
        if found is not None:
            return found
        assert self._alias_kv is not None
        try:
            entry = await self._alias_kv.get(bus.alias_key(name, alias))
        except KeyNotFoundError:
            return None
        found = Alias.FromString(entry.value or b"")
        self._aliases[(name, alias)] = found
        return found

    async def resolve(self, name: str, qualifier: str | None) -> Resolved:
        """The configuration a call to ``name:qualifier`` runs, choosing an alias's version by its
        weights; ResourceNotFound (with the qualified ARN, as AWS words it) when any part is missing."""
        function = await self.get(name)
        if function is None:
            raise errors.function_not_found(self._arns.function(name, qualifier or LATEST))
        version = qualifier or LATEST
        if version != LATEST and not is_published_version(version):
            alias = await self.get_alias(name, version) if is_alias_name(version) else None
            if alias is None:
                raise errors.function_not_found(self._arns.function(name, qualifier))
            version = self.choose(alias)
        config = await self.get_version(name, version)
        if config is None:
            raise errors.function_not_found(self._arns.function(name, qualifier or version))
        return Resolved(config, version, function)

    def choose(self, alias: Alias) -> str:
        """The version one call to ``alias`` runs, drawn with this cache's random source."""
        return pick_version(alias.function_version, alias.additional_version_weights, self._rng())

    async def _lookup(self, name: str, version: str) -> FunctionConfig | None:
        assert self._kv is not None
        try:
            entry = await self._kv.get(bus.version_key(name, version))
        except KeyNotFoundError:
            return None
        return FunctionConfig.FromString(entry.value or b"")
