"""The gateway's dispatcher asks the controller for environments whenever requests wait on fewer
than it believes run (real nats-server; the controller's Activate is a function of the test)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import nats

from kambda import bus
from kambda.bus.dispatch import Dispatcher
from kambda.bus.natsserver import NatsServer
from kambda.names import LATEST, new_request_id
from kambda.v1.invocation_pb2 import Invocation
from kambda.v1.invoker_pb2 import ScaleEvent


async def _scale_event_during_activation(tmp_path: Path) -> None:
    server = NatsServer(tmp_path)
    url = await server.start()
    nc = await nats.connect(url)
    try:
        await bus.ensure_platform(nc.jetstream())
        seen = asyncio.Event()
        asked: list[int] = []
        answered = asyncio.Event()

        async def activate(function: str, version: str, in_flight: int) -> int:
            asked.append(in_flight)
            if len(asked) == 1:
                # The controller granted one environment, then a tick scaled the function to zero
                # again; its scale event reaches the gateway before the Activate answer does.
                event = ScaleEvent(function="f", version=LATEST, desired=0)
                await nc.publish(bus.scale_subject("f"), event.SerializeToString())
                await asyncio.wait_for(seen.wait(), 10)
            else:
                answered.set()
            return 1

        dispatcher = Dispatcher(nc, activate, on_scale=lambda event: seen.set())
        await dispatcher.start()
        inv = Invocation(request_id=new_request_id(), function="f", version=LATEST, payload=b"{}",
                         invocation_type="RequestResponse")
        waiting = asyncio.create_task(dispatcher.invoke(inv, wait_s=30))
        # The stale answer (one environment) must not hide that none runs: the dispatcher asks again.
        await asyncio.wait_for(answered.wait(), 10)
        assert asked == [1, 1]
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await dispatcher.stop()
    finally:
        await nc.close()
        await server.stop()


def test_a_scale_event_newer_than_an_activate_answer_stands(tmp_path: Path) -> None:
    asyncio.run(_scale_event_during_activation(tmp_path))
