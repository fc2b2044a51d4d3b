"""The autoscaler's seams (controller/collector.py) against a real nats-server and a real registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from nats.aio.msg import Msg

from controller.collector import Collector, Effects
from controller.decider import ScaleResult
from controller.registry import Registry
from kambda import bus
from kambda.bus.natsserver import NatsServer
from kambda.names import LATEST, Arns
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invoker_pb2 import FunctionStats, ScaleEvent
from tests.conftest import until


class Recorder:
    """An orchestrator that records what it was asked and reports fixed environments."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, str, int]] = []
        self.forgotten: list[tuple[str, str]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def apply(self, config: FunctionConfig, desired: int) -> None:
        self.applied.append((config.name, config.version, desired))

    async def forget(self, function: str, version: str) -> None:
        self.forgotten.append((function, version))

    def stats(self, function: str, version: str) -> FunctionStats:
        return FunctionStats(function=function, version=version, environments=2)


def test_collector_and_effects(tmp_path: Path) -> None:
    asyncio.run(_collector_and_effects(tmp_path))


async def _collector_and_effects(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    nc = await nats.connect(await server.start())
    try:
        js = nc.jetstream()
        await bus.ensure_platform(js)
        registry = Registry(js, Arns("us-east-1", "000000000000"))
        await registry.load()
        await registry.create(FunctionConfig(name="f", version=LATEST, runtime="python3.12", handler="app.h",
                                             timeout=3, memory_size=128, reserved_concurrency=4))
        await bus.ensure_consumer(js, "f", LATEST, 3)
        key = ("f", LATEST)
        collector = Collector(js)
        assert await collector.observe(key) == 0
        for n in range(3):
            await js.publish(bus.sync_subject("f", LATEST), str(n).encode())
        assert await collector.observe(key) == 3
        assert collector.queued(key) == 3

        orchestrator = Recorder()
        effects = Effects(nc, registry, orchestrator, collector, max_environments=10)
        assert effects.cap_of(key) == 10 and effects.cap_of(("gone", LATEST)) == 0
        assert effects.reserved_of("f") == 4 and effects.reserved_of("gone") is None
        assert effects.floor_of(key) == 0 and effects.running_of(key) == 2
        await effects.apply(key, 3)
        await effects.apply(("gone", "1"), 1)
        assert orchestrator.applied == [("f", LATEST, 3)] and orchestrator.forgotten == [("gone", "1")]

        events: list[ScaleEvent] = []

        async def on_event(msg: Msg) -> None:
            events.append(ScaleEvent.FromString(msg.data))

        sub = await nc.subscribe(bus.scale_subject("f"), cb=on_event)
        result = ScaleResult(desired=3, panic=False, stable_average=3.0, panic_average=3.0)
        await effects.report(key, result)
        await effects.report(key, result)  # nothing changed: no second event
        await effects.report(key, ScaleResult(desired=3, panic=True, stable_average=3.0, panic_average=6.0))
        await nc.flush()
        await until(lambda: len(events) >= 2, what="two scale events")
        await sub.unsubscribe()
        assert [(e.desired, e.queued, e.panic, e.environments) for e in events] == [(3, 3, False, 2), (3, 3, True, 2)]
    finally:
        await nc.close()
        await server.stop()
