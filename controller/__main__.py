"""``python -m controller``: the registry, the autoscaler and an orchestrator behind a gRPC server.

Prints ``kambda-controller ready grpc=HOST:PORT`` on stdout once it serves; ``kambda up`` reads
that line. SIGTERM or SIGINT stop it: stop accepting, drain calls, stop the invokers, close NATS.

With leader election (KAMBDA_LEADER_ELECTION=true, on Kubernetes) the controller serves Ping as
a standby and nothing else until it holds the Lease; then it loads the registry and starts the
orchestrator, the autoscaler, the event source mappings' store and the schedule ticker. What is a
stream of work (async invokes, event routing, running the mappings) runs in the worker tier
(python -m worker), not here. A leader that loses the Lease stops all of that at once and exits,
to start again as a standby. On SIGTERM it gives the Lease up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc
from grpc import aio
from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry

from controller.collector import Collector, Effects
from controller.leader import LeaderElector, label_pod
from controller.orchestrators.k8s_api import KubeApi, KubeError, load_client
from controller.orchestrators.kubernetes import KubernetesOrchestrator
from controller.orchestrators.local import LocalOrchestrator, default_environ
from controller.registry import Registry
from controller.scaler import Autoscaler, interval_ticks
from controller.service import ControllerService
from controller.settings import ControllerSettings
from events.destinations import Destinations
from events.mappings import Mappings
from events.rules import Rules
from events.targets import Targets
from events.ticks import ScheduleTicker
from kambda import bus, rpc, runner
from kambda.aws import roles
from kambda.bus import callout, chunks, identities
from kambda.bus.dispatch import Dispatcher
from kambda.names import Arns
from kambda.v1.controller_pb2_grpc import add_ControllerServicer_to_server
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invoker_pb2 import RoleCredentials

log = logging.getLogger("controller")


class StandbyGate(aio.ServerInterceptor):
    """Until this controller leads, every call but Ping is refused as UNAVAILABLE (the gateway
    reports the controller unreachable): a standby's registry is not loaded and it must not act."""

    def __init__(self) -> None:
        self.open = False

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        if self.open or handler_call_details.method.endswith("/Ping"):
            return await continuation(handler_call_details)

        async def refuse(request: object, context: aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this controller is a standby")

        return grpc.unary_unary_rpc_method_handler(refuse)


def make_orchestrator(settings: ControllerSettings, nc: NATS, registry: Registry, environ: Mapping[str, str],
                      kube: KubeApi | None, function_nats: callout.Callout | None = None
                      ) -> LocalOrchestrator | KubernetesOrchestrator:
    if settings.orchestrator == "kubernetes":
        assert kube is not None

        def known(function: str, version: str) -> FunctionConfig | None:
            return registry.get_version(function, version) if registry.has_version(function, version) else None

        code_token = None
        if function_nats is not None:
            minter = function_nats

            async def code_token(sha256_hex: str) -> str:
                info = await chunks.object_info(nc.jetstream(), bus.CODE_BUCKET, sha256_hex)
                return minter.mint_code(sha256_hex, info.nuid or "")

        return KubernetesOrchestrator(nc, kube, settings.kubernetes, known,
                                      nats_token=function_nats.mint if function_nats is not None else None,
                                      code_token=code_token, role_credentials=role_minter(settings))
    return LocalOrchestrator(nc, settings.nats_url, settings.state_dir, environ,
                             nats_creds=settings.invoker_nats_creds)


def role_minter(settings: ControllerSettings) -> Callable[[FunctionConfig], RoleCredentials] | None:
    """Kubernetes: what mints a function pod's execution-role credentials (the pod holds no role
    key: with it, function code could mint any role's); None without a role key."""
    key = roles.read_key(settings.kubernetes.role_key_file)
    if not key:
        return None
    arns = Arns(settings.region, settings.account)
    ttl = int(settings.kubernetes.role_ttl_s)

    def mint(config: FunctionConfig) -> RoleCredentials:
        session = roles.mint(key, config.role, arns.function(config.name), time.time(), ttl)
        return RoleCredentials(access_key_id=session.access_key, secret_access_key=session.secret,
                               session_token=session.token, expires=session.expires)
    return mint


async def serve(settings: ControllerSettings, environ: Mapping[str, str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    nc = await bus.connect(settings.nats_url, "kambda-controller", settings.nats_creds)
    js = nc.jetstream()
    await bus.ensure_platform(js, settings.stream_replicas)
    arns = Arns(settings.region, settings.account)
    registry = Registry(js, arns)
    k8s = settings.kubernetes
    kube = KubeApi(load_client(k8s.kubeconfig)) if settings.orchestrator == "kubernetes" or k8s.leader_election \
        else None
    # Kubernetes: each function version's pods get a NATS credential of that version alone, which
    # nats-server checks with this controller (auth callout); every replica answers, leader or not.
    function_nats: callout.Callout | None = None
    if settings.orchestrator == "kubernetes" and k8s.callout_seed_file:
        seed = Path(k8s.callout_seed_file).read_bytes().strip()
        pods = identities.read(k8s.pod_creds_file)["password"] if k8s.pod_creds_file else ""
        function_nats = callout.Callout(nc, seed, callout.token_key(seed), pod_password=pods)
        await function_nats.start()
    orchestrator = make_orchestrator(settings, nc, registry, environ, kube, function_nats)

    collector = Collector(js)
    effects = Effects(nc, registry, orchestrator, collector, settings.max_environments)
    autoscaler = Autoscaler(settings.scaler, collector.observe, effects.apply, effects.cap_of, effects.floor_of,
                            effects.report, total_limit=settings.concurrency_limit,
                            shared_cap_of=effects.reserved_of, running_of=effects.running_of)
    metrics_registry = CollectorRegistry()
    # The leader stores what its schedule ticks fire (the dispatcher's store); the workers run it.
    dispatcher = Dispatcher(nc, lambda f, v, n: autoscaler.activate((f, v), time.monotonic(), n))
    mappings = Mappings(js, registry, arns)
    rules = Rules(js)
    ticker = ScheduleTicker(js, rules, Targets(registry, dispatcher, Destinations(nc, dispatcher, arns), arns), arns)
    gate = StandbyGate()
    # Callers prove they are kambda's own components with the token (kambda up also serves on a
    # Unix socket in a 0700 directory); the standby gate comes after, so a stranger learns nothing.
    token = rpc.read_token(settings.token_file)
    server = aio.server(options=rpc.CHANNEL_OPTIONS,
                        interceptors=[*([rpc.TokenGate(token)] if token else []), gate])
    add_ControllerServicer_to_server(
        ControllerService(nc, js, registry, autoscaler, orchestrator, arns, settings.max_environments,
                          time.monotonic, metrics_registry, mappings),
        server,
    )
    port = server.add_insecure_port(settings.listen)
    address = settings.listen if settings.listen.startswith("unix:") else \
        f"{settings.listen.rsplit(':', 1)[0]}:{port}"
    await server.start()
    scaling: list[asyncio.Task[None]] = []
    started: list[object] = []

    async def lead() -> None:
        """Everything that acts: only the leader runs it."""
        await registry.load()
        # The sync queue lives in memory: after a NATS restart its consumers must be made again.
        for config in registry.all():
            await bus.ensure_consumer(js, config.name, config.version, config.timeout)
        for part in (orchestrator, dispatcher, mappings, rules, ticker):
            await part.start()
            started.append(part)
        now = time.monotonic()
        for config in registry.all():  # provisioned concurrency is warm from the start
            if config.provisioned_concurrency:
                await autoscaler.reapply((config.name, config.version), now)
        if isinstance(orchestrator, KubernetesOrchestrator):
            for key, replicas in orchestrator.adopted().items():  # a restart keeps what runs
                await autoscaler.activate(key, now, replicas)
        scaling.append(asyncio.create_task(autoscaler.run(interval_ticks(settings.tick, time.monotonic))))
        gate.open = True

    async def stop_acting() -> None:
        """Stop deciding at once (a deposed leader must be quiet before another can take over)."""
        gate.open = False
        for task in scaling:
            task.cancel()
        for part in reversed(started):
            await part.stop()  # type: ignore[attr-defined]
        started.clear()

    lost = asyncio.Event()
    elector: LeaderElector | None = None
    electing: asyncio.Task[None] | None = None
    if k8s.leader_election:
        assert kube is not None
        elector = LeaderElector(KubeApi(kube.api_client, max_attempts=1), k8s.pod_namespace, k8s.lease_name,
                                k8s.pod_name)

        async def started_leading() -> None:
            await lead()
            try:
                await label_pod(kube, k8s.pod_namespace, k8s.pod_name, leading=True)
            except KubeError as exc:  # it leads all the same; the Service finds it once the label is there
                log.error("cannot label this controller's pod as the leader: %s", exc)

        async def stopped_leading() -> None:
            await stop_acting()
            if not stop.is_set():
                lost.set()

        print(f"kambda-controller ready grpc={address} (standby until it leads)", flush=True)
        electing = asyncio.create_task(elector.run(started_leading, stopped_leading))
    else:
        await lead()
        print(f"kambda-controller ready grpc={address}", flush=True)

    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
    await asyncio.wait([*waits, *([electing] if electing else [])], return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()
    log.info("controller stopping")
    was_leading = elector is not None and elector.leading
    if electing is not None:
        if electing.done():
            lost.set()
            if not electing.cancelled() and electing.exception() is not None:
                log.error("leading failed: %r", electing.exception())
        else:
            electing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await electing
    await stop_acting()
    if elector is not None and kube is not None and (was_leading or lost.is_set()):
        with contextlib.suppress(KubeError):
            await label_pod(kube, k8s.pod_namespace, k8s.pod_name, leading=False)
            if not lost.is_set():
                await elector.release()  # a standby takes over at once instead of after the lease runs out
    await server.stop(grace=2.0)
    if function_nats is not None:
        await function_nats.stop()
    await bus.drain(nc)
    if kube is not None:
        kube.close()
    if lost.is_set():
        log.error("leadership lost; exiting so that this controller starts again as a standby")
        raise SystemExit(1)


def main() -> None:
    runner.service_main("controller", ControllerSettings.from_env, lambda settings: serve(settings, default_environ()))


if __name__ == "__main__":
    main()
