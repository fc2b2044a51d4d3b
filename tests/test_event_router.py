"""Schedules fire exactly once per tick even when two controllers race (real nats-server, the
leader's schedule ticker in-process, an injected clock: no waiting for real ticks)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import nats

from controller.registry import Registry
from events import store as eventbus
from events.destinations import Destinations
from events.rules import Rules
from events.targets import Targets
from events.ticks import ScheduleTicker
from kambda import bus
from kambda.bus.dispatch import Dispatcher
from kambda.bus.natsserver import NatsServer
from kambda.names import LATEST, Arns
from kambda.v1.function_pb2 import FunctionConfig

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ARNS = Arns("us-east-1", "000000000000")


async def _activate(function: str, version: str, n: int) -> int:
    return 1


async def _ticker(url: str, now: list[float]) -> tuple[ScheduleTicker, Rules, object]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    registry = Registry(js, ARNS)
    await registry.load()
    dispatcher = Dispatcher(nc, _activate)
    await dispatcher.start()
    rules = Rules(js)
    await rules.start()
    targets = Targets(registry, dispatcher, Destinations(nc, dispatcher, ARNS), ARNS, clock=lambda: now[0])
    return ScheduleTicker(js, rules, targets, ARNS, clock=lambda: now[0]), rules, nc


async def _race(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = NatsServer(tmp_path)
    url = await server.start()
    try:
        setup = await nats.connect(url)
        js = setup.jetstream()
        await bus.ensure_platform(js)
        functions = await js.key_value(bus.FUNCTIONS_BUCKET)
        await functions.create("tick", FunctionConfig(name="tick", version=LATEST).SerializeToString())
        await eventbus.Store(js).create(eventbus.rule_key("default", "every-minute"), {
            "Name": "every-minute", "EventBusName": "default", "ScheduleExpression": "rate(1 minute)",
            "State": "ENABLED", "ScheduleAnchor": T0.timestamp(), "CreatedAt": T0.timestamp(),
            "Targets": [{"Id": "a", "Arn": ARNS.function("tick")}, {"Id": "b", "Arn": ARNS.function("tick")}]})
        now = [(T0 + timedelta(seconds=30)).timestamp()]
        (one, rules1, nc1), (two, rules2, nc2) = await _ticker(url, now), await _ticker(url, now)

        async def stored() -> int:
            info = await js.stream_info(bus.ASYNC_STREAM)
            return info.state.messages

        async def race_at(t: datetime) -> None:
            now[0] = t.timestamp()
            for _ in range(3):  # both controllers look several times
                await asyncio.gather(one.fire_due(t), two.fire_due(t))

        await race_at(T0 + timedelta(seconds=30))
        assert await stored() == 0  # the first tick is a minute after the anchor
        await race_at(T0 + timedelta(seconds=61))
        assert await stored() == 2  # one tick, two targets, each stored once
        fired, _ = await eventbus.Store(js).get(eventbus.fired_key("default", "every-minute"))
        assert fired == {"Tick": "2024-01-01T00:01:00Z"}
        await race_at(T0 + timedelta(seconds=150))
        assert await stored() == 4
        await race_at(T0 + timedelta(seconds=600))  # ticks missed while down: only the latest fires
        assert await stored() == 6
        for ticker, rules, nc in ((one, rules1, nc1), (two, rules2, nc2)):
            await ticker.stop()
            await rules.stop()
            await nc.close()  # type: ignore[attr-defined]
        await setup.close()
    finally:
        await server.stop()


def test_two_controllers_fire_each_tick_once(tmp_path) -> None:
    asyncio.run(_race(tmp_path))
