"""The async poller's replicas share one consumer and one count of each event's attempts and
throttles (real nats-server and JetStream; the sync path behind each poller is a stand-in that
throttles or fails)."""

from __future__ import annotations

import asyncio
import time

from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NoKeysError
from prometheus_client import CollectorRegistry

from events.async_invoke import ACK_WAIT_S, MAX_ACK_PENDING, AsyncMetrics, AsyncPoller
from events.destinations import Destinations
from functions.registry_mirror import RegistryMirror
from kambda import bus
from kambda.aws import errors
from kambda.bus.natsserver import NatsServer
from kambda.names import LATEST, Arns
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invocation_pb2 import Invocation, InvocationResult
from tests.conftest import until

ARNS = Arns("us-east-1", "000000000000")


class SyncPath:
    """What a replica's dispatcher would answer: every run throttled, or every run a function error."""

    def __init__(self, throttles: bool) -> None:
        self.throttles = throttles
        self.calls = 0

    async def invoke(self, inv: Invocation, wait_s: float) -> InvocationResult:
        self.calls += 1
        if self.throttles:
            raise errors.TooManyRequests("Rate Exceeded.", Reason="ReservedFunctionConcurrentInvocationLimitExceeded")
        return InvocationResult(request_id=inv.request_id, function_error="Unhandled", payload=b'{"errorType": "E"}')

    async def store(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        raise AssertionError("nothing is sent to a destination here")


async def _throttles_are_shared(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = NatsServer(tmp_path)
    url = await server.start()
    try:
        nc = await bus.connect(url, "test")
        js = nc.jetstream()
        await bus.ensure_platform(js)
        functions = await js.key_value(bus.FUNCTIONS_BUCKET)
        await functions.put("f", FunctionConfig(name="f", version=LATEST).SerializeToString())
        registry = RegistryMirror(js, ARNS)
        await registry.start()

        def poller(path: SyncPath) -> AsyncPoller:
            return AsyncPoller(nc, js, registry, path, Destinations(nc, path, ARNS), ARNS,  # type: ignore[arg-type]
                               AsyncMetrics(CollectorRegistry()), retry_base_s=0.01, queue_timeout_s=1.0,
                               concurrency=1)

        throttled, failing = SyncPath(throttles=True), SyncPath(throttles=False)
        first = poller(throttled)
        await first.start()
        event = Invocation(request_id="r1", function="f", version=LATEST, payload=b"{}", invocation_type="Event",
                           enqueued_ms=int(time.time() * 1000), maximum_retry_attempts=1)
        await js.publish(bus.async_subject("f", LATEST), event.SerializeToString())
        await until(lambda: throttled.calls >= 1, what="the first replica to be throttled")
        second = poller(failing)  # a replica whose runs go through and fail
        await second.start()
        # One attempt and one retry, however many deliveries the throttled replica had in between:
        # its throttles are no attempts, and the other replica knows of them.
        await until(lambda: failing.calls >= 2, timeout=60, what="the attempts")

        async def settled() -> bool:
            info = await js.consumer_info(bus.ASYNC_STREAM, bus.ASYNC_POLLER)
            return not info.num_pending and not info.num_ack_pending

        deadline = time.monotonic() + 60
        while not await settled():
            assert time.monotonic() < deadline, "the event was never given up on"
            await asyncio.sleep(0.05)
        assert failing.calls == 2 and throttled.calls >= 1
        tallies = await js.key_value(bus.ASYNC_ATTEMPTS_BUCKET)
        try:
            left = await tallies.keys()
        except NoKeysError:
            left = []
        assert left == []  # the count goes with the event
        for part in (first, second):
            await part.stop()
        await registry.stop()
        await nc.close()
    finally:
        await server.stop()


def test_a_throttle_seen_by_one_replica_is_no_attempt_for_another(tmp_path) -> None:
    asyncio.run(_throttles_are_shared(tmp_path))


async def _returned_deliveries(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = NatsServer(tmp_path)
    url = await server.start()
    try:
        nc = await bus.connect(url, "test")
        js = nc.jetstream()
        await bus.ensure_platform(js)
        functions = await js.key_value(bus.FUNCTIONS_BUCKET)
        await functions.put("f", FunctionConfig(name="f", version=LATEST).SerializeToString())
        registry = RegistryMirror(js, ARNS)
        await registry.start()
        await js.add_consumer(bus.ASYNC_STREAM, ConsumerConfig(  # the poller's own consumer, as it makes it
            durable_name=bus.ASYNC_POLLER, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
            max_ack_pending=MAX_ACK_PENDING, max_waiting=4096))
        event = Invocation(request_id="r1", function="f", version=LATEST, payload=b"{}", invocation_type="Event",
                           enqueued_ms=int(time.time() * 1000), maximum_retry_attempts=1)
        await js.publish(bus.async_subject("f", LATEST), event.SerializeToString())
        # Two deliveries that reach a worker as it stops: given straight back, never run.
        psub = await js.pull_subscribe_bind(bus.ASYNC_POLLER, bus.ASYNC_STREAM)
        for _ in range(2):
            (msg,) = await psub.fetch(1, timeout=10)
            await msg.nak()
        await psub.unsubscribe()
        failing = SyncPath(throttles=False)
        poller = AsyncPoller(nc, js, registry, failing, Destinations(nc, failing, ARNS), ARNS,  # type: ignore[arg-type]
                             AsyncMetrics(CollectorRegistry()), retry_base_s=0.01, queue_timeout_s=1.0, concurrency=1)
        await poller.start()
        deadline = time.monotonic() + 60
        while True:  # until the event is given up on
            info = await js.consumer_info(bus.ASYNC_STREAM, bus.ASYNC_POLLER)
            if failing.calls and not info.num_pending and not info.num_ack_pending:
                break
            assert time.monotonic() < deadline, "the event was never given up on"
            await asyncio.sleep(0.05)
        assert failing.calls == 2  # the first attempt and its one retry: the returned deliveries were none
        await poller.stop()
        await registry.stop()
        await nc.close()
    finally:
        await server.stop()


def test_deliveries_given_back_unstarted_are_no_attempts(tmp_path) -> None:
    asyncio.run(_returned_deliveries(tmp_path))
