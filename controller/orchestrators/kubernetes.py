"""The Kubernetes orchestrator: a Deployment per active function version, and a warm pool.

Desired state is ``want[(function, version)] = (config, environments)``, set by the autoscaler
through :meth:`apply`. One pod holds one execution environment, so a function's Deployment has
``replicas = environments``, changed through the scale subresource. Every change, and every watch
event that shows drift (a Deployment deleted behind the controller's back, replicas changed by
hand, a pool pod claimed), reconciles that one version: one reconciliation at a time per version,
parallel across versions. A controller that starts lists what exists, adopts it, and removes the
Deployments of functions that are no longer in the registry.

Assignment delivery: every pod runs ``kambda-invoker`` with its pod name as invoker id, and the
controller sends it ``Assignment(config, desired=1)`` over NATS, as the local orchestrator does:
when the pod's invoker says hello, when a heartbeat shows it holds nothing it should, and to all
of a version's pods when its configuration changes. Pods need no new template for new code, and a
generic pool pod becomes a function pod by one message.

Warm pool: a Deployment of generic invoker pods per runtime. On a cold start (a version goes from
0 to some environments with no ready pod) the controller claims a ready pool pod with a
resourceVersion-guarded update that moves its labels out of the pool's selector (the ReplicaSet
lets it go and starts a replacement) and in to the function (not into its Deployment's selector),
then sends it the Assignment: it loads the code from the object store and pulls at once. Claimed
pods are a bridge: once the function's own Deployment has as many ready pods as it should (or the
version scales to zero) each claimed pod is told to hold nothing, which lets a running request
finish, and is deleted when its invoker reports the version gone (or after the function's timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from controller.orchestrators import k8s_objects as objects
from controller.orchestrators.k8s_api import MERGE_PATCH, Conflict, Informer, KubeApi, KubeError, NotFound, Obj
from controller.settings import KubernetesSettings
from kambda import bus
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invoker_pb2 import Assignment, AssignmentAck, FunctionStats, RoleCredentials

log = logging.getLogger(__name__)

Key = tuple[str, str]
#: A report older than this many heartbeats (5 s each) is not counted in stats.
STALE_REPORT_S = 20.0
#: How often every version is reconciled even without an event (a safety net, not the mechanism).
RESYNC_S = 60.0
#: How often Deployments of deleted functions are looked for (in memory: costs no API call).
GC_S = 2.0
CONFLICT_RETRIES = 5


@dataclass
class _Want:
    config: FunctionConfig
    environments: int


@dataclass
class _Report:
    received: float
    functions: dict[Key, FunctionStats] = field(default_factory=dict)


class KubernetesOrchestrator:
    def __init__(self, nc: NATS, api: KubeApi, settings: KubernetesSettings,
                 known: Callable[[str, str], FunctionConfig | None], clock: Callable[[], float] = time.monotonic,
                 nats_token: Callable[[str, str], str] | None = None,
                 code_token: Callable[[str], Awaitable[str]] | None = None,
                 role_credentials: Callable[[FunctionConfig], RoleCredentials] | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        """``known(function, version)`` answers the registry's configuration, or None for a deleted function;
        ``nats_token(function, version)`` mints the NATS credential an assignment carries, ``code_token(sha256)``
        the one that reads its code package, ``role_credentials(config)`` its execution role's (None: no such);
        ``wall`` is the clock those credentials expire by (unix seconds)."""
        self._nc = nc
        self._nats_token = nats_token
        self._code_token = code_token
        self._role_credentials = role_credentials
        self._wall = wall
        #: pod -> when the role credentials it holds are due again (half their life left).
        self._roles_due: dict[str, float] = {}
        self._api = api
        self._settings = settings
        self._known = known
        self._clock = clock
        self._ns = settings.namespace
        self._want: dict[Key, _Want] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._reports: dict[str, _Report] = {}
        self._reported = asyncio.Condition()
        self._sent: dict[str, str] = {}          # pod -> revision of the assignment it acknowledged
        self._sending: set[str] = set()
        #: pod -> the key of its assignment subject, as its first report said (a later report naming
        #: another key is someone else's forgery: the pod's own key never changes).
        self._assign_keys: dict[str, str] = {}
        self._draining: set[str] = set()         # claimed pods told to hold nothing
        self._tasks: set[asyncio.Task[object]] = set()
        self._sub: object | None = None
        self._resync: asyncio.Task[None] | None = None
        self.deployments = Informer(api, api.apps.list_namespaced_deployment, self._ns, f"{objects.PART_OF}=kambda",
                                    self._on_deployment)
        self.pods = Informer(api, api.core.list_namespaced_pod, self._ns, f"{objects.PART_OF}=kambda", self._on_pod)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(bus.ALL_STATS, cb=self._on_stats)
        await self.pods.start()
        await self.deployments.start()
        for runtime in self._settings.pool_runtimes:
            await self._reconcile_pool(runtime)
        await self._sweep()
        self._resync = asyncio.create_task(self._resync_loop())

    async def stop(self) -> None:
        """Stop acting; everything on the cluster stays as it is (a new leader adopts it)."""
        if self._resync is not None:
            self._resync.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *([self._resync] if self._resync else []), return_exceptions=True)
        await self.deployments.stop()
        await self.pods.stop()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()  # type: ignore[attr-defined]

    def adopted(self) -> dict[Key, int]:
        """Versions that have environments on the cluster now (after :meth:`start`): the
        autoscaler takes them over, so that they keep their scale until it decides otherwise."""
        found: dict[Key, int] = {}
        for deployment in self.deployments.cache.values():
            key = objects.function_key(deployment)
            replicas = int(deployment.get("spec", {}).get("replicas") or 0)
            if key and replicas and _role(deployment) == objects.ROLE_FUNCTION and self._known(*key) is not None:
                found[key] = replicas
        return found

    # -- the Orchestrator protocol -------------------------------------------------------------

    async def current(self, function: str, version: str) -> FunctionStats:
        """The pods' reports: each pod reports at once when its environments change."""
        return self.stats(function, version)

    def stats(self, function: str, version: str) -> FunctionStats:
        total = FunctionStats(function=function, version=version)
        now = self._clock()
        for pod in self._pods_of((function, version)):
            report = self._reports.get(pod["metadata"]["name"])
            if report is None or now - report.received > STALE_REPORT_S:
                continue
            fs = report.functions.get((function, version))
            if fs is not None:
                total.environments += fs.environments
                total.busy += fs.busy
                total.idle += fs.idle
                total.cold_starts += fs.cold_starts
        return total

    async def apply(self, config: FunctionConfig, desired: int) -> None:
        key = (config.name, config.version)
        before = self._want.get(key)
        self._want[key] = _Want(config, desired)
        if desired > 0 and (before is None or before.environments == 0) and not self._ready_pods(key):
            await self._claim(key)
        await self.reconcile(key)
        if before is not None and before.config.revision_id != config.revision_id:
            for pod in self._pods_of(key):  # new code or configuration: every pod loads it
                if pod["metadata"]["name"] not in self._draining:
                    self._spawn(self._assign(pod["metadata"]["name"], key))

    async def forget(self, function: str, version: str) -> None:
        """The version is deleted: remove its Deployment and its claimed pods."""
        key = (function, version)
        self._want.pop(key, None)
        await self.reconcile(key)

    # -- reconciliation ------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            for _ in range(CONFLICT_RETRIES):
                try:
                    await self._reconcile_once(key)
                    return
                except Conflict as exc:
                    log.info("conflict reconciling %s:%s (%s); re-reading", key[0], key[1], exc)
                    await self._refresh_deployment(objects.deployment_name(*key))
            log.warning("%s:%s still conflicting after %d tries; the next event retries", key[0], key[1],
                        CONFLICT_RETRIES)

    async def _reconcile_once(self, key: Key) -> None:
        name = objects.deployment_name(*key)
        current = self.deployments.cache.get(name)
        want = self._want.get(key)
        if want is not None and self._known(*key) is None:
            self._want.pop(key, None)
            want = None
        if want is None:
            config = self._known(*key)
            if config is not None:
                if current is not None:  # made by an earlier leader: adopt it at its scale
                    self._want[key] = _Want(config, int(current.get("spec", {}).get("replicas") or 0))
                return
            for pod in self._claimed_pods(key):
                self._spawn(self._release(pod["metadata"]["name"], key))
            if current is not None:
                await self._delete_deployment(name)
            return
        wanted = objects.function_deployment(self._settings, key[0], key[1], want.config.runtime, want.environments)
        if current is None:
            try:
                created = await self._api.call(self._api.apps.create_namespaced_deployment, self._ns, wanted)
                self.deployments.cache[name] = created
                log.info("created Deployment %s for %s:%s with %d replicas", name, key[0], key[1],
                         want.environments)
            except Conflict:  # it exists after all (a cache that lags): read it and go on
                current = await self._refresh_deployment(name)
                if current is None:
                    raise
        if current is not None and objects.template_differs(current, wanted):
            wanted["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            current = await self._api.call(self._api.apps.replace_namespaced_deployment, name, self._ns, wanted)
            self.deployments.cache[name] = current
        if current is not None and int(current.get("spec", {}).get("replicas") or 0) != want.environments:
            await self._scale(name, want.environments)
        self._release_bridges(key, want)

    async def _scale(self, name: str, replicas: int) -> None:
        body = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": name, "namespace": self._ns}, "spec": {"replicas": replicas}}
        try:
            await self._api.call(self._api.apps.replace_namespaced_deployment_scale, name, self._ns, body)
        except NotFound:  # deleted meanwhile: the DELETED event reconciles again and recreates it
            self.deployments.cache.pop(name, None)
            return
        cached = self.deployments.cache.get(name)
        if cached is not None:
            cached.setdefault("spec", {})["replicas"] = replicas
        log.info("scaled Deployment %s to %d", name, replicas)

    async def _delete_deployment(self, name: str) -> None:
        try:
            await self._api.call(self._api.apps.delete_namespaced_deployment, name, self._ns,
                                 body={"propagationPolicy": "Background"})
            log.info("deleted Deployment %s", name)
        except NotFound:
            pass
        self.deployments.cache.pop(name, None)

    async def _refresh_deployment(self, name: str) -> Obj | None:
        try:
            current = await self._api.call(self._api.apps.read_namespaced_deployment, name, self._ns)
        except NotFound:
            self.deployments.cache.pop(name, None)
            return None
        self.deployments.cache[name] = current
        return current

    async def _reconcile_pool(self, runtime: str) -> None:
        name = objects.pool_name(runtime)
        wanted = objects.pool_deployment(self._settings, runtime)
        current = self.deployments.cache.get(name)
        for _ in range(CONFLICT_RETRIES):
            try:
                if self._settings.pool_size == 0:
                    if current is not None:
                        await self._delete_deployment(name)
                    return
                if current is None:
                    self.deployments.cache[name] = await self._api.call(
                        self._api.apps.create_namespaced_deployment, self._ns, wanted)
                    log.info("created the %s warm pool (%d pods)", runtime, self._settings.pool_size)
                    return
                if objects.template_differs(current, wanted):
                    wanted["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
                    current = await self._api.call(self._api.apps.replace_namespaced_deployment, name, self._ns,
                                                   wanted)
                    self.deployments.cache[name] = current
                if int(current.get("spec", {}).get("replicas") or 0) != self._settings.pool_size:
                    await self._scale(name, self._settings.pool_size)
                return
            except Conflict:
                current = await self._refresh_deployment(name)

    async def _sweep(self) -> None:
        """Reconcile every version that has a Deployment, a claimed pod or a want."""
        for key in self._owned_keys():
            try:
                await self.reconcile(key)
            except KubeError as exc:
                log.warning("cannot reconcile %s:%s: %s", key[0], key[1], exc)

    async def _resync_loop(self) -> None:
        """Every GC_S: remove what belongs to deleted functions (an in-memory check; an idle
        function is deleted without the autoscaler hearing of it). Every RESYNC_S: a full sweep."""
        last_sweep = self._clock()
        while True:
            await asyncio.sleep(GC_S)
            try:
                for key in self._owned_keys():
                    if self._known(*key) is None:
                        await self.reconcile(key)
                if self._clock() - last_sweep >= RESYNC_S:
                    last_sweep = self._clock()
                    await self._sweep()
                    for runtime in self._settings.pool_runtimes:
                        await self._reconcile_pool(runtime)
            except Exception:
                log.exception("resync failed")

    def _owned_keys(self) -> set[Key]:
        keys = set(self._want)
        for obj in [*self.deployments.cache.values(), *self._claimed_pods(None)]:
            key = objects.function_key(obj)
            if key is not None and _role(obj) == objects.ROLE_FUNCTION:
                keys.add(key)
        return keys

    # -- watch events --------------------------------------------------------------------------

    async def _on_deployment(self, kind: str, deployment: Obj) -> None:
        if not self.deployments.synced.is_set():
            return  # the initial listing: start() sweeps once everything is listed
        role = _role(deployment)
        if role == objects.ROLE_POOL:
            runtime = (deployment["metadata"].get("annotations") or {}).get(objects.RUNTIME_ANNOTATION)
            if runtime in self._settings.pool_runtimes:
                self._spawn(self._reconcile_pool(runtime))
            return
        key = objects.function_key(deployment)
        if role != objects.ROLE_FUNCTION or key is None:
            return
        want = self._want.get(key)
        replicas = int(deployment.get("spec", {}).get("replicas") or 0)
        drifted = (kind == "DELETED" and want is not None) or (want is None and kind != "DELETED") or (
            want is not None and kind != "DELETED" and replicas != want.environments)
        if drifted:
            log.info("Deployment %s %s: reconciling %s:%s", deployment["metadata"]["name"], kind.lower(), *key)
            self._spawn(self.reconcile(key))

    async def _on_pod(self, kind: str, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        if kind == "DELETED":
            self._assign_keys.pop(name, None)
            self._roles_due.pop(name, None)
            self._reports.pop(name, None)
            self._sent.pop(name, None)
            self._draining.discard(name)
            return
        key = objects.function_key(pod)
        if key is None or _role(pod) != objects.ROLE_FUNCTION:
            return
        want = self._want.get(key)
        if want is not None and objects.pod_ready(pod):
            if want.environments and name not in self._draining and self._sent.get(name) != want.config.revision_id:
                self._spawn(self._assign(name, key))
            self._release_bridges(key, want)

    async def _on_stats(self, msg: Msg) -> None:
        stats = bus.stats_of(msg)  # None unless it came on the subject of the invoker it names
        if stats is None:
            return
        pod = self.pods.cache.get(stats.invoker_id)
        if pod is None:
            return  # not one of ours (or not listed yet: its hello is repeated by its heartbeats' check)
        if self._nats_token is not None and not stats.assign_key:
            # Per-function credentials: every pod has a key; a keyless report is a function's forgery.
            log.warning("a report for pod %s without an assignment key was ignored", stats.invoker_id)
            return
        if stats.assign_key and self._assign_keys.setdefault(stats.invoker_id, stats.assign_key) != stats.assign_key:
            log.warning("a report for pod %s with another assignment key was ignored", stats.invoker_id)
            return
        key = objects.function_key(pod)
        # A pod holds the version it is assigned and nothing else: what it says of others is not counted.
        held = {(f.function, f.version): f for f in stats.functions if (f.function, f.version) == key}
        self._reports[stats.invoker_id] = _Report(self._clock(), held)
        async with self._reported:
            self._reported.notify_all()
        if key is None or _role(pod) != objects.ROLE_FUNCTION or stats.invoker_id in self._draining:
            return
        want = self._want.get(key)
        holds = key in self._reports[stats.invoker_id].functions
        roles_due = self._roles_due.get(stats.invoker_id, float("inf")) <= self._wall()
        if want is not None and want.environments > 0 and (
                stats.hello or not holds or self._sent.get(stats.invoker_id) != want.config.revision_id or roles_due):
            # It restarted, holds nothing, missed the latest configuration, or its role credentials
            # are half way to expiring: (re)send it.
            self._sent.pop(stats.invoker_id, None)
            self._spawn(self._assign(stats.invoker_id, key))

    # -- assignments and the warm pool ---------------------------------------------------------

    async def _assign(self, pod: str, key: Key, desired: int = 1) -> bool:
        want = self._want.get(key)
        if want is None or pod in self._sending:
            return False
        self._sending.add(pod)
        try:
            config = want.config
            assignment = Assignment(config=config, desired=desired,
                                    provisioned=1 if desired and config.provisioned_concurrency else 0)
            if desired:
                await self._grant(assignment)
            try:
                reply = await self._nc.request(bus.assign_subject(pod, self._assign_keys.get(pod, "")),
                                               assignment.SerializeToString(), timeout=10)
            except (NoRespondersError, NatsTimeoutError):
                return False  # the invoker is starting: its hello brings us back
            ack = AssignmentAck.FromString(reply.data)
            report = self._reports.setdefault(pod, _Report(self._clock()))
            report.functions[key] = ack.stats
            if desired:
                self._sent[pod] = config.revision_id
                if assignment.HasField("role_credentials"):
                    now = self._wall()
                    self._roles_due[pod] = now + (assignment.role_credentials.expires - now) / 2
            return True
        finally:
            self._sending.discard(pod)

    async def _grant(self, assignment: Assignment) -> None:
        """The credentials an assignment carries: the version's NATS credential, one that reads its
        code package, its execution role's (each when this controller has what mints it)."""
        config = assignment.config
        if self._nats_token is not None:
            assignment.nats_token = self._nats_token(config.name, config.version)
        if self._code_token is not None:
            assignment.code_token = await self._code_token(config.code_sha256)
        if self._role_credentials is not None:
            assignment.role_credentials.CopyFrom(self._role_credentials(config))

    async def _claim(self, key: Key) -> None:
        want = self._want[key]
        runtime = want.config.runtime
        if self._settings.pool_size == 0 or runtime not in self._settings.pool_runtimes:
            return
        for pod in list(self.pods.cache.values()):
            if not self._claimable(pod, runtime):
                continue
            name = pod["metadata"]["name"]
            for _ in range(2):
                try:
                    claimed = await self._api.call(self._api.core.patch_namespaced_pod, name, self._ns,
                                                   objects.claim_patch(pod, *key), _content_type=MERGE_PATCH)
                except Conflict:  # it changed since we saw it: still a ready pool pod?
                    try:
                        pod = await self._api.call(self._api.core.read_namespaced_pod, name, self._ns)
                    except NotFound:
                        break
                    if not self._claimable(pod, runtime):
                        break
                    continue
                except NotFound:
                    break
                except KubeError as exc:
                    log.warning("cannot claim pool pod %s: %s", name, exc)
                    return
                self.pods.cache[name] = claimed
                log.info("claimed pool pod %s for %s:%s", name, *key)
                self._spawn(self._assign(name, key))
                return
        log.info("no ready %s pool pod for %s:%s; waiting for its Deployment", runtime, *key)

    @staticmethod
    def _claimable(pod: Obj, runtime: str) -> bool:
        annotations = pod["metadata"].get("annotations") or {}
        return _role(pod) == objects.ROLE_POOL and objects.pod_ready(pod) and \
            annotations.get(objects.RUNTIME_ANNOTATION) == runtime

    def _release_bridges(self, key: Key, want: _Want) -> None:
        """Claimed pods go once the version's own pods are enough (or it needs none)."""
        claimed = [p for p in self._claimed_pods(key) if p["metadata"]["name"] not in self._draining]
        if claimed and (want.environments == 0 or len(self._ready_pods(key, own=True)) >= want.environments):
            for pod in claimed:
                self._spawn(self._release(pod["metadata"]["name"], key))

    async def _release(self, pod: str, key: Key) -> None:
        if pod in self._draining:
            return
        self._draining.add(pod)
        want = self._want.get(key)
        if want is not None:  # let a running request finish; a deleted function's pod goes at once
            await self._assign(pod, key, desired=0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(pod, key), want.config.timeout + 10.0)
        try:
            await self._api.call(self._api.core.delete_namespaced_pod, pod, self._ns)
            log.info("released claimed pod %s of %s:%s", pod, *key)
        except NotFound:
            pass

    async def _drained(self, pod: str, key: Key) -> None:
        async with self._reported:
            await self._reported.wait_for(lambda: pod not in self.pods.cache or key not in (
                self._reports.get(pod) or _Report(0.0)).functions)

    # -- helpers -------------------------------------------------------------------------------

    def _pods_of(self, key: Key) -> list[Obj]:
        return [p for p in self.pods.cache.values() if _role(p) == objects.ROLE_FUNCTION
                and objects.function_key(p) == key and not p["metadata"].get("deletionTimestamp")]

    def _ready_pods(self, key: Key, own: bool = False) -> list[Obj]:
        return [p for p in self._pods_of(key) if objects.pod_ready(p) and p["metadata"]["name"] not in self._draining
                and (not own or (p["metadata"].get("labels") or {}).get(objects.CLAIMED) != "true")]

    def _claimed_pods(self, key: Key | None) -> list[Obj]:
        return [p for p in self.pods.cache.values()
                if (p["metadata"].get("labels") or {}).get(objects.CLAIMED) == "true"
                and (key is None or objects.function_key(p) == key)]

    def _spawn(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background work failed: %s", task.exception())


def _role(obj: Obj) -> str:
    return (obj.get("metadata", {}).get("labels") or {}).get(objects.ROLE, "")
