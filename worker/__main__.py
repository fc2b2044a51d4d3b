"""``python -m worker``: one replica of the worker tier.

Runs the streams of work that any number of replicas can share: asynchronous invocations
(events/async_invoke.py), event routing (events/router.py), event source mappings
(events/sources.py), Step Functions executions (workflows/executor.py), ECS tasks (tasks/engine.py), and
the DynamoDB tables' outbox forwarder and TTL sweeper (tables/outbox.py, tables/ttl.py: one replica at a
time each, by a lease in the tables' database). Each pulls from a durable JetStream consumer that every replica binds
to, so N replicas split the load, and what a dead replica held unacknowledged is redelivered to the
others. The worker reads functions from a KV-watching mirror of the registry
(functions/registry_mirror.py) and asks the controller for environments through gRPC
``Activate``, as the gateway does; the leader controller keeps what must be single (scaling,
orchestration, schedule ticks).

Serves ``/metrics`` (async retries and drops, event source lag) and ``/healthz`` on
KAMBDA_WORKER_LISTEN (refused to sandboxed functions: kambda/peers.py), and prints
``kambda-worker ready metrics=http://HOST:PORT`` once it works. SIGTERM or SIGINT: stop pulling,
let running events finish (KAMBDA_WORKER_DRAIN_TIMEOUT), give back the rest, close NATS.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from events.async_invoke import AsyncMetrics, AsyncPoller
from events.destinations import Destinations
from events.router import EventRouter
from events.rules import Rules
from events.sources import EventSources
from events.targets import Targets
from functions.registry_mirror import RegistryMirror
from kambda import bus, peers, rpc, runner
from kambda.aws import roles
from kambda.bus.dispatch import Dispatcher
from kambda.names import Arns
from kambda.v1 import controller_pb2 as pb
from kambda.v1.controller_pb2_grpc import ControllerStub
from tables.api import open_database
from tables.outbox import Outbox
from tables.storage import SCHEMA as TABLES_SCHEMA
from tables.ttl import Sweeper
from tasks import records as ecs_records
from tasks.engine import Images, TaskEngine
from tasks.images import pull
from tasks.oci import ImageConfig
from worker.settings import WorkerSettings
from workflows import lambdas
from workflows.executor import Executor
from workflows.executor import Metrics as WorkflowMetrics
from workflows.records import Records
from workflows.sdk import AwsSdk
from workflows.services import Closer

log = logging.getLogger("worker")


async def serve(settings: WorkerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    nc = await bus.connect(settings.nats_url, "kambda-worker", settings.nats_creds)
    js = nc.jetstream()
    await bus.ensure_platform(js, settings.stream_replicas)
    arns = Arns(settings.region, settings.account)
    channel = rpc.channel(settings.controller, rpc.read_token(settings.controller_token_file))
    controller = ControllerStub(channel)

    async def activate(function: str, version: str, in_flight: int) -> int:
        answer = await rpc.call(controller.Activate,
                                pb.ActivateRequest(function=function, version=version, in_flight=in_flight),
                                timeout=10)
        return int(answer.desired)

    metrics = CollectorRegistry()
    registry = RegistryMirror(js, arns)
    dispatcher = Dispatcher(nc, activate)
    destinations = Destinations(nc, dispatcher, arns)
    rules = Rules(js)
    poller = AsyncPoller(nc, js, registry, dispatcher, destinations, arns, AsyncMetrics(metrics),
                         retry_base_s=settings.async_retry_base, queue_timeout_s=settings.queue_timeout,
                         concurrency=settings.concurrency)
    router = EventRouter(js, rules, Targets(registry, dispatcher, destinations, arns), arns)
    sources = EventSources(nc, js, registry, dispatcher, destinations, arns, metrics,
                           retry_base_s=settings.async_retry_base, queue_timeout_s=settings.queue_timeout)
    tables_db = open_database(settings.tables_dsn, settings.state_dir)
    await tables_db.migrate("tables-1", TABLES_SCHEMA)
    outbox = Outbox(tables_db, nc, js, settings.region, settings.account)
    sweeper = Sweeper(tables_db, settings.region, settings.ttl_interval)
    resolve = lambdas.resolver_of(registry)

    async def call_lambda(function: str, payload: bytes, timeout: int | None) -> lambdas.LambdaResult:
        return await lambdas.call_in_memory(dispatcher, resolve, function, payload, timeout)

    records = Records(js)
    sdk = AwsSdk(settings.endpoint_url, settings.region, roles.read_key(settings.role_key_file) or None)
    image_cache = Path(settings.state_dir) / "images"

    async def pull_image(reference: str) -> tuple[Path, ImageConfig]:
        return await pull(js, reference, image_cache)

    ecs = TaskEngine(nc, ecs_records.Arns(settings.region, settings.account), Images(image_cache, pull_image),
                     concurrency=settings.task_concurrency, lease_s=settings.task_lease,
                     heartbeat_s=settings.task_lease / 5)
    workflow_metrics = WorkflowMetrics(metrics)
    workflows = Executor(nc, records, lambdas.DurableLambda(nc, resolve, activate), call_lambda,
                         Closer(nc, records, arns, workflow_metrics), workflow_metrics,
                         concurrency=settings.workflow_concurrency, sdk=sdk)

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(request: web.Request) -> web.Response:
        ok = nc.is_connected
        return web.json_response({"status": "ok" if ok else "unavailable", "nats": ok}, status=200 if ok else 503)

    # Sandboxed functions share the machine's loopback: what runs here is none of their business.
    app = web.Application(middlewares=[peers.refuse_sandboxed(settings.sandbox_uids)])
    app.add_routes([web.get("/metrics", scrape), web.get("/healthz", health)])
    http = web.AppRunner(app, access_log=None, handle_signals=False)
    await http.setup()
    host, _, port = settings.listen.rpartition(":")
    site = web.TCPSite(http, host, int(port), reuse_address=True)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    for part in (registry, dispatcher, rules, poller, router, sources, outbox, sweeper, workflows, ecs):
        await part.start()  # type: ignore[attr-defined]
    print(f"kambda-worker ready metrics=http://{host}:{bound}", flush=True)
    await stop.wait()
    log.info("worker stopping")
    await ecs.stop()
    await workflows.stop()
    await sdk.close()
    await sweeper.stop()
    await outbox.stop()
    await tables_db.close()
    await sources.stop()
    await router.stop()
    await poller.stop(settings.drain_timeout)
    for part in (rules, dispatcher, registry):
        await part.stop()  # type: ignore[attr-defined]
    await http.cleanup()
    await channel.close()
    await nc.drain()


def main() -> None:
    runner.service_main("worker", WorkerSettings.from_env, serve)


if __name__ == "__main__":
    main()
