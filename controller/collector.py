"""What the autoscaler observes, and what its decisions do: the seams of controller/scaler.py's
Autoscaler, bound to JetStream, the registry and the orchestrator.

Knative's autoscaler has the same parts: a collector answering "how much demand for this key now",
a decider (controller/decider.py, pure), and a runner (controller/scaler.py) that ticks. Kept out of
``controller/__main__.py`` so that the wiring is a list of objects, and each part is testable alone.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from controller.decider import ScaleResult
from controller.orchestrators.base import Orchestrator
from controller.registry import Registry
from controller.scaler import Key
from kambda import bus
from kambda.v1.invoker_pb2 import ScaleEvent


class Collector:
    """Demand of a version: its running plus waiting requests, read from its sync consumer."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._delivered: dict[Key, int] = {}
        self._queued: dict[Key, int] = {}

    async def observe(self, key: Key) -> int:
        """Running + waiting requests; at least 1 if any request was delivered since the last look
        (sequential traffic can fall between two samples and must not read as idle)."""
        info = await self._js.consumer_info(bus.SYNC_STREAM, bus.consumer_name(*key))
        seq = info.delivered.consumer_seq if info.delivered else 0
        moved = seq != self._delivered.get(key, seq)
        self._delivered[key] = seq or 0
        self._queued[key] = info.num_pending or 0
        return max((info.num_pending or 0) + (info.num_ack_pending or 0), 1 if moved else 0)

    def queued(self, key: Key) -> int:
        """Waiting requests at the last observation."""
        return self._queued.get(key, 0)


class Effects:
    """The bounds the autoscaler decides within (from the registry), and what a decision does (the
    orchestrator applies it; the gateways hear of every change as a scale event)."""

    def __init__(self, nc: NATS, registry: Registry, orchestrator: Orchestrator, collector: Collector,
                 max_environments: int) -> None:
        self._nc = nc
        self._registry = registry
        self._orchestrator = orchestrator
        self._collector = collector
        self._max_environments = max_environments
        self._reported: dict[Key, tuple[int, int, bool, int]] = {}

    async def apply(self, key: Key, desired: int) -> None:
        if not self._registry.has_version(*key):
            await self._orchestrator.forget(*key)  # the version is deleted: so is what it left behind
            return
        await self._orchestrator.apply(self._registry.get_version(*key), desired)

    async def report(self, key: Key, result: ScaleResult) -> None:
        """Tell the gateways (scale events) whenever a version's scale, queue or panic changes."""
        stats = self._orchestrator.stats(*key)
        now = (result.desired, self._collector.queued(key), result.panic, stats.environments)
        if self._reported.get(key) == now:
            return
        self._reported[key] = now
        event = ScaleEvent(function=key[0], version=key[1], desired=result.desired,
                           environments=stats.environments, queued=now[1], panic=result.panic)
        await self._nc.publish(bus.scale_subject(key[0]), event.SerializeToString())

    def cap_of(self, key: Key) -> int:
        """One version's cap (reserved concurrency bounds all versions together: reserved_of)."""
        if key[0] not in self._registry:
            return 0
        return self._registry.get(key[0]).max_environments or self._max_environments

    def reserved_of(self, function: str) -> int | None:
        """The function's reserved concurrency, which all its versions share."""
        if function not in self._registry:
            return None
        config = self._registry.get(function)
        return config.reserved_concurrency if config.HasField("reserved_concurrency") else None

    def floor_of(self, key: Key) -> int:
        """Provisioned concurrency: environments kept warm whatever the demand."""
        return self._registry.get_version(*key).provisioned_concurrency if self._registry.has_version(*key) else 0

    def running_of(self, key: Key) -> int:
        return self._orchestrator.stats(*key).environments
