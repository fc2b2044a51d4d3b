"""The read view of the function registry that other engines need (event routing, async invoke, event
source mappings): synchronous lookups against a copy kept in memory.

The controller's writer (controller/registry.py) is one; a watching mirror of the KV buckets, for
processes that do not write (functions/registry_mirror.py, in the worker), is the other. Typed as
a Protocol so that neither is imported here.
"""

from __future__ import annotations

from typing import Protocol

from kambda.v1.function_pb2 import Alias, FunctionConfig


class FunctionLookup(Protocol):
    def __contains__(self, name: object) -> bool: ...

    def get(self, name: str) -> FunctionConfig:
        """$LATEST of ``name``; raises ResourceNotFound."""
        ...

    def get_version(self, name: str, version: str) -> FunctionConfig: ...

    def has_version(self, name: str, version: str) -> bool: ...

    def get_alias(self, name: str, alias: str) -> Alias: ...

    def has_alias(self, name: str, alias: str) -> bool: ...

    async def caught_up(self) -> bool:
        """Wait until this view holds every write made before the call (a mirror lags its bucket by
        a moment; the writer's own copy is always current). A reader that does not find what it was
        sent waits on this before it concludes that it does not exist."""
        ...
