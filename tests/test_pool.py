"""An invoker's function pool keeps pulling its queue through every scale change (real nats-server,
real Python environments, the pool in-process so a scale change can land between two steps)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats

from invoker.pool import FunctionPool
from invoker.runtime_api import RuntimeApi
from kambda import bus
from kambda.bus.dispatch import Dispatcher
from kambda.bus.natsserver import NatsServer
from kambda.names import LATEST, new_request_id
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invocation_pb2 import Invocation
from tests.conftest import until

HANDLER = "def handler(event, context):\n    return {'echo': event}\n"


async def _no_activation(function: str, version: str, n: int) -> int:
    return 1


async def _scale_down_while_a_message_is_handed_over(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    url = await server.start()
    api = RuntimeApi()
    await api.start()
    nc = await nats.connect(url)
    pool: FunctionPool | None = None
    try:
        await bus.ensure_platform(nc.jetstream())
        await bus.ensure_consumer(nc.jetstream(), "echo", LATEST, 3)
        code = tmp_path / "code"
        code.mkdir()
        (code / "app.py").write_text(HANDLER)
        (tmp_path / "work").mkdir()

        async def code_path(sha: str) -> Path:
            return code

        config = FunctionConfig(name="echo", version=LATEST, runtime="python3.12", handler="app.handler",
                                timeout=3, memory_size=128)
        pool = FunctionPool(nc, config, api, code_path, tmp_path / "work", "us-east-1",
                            "arn:aws:lambda:us-east-1:000000000000:function:echo", lambda: None, channel=False)
        await pool.start()
        dispatcher = Dispatcher(nc, _no_activation)
        await dispatcher.start()

        async def invoke(n: int) -> bytes:
            inv = Invocation(request_id=new_request_id(), function="echo", version=LATEST,
                             payload=str(n).encode(), invocation_type="RequestResponse")
            result = await dispatcher.invoke(inv, wait_s=20)
            return result.payload

        await pool.apply(config, 2)
        await until(lambda: pool is not None and pool.stats().environments == 2, what="two environments")
        puller = pool._puller  # noqa: SLF001 - the hook below stands where the bus hands a message over
        handed = puller._on_message  # noqa: SLF001

        async def hand_then_scale(msg):  # type: ignore[no-untyped-def]
            # The controller's scale-to-zero arrives after the message reached a slot and before the
            # slot's task ran; at once a new request scales the function up again.
            puller._on_message = handed  # noqa: SLF001
            await handed(msg)
            assert pool is not None
            await pool.apply(config, 0)
            await pool.apply(config, 1)

        puller._on_message = hand_then_scale  # noqa: SLF001
        assert await invoke(1) == b'{"echo": 1}'
        # The free count still matches the slots that wait, so the queue is still pulled.
        assert puller.free == sum(slot.free for slot in pool._slots)  # noqa: SLF001
        for n in range(2, 5):
            assert await invoke(n) == f'{{"echo": {n}}}'.encode()
        await dispatcher.stop()
    finally:
        if pool is not None:
            await pool.stop()
        await nc.close()
        await api.stop()
        await server.stop()


def test_a_scale_down_racing_a_handed_over_message_keeps_the_queue_pulled(tmp_path: Path) -> None:
    asyncio.run(_scale_down_while_a_message_is_handed_over(tmp_path))
