"""``python -m controller``: the registry, the autoscaler and an orchestrator behind a gRPC server.

Prints ``kambda-controller ready grpc=HOST:PORT`` on stdout once it serves; ``kambda up`` reads
that line. SIGTERM or SIGINT stop it: stop accepting, drain calls, stop the invokers, close NATS.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Mapping

from grpc import aio
from prometheus_client import CollectorRegistry

from controller.async_events import AsyncMetrics, AsyncPoller
from controller.decider import ScaleResult
from controller.event_router import EventRouter
from controller.event_sources import EventSources
from controller.orchestrators.local import LocalOrchestrator, default_environ
from controller.registry import Registry
from controller.scaler import Autoscaler, Key, interval_ticks
from controller.service import ControllerService
from controller.settings import ControllerSettings
from kambda import bus, rpc, runner
from kambda.dispatch import Dispatcher
from kambda.names import Arns
from kambda.v1.controller_pb2_grpc import add_ControllerServicer_to_server
from kambda.v1.invoker_pb2 import ScaleEvent

log = logging.getLogger("controller")


async def serve(settings: ControllerSettings, environ: Mapping[str, str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    nc = await bus.connect(settings.nats_url, "kambda-controller")
    js = nc.jetstream()
    await bus.ensure_platform(js)
    arns = Arns(settings.region, settings.account)
    registry = Registry(js, arns)
    await registry.load()
    # The sync queue lives in memory: after a NATS restart its consumers must be made again.
    for config in registry.all():
        await bus.ensure_consumer(js, config.name, config.version, config.timeout)
    orchestrator = LocalOrchestrator(nc, settings.nats_url, settings.state_dir, environ)

    delivered: dict[Key, int] = {}
    queued: dict[Key, int] = {}
    reported: dict[Key, tuple[int, int, bool, int]] = {}

    async def observe(key: Key) -> int:
        """Running + waiting requests; at least 1 if any request was delivered since the last look
        (sequential traffic can fall between two samples and must not read as idle)."""
        info = await js.consumer_info(bus.SYNC_STREAM, bus.consumer_name(*key))
        seq = info.delivered.consumer_seq if info.delivered else 0
        moved = seq != delivered.get(key, seq)
        delivered[key] = seq or 0
        queued[key] = info.num_pending or 0
        return max((info.num_pending or 0) + (info.num_ack_pending or 0), 1 if moved else 0)

    async def apply(key: Key, desired: int) -> None:
        if not registry.has_version(*key):
            return
        await orchestrator.apply(registry.get_version(*key), desired)

    async def report(key: Key, result: ScaleResult) -> None:
        """Tell the gateways (scale events) whenever a version's scale, queue or panic changes."""
        stats = orchestrator.stats(*key)
        now = (result.desired, queued.get(key, 0), result.panic, stats.environments)
        if reported.get(key) == now:
            return
        reported[key] = now
        event = ScaleEvent(function=key[0], version=key[1], desired=result.desired,
                           environments=stats.environments, queued=now[1], panic=result.panic)
        await nc.publish(bus.scale_subject(key[0]), event.SerializeToString())

    def cap_of(key: Key) -> int:
        if key[0] not in registry:
            return 0
        config = registry.get(key[0])
        cap = config.max_environments or settings.max_environments
        if config.HasField("reserved_concurrency"):
            cap = min(cap, config.reserved_concurrency) if config.reserved_concurrency else 0
        return cap

    def floor_of(key: Key) -> int:
        return registry.get_version(*key).provisioned_concurrency if registry.has_version(*key) else 0

    autoscaler = Autoscaler(settings.scaler, observe, apply, cap_of, floor_of, report,
                            total_limit=settings.concurrency_limit)
    metrics_registry = CollectorRegistry()
    dispatcher = Dispatcher(nc, lambda f, v, n: autoscaler.activate((f, v), time.monotonic(), n))
    poller = AsyncPoller(nc, js, registry, dispatcher, arns, AsyncMetrics(metrics_registry),
                         retry_base_s=settings.async_retry_base, queue_timeout_s=settings.queue_timeout)
    event_sources = EventSources(nc, js, registry, dispatcher, poller, arns, metrics_registry,
                                 retry_base_s=settings.async_retry_base, queue_timeout_s=settings.queue_timeout)
    router = EventRouter(nc, js, registry, dispatcher, poller, arns)
    server = aio.server(options=rpc.CHANNEL_OPTIONS)
    add_ControllerServicer_to_server(
        ControllerService(nc, js, registry, autoscaler, orchestrator, arns, settings.max_environments,
                          time.monotonic, metrics_registry, event_sources),
        server,
    )
    port = server.add_insecure_port(settings.listen)
    host = settings.listen.rsplit(":", 1)[0]
    await server.start()
    await orchestrator.start()
    await dispatcher.start()
    await poller.start()
    await event_sources.start()
    await router.start()
    for config in registry.all():  # provisioned concurrency is warm from the start
        if config.provisioned_concurrency:
            await autoscaler.reapply((config.name, config.version), time.monotonic())
    scaling = asyncio.create_task(autoscaler.run(interval_ticks(settings.tick, time.monotonic)))
    print(f"kambda-controller ready grpc={host}:{port}", flush=True)

    await stop.wait()
    log.info("controller stopping")
    await server.stop(grace=2.0)
    await router.stop()
    await event_sources.stop()
    await poller.stop()
    await dispatcher.stop()
    scaling.cancel()
    await orchestrator.stop()
    await nc.drain()


def main() -> None:
    runner.service_main("controller", ControllerSettings.from_env, lambda settings: serve(settings, default_environ()))


if __name__ == "__main__":
    main()
