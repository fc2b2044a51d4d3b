"""What the controller asks of an orchestrator: hold N environments of this function version."""

from __future__ import annotations

from typing import Protocol

from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invoker_pb2 import FunctionStats


class Orchestrator(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def apply(self, config: FunctionConfig, desired: int) -> None:
        """Hold ``desired`` environments running exactly ``config`` (0 frees everything)."""

    async def forget(self, function: str, version: str) -> None:
        """The version is deleted: nothing it left behind (environments, code on disk) is kept."""

    def stats(self, function: str, version: str) -> FunctionStats:
        """What is running now, as last reported."""
        ...

    async def current(self, function: str, version: str) -> FunctionStats:
        """What is running now, asked of the invokers where they can be asked (a report may lag a change by
        a moment): what a status view shows."""
        ...
