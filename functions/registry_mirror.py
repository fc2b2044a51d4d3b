"""A read-only mirror of the function registry, for processes that run functions' work but never
change a function (the worker: async invokes, event routing, event source mappings).

It follows the ``kambda_functions`` and ``kambda_aliases`` buckets (kambda/bus/kvwatch.py) and
answers :class:`~functions.lookup.FunctionLookup`'s synchronous lookups from memory. A write made
a moment ago by the controller may not be here yet: a caller that does not find what it was sent
(an event for a function created just before it) awaits :meth:`caught_up` before it concludes
that it does not exist.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from kambda import bus
from kambda.aws import errors
from kambda.bus.kvwatch import KvWatch
from kambda.names import LATEST, Arns
from kambda.v1.function_pb2 import Alias, FunctionConfig


class RegistryMirror:
    def __init__(self, js: JetStreamContext, arns: Arns) -> None:
        self._arns = arns
        self._functions: dict[str, FunctionConfig] = {}  # $LATEST by name
        self._versions: dict[tuple[str, str], FunctionConfig] = {}
        self._aliases: dict[tuple[str, str], Alias] = {}
        self._watches = (KvWatch(js, bus.FUNCTIONS_BUCKET, self._on_config, "registry mirror"),
                         KvWatch(js, bus.ALIASES_BUCKET, self._on_alias, "alias mirror"))

    async def start(self) -> None:
        for watch in self._watches:
            await watch.start()

    async def stop(self) -> None:
        for watch in self._watches:
            await watch.stop()

    async def caught_up(self) -> bool:
        """Wait until both buckets' current contents are applied here."""
        return all([await watch.caught_up() for watch in self._watches])

    def _on_config(self, key: str, value: bytes | None) -> None:
        name, version = bus.split_key(key)
        if value is None:
            if version == LATEST:
                self._functions.pop(name, None)
            else:
                self._versions.pop((name, version), None)
            return
        config = FunctionConfig.FromString(value)
        if version == LATEST:
            self._functions[name] = config
        else:
            self._versions[(name, version)] = config

    def _on_alias(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._aliases.pop(bus.split_key(key), None)
        else:
            alias = Alias.FromString(value)
            self._aliases[(alias.function, alias.name)] = alias

    # -- FunctionLookup ------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def get(self, name: str) -> FunctionConfig:
        config = self._functions.get(name)
        if config is None:
            raise errors.function_not_found(self._arns.function(name))
        return config

    def get_version(self, name: str, version: str) -> FunctionConfig:
        if version == LATEST:
            return self.get(name)
        config = self._versions.get((name, version)) if name in self._functions else None
        if config is None:
            raise errors.function_not_found(self._arns.function(name, version))
        return config

    def has_version(self, name: str, version: str) -> bool:
        return name in self._functions and (version == LATEST or (name, version) in self._versions)

    def get_alias(self, name: str, alias: str) -> Alias:
        found = self._aliases.get((name, alias)) if name in self._functions else None
        if found is None:
            raise errors.ResourceNotFound(f"Alias not found: {self._arns.function(name, alias)}")
        return found

    def has_alias(self, name: str, alias: str) -> bool:
        return name in self._functions and (name, alias) in self._aliases
