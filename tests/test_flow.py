"""Flow control: the byte budget (pure), and a puller against a real nats-server pulling messages
of every size through its small and large pulls, leaving no bytes reserved."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from kambda import bus
from kambda.bus import flow
from kambda.bus.natsserver import NatsServer
from tests.conftest import until


def test_the_budget_never_goes_over_its_limit_and_wakes_a_waiter_when_bytes_come_back() -> None:
    budget = flow.ByteBudget(limit=10)
    assert budget.try_take(6) and not budget.try_take(6) and budget.used == 6
    woken: list[str] = []
    budget.wait("puller", lambda: woken.append("puller"))
    budget.wait("puller", lambda: woken.append("puller"))  # one registration per key
    budget.give(6)
    assert woken == ["puller"] and budget.used == 0
    budget.give(6)
    assert woken == ["puller"]  # a wake-up is called once
    assert budget.try_take(25) and budget.used == 10  # a message larger than the budget takes all of it


class Connection:
    """Anything a budget can be kept for (a NATS client, in the services)."""


def test_one_budget_per_connection() -> None:
    first, second = Connection(), Connection()
    assert flow.budget_of(first) is flow.budget_of(first)
    assert flow.budget_of(first) is not flow.budget_of(second)


async def _pull_every_size(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    url = await server.start()
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="T", subjects=["t.>"], retention=RetentionPolicy.WORK_QUEUE,
                                         storage=StorageType.MEMORY, max_msg_size=bus.MAX_PAYLOAD))
        await js.add_consumer("T", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT, ack_wait=30))
        sizes = [10, flow.SMALL_MESSAGE_BYTES + 1, 100, 6 * 1024 * 1024, 5, 3 * 1024 * 1024, 7]
        got: list[int] = []
        puller: bus.Puller

        async def on_message(msg) -> None:  # type: ignore[no-untyped-def]
            got.append(len(msg.data))
            await puller.done(msg, free_again=True)

        puller = bus.Puller(nc, "T", "c", on_message)
        await puller.start()
        await puller.add_free(4)
        for size in sizes:
            await js.publish("t.x", b"x" * size)
        await until(lambda: len(got) == len(sizes), timeout=30, what="every message")
        assert sorted(got) == sorted(sizes)
        info = await js.consumer_info("T", "c")
        assert info.num_pending == 0 and info.num_ack_pending == 0
        await until(lambda: flow.budget_of(nc).used == 0, timeout=5, what="every reservation given back")
        await puller.stop()
    finally:
        await nc.close()
        await server.stop()


def test_a_puller_pulls_small_and_large_messages_and_gives_every_reserved_byte_back(tmp_path: Path) -> None:
    asyncio.run(_pull_every_size(tmp_path))
