"""The ECS task engine, in every worker replica: it takes tasks off the work stream and runs their containers.

RunTask (tasks/api.py) writes a task's record (PROVISIONING) and puts its id on ``KAMBDA_ECS_WORK``; the replica
that pulls it claims the record (compare-and-set: it becomes the task's ``owner``), acknowledges the message and
runs the task: PENDING while its images are resolved and unpacked (tasks/oci.py, cached by digest), RUNNING once
its containers have started (tasks/runner.py; ``dependsOn`` START, COMPLETE, SUCCESS and HEALTHY, the last one
taken as START since health checks are not run), DEPROVISIONING when an essential container has exited or
StopTask said so (the others get SIGTERM, then SIGKILL after their stopTimeout), STOPPED with the exit codes,
``stopCode`` and ``stoppedReason``. Each change goes to the record and, as an "ECS Task State Change" event, to
the default event bus. Containers' output lines go to kambda's logs (``kambda.logs.ecs.<family>``: the log
group, the stream ``<prefix>/<container>/<task id>``, one record per line).

StopTask publishes on ``kambda.stop.<task id>``; the owner stops the task. A replica that dies takes its
containers with it (they die with their parent) and its heartbeat in ``kambda_ecs_workers`` goes stale; every
replica sweeps the records now and then, and a task whose owner has not beaten for ``lease_s`` is marked STOPPED
(``TerminationNotice``). A replica that stops (SIGTERM) stops its tasks the same way, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from kambda import bus
from kambda.v1.invocation_pb2 import LogBatch, LogRecord
from tasks import oci, records, runner
from tasks.images import PullError
from tasks.records import PRIVATE, Arns, Record, Records
from tasks.runner import Container, ContainerError, ContainerSpec, Exit

log = logging.getLogger(__name__)

ACK_WAIT_S = 30.0
#: How long a container is given between SIGTERM and SIGKILL unless its definition says (ECS: 30, at most 120).
STOP_TIMEOUT_S = 30.0
MAX_STOP_TIMEOUT_S = 120.0
LOG_FLUSH_S = 0.2
LOG_BATCH_BYTES = 256 * 1024
ESSENTIAL_EXITED = "Essential container in task exited"
#: Every container's environment names its task (kambda's own variable): a worker that sweeps a dead one's
#: tasks finds their containers by it, should any have outlived their worker.
TASK_ARN_ENV = "KAMBDA_TASK_ARN"

Clock = Callable[[], float]
#: An image reference to its root filesystem (named by its manifest's hex digest) and config.
Pull = Callable[[str], Awaitable[tuple[Path, oci.ImageConfig]]]


class Images:
    """Image references to unpacked root filesystems, cached by manifest digest under ``cache/rootfs``.

    ``oci-layout:<dir>[:<ref>]`` names an OCI image layout on this machine (kambda's own kind of reference, for
    images built locally and for tests); any other reference goes to ``pull`` (the built-in registry's:
    tasks/images.py), when there is one."""

    def __init__(self, cache: Path, pull: Pull | None = None) -> None:
        self.cache = cache
        self._pull = pull

    async def resolve(self, ref: str) -> tuple[str, Path, oci.ImageConfig]:
        """(the manifest digest, the rootfs, the config) of ``ref``."""
        if ref.startswith("oci-layout:"):
            return await asyncio.to_thread(self._from_layout, ref[len("oci-layout:"):])
        if self._pull is None:
            raise oci.ImageError(f"no registry to pull {ref} from")
        rootfs, config = await self._pull(ref)
        return f"sha256:{rootfs.name}", rootfs, config

    def _from_layout(self, spec: str) -> tuple[str, Path, oci.ImageConfig]:
        path, _, name = spec.partition(":")
        layout = oci.Layout(Path(path))
        digest, manifest = layout.manifest(name)
        config = oci.ImageConfig.parse(layout.blob(manifest.config.digest))
        rootfs = oci.unpack(digest, [layout.blob_path(layer.digest) for layer in manifest.layers],
                            self.cache / "rootfs")
        return digest, rootfs, config


class LogShipper:
    """Containers' lines to kambda's logs, batched (one message per subject at most every LOG_FLUSH_S)."""

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._pending: dict[str, list[LogRecord]] = {}
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    def line(self, subject: str, group: str, revision: str, task_id: str, stream: str, text: str) -> None:
        self._pending.setdefault(subject, []).append(LogRecord(
            function=group, version=revision, request_id=task_id, time_ms=int(time.time() * 1000),
            environment_id=stream, text=text + "\n"))
        self._bytes += len(text)
        if self._bytes > LOG_BATCH_BYTES:
            asyncio.ensure_future(self.flush())
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LOG_FLUSH_S, lambda: asyncio.ensure_future(
                self.flush()))

    async def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending, self._bytes = self._pending, {}, 0
        for subject, batch in pending.items():
            with contextlib.suppress(Exception):
                await self._nc.publish(subject, LogBatch(records=batch).SerializeToString())


def logs_subject(family: str) -> str:
    return bus.logs_subject(f"ecs.{family}")


class _Running:
    """One task this replica runs."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.stop_reason: str | None = None
        self.stop_code = ""
        self.stop_requested = asyncio.Event()
        self.job: asyncio.Task[None] | None = None


class TaskEngine:
    def __init__(self, nc: NATS, arns: Arns, images: Images, concurrency: int = 64, clock: Clock = time.time,
                 heartbeat_s: float = 2.0, lease_s: float = 10.0, worker_id: str = "") -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.arns = arns
        self.images = images
        self.records: Records | None = None
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.worker_id = worker_id or uuid.uuid4().hex[:16]
        self._concurrency = concurrency
        self._puller = bus.Puller(nc, records.WORK_STREAM, records.RUNNER, self._on_message)
        self._logs = LogShipper(nc)
        self.running: dict[str, _Running] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._stop_sub: Any = None

    async def start(self) -> None:
        await records.ensure(self.js)
        self.records = Records(self.js)
        await self.js.add_consumer(records.WORK_STREAM, ConsumerConfig(
            durable_name=records.RUNNER, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S, max_deliver=-1,
            max_waiting=4096))
        await self.beat()
        self._stop_sub = await self.nc.subscribe(records.STOP_PREFIX + "*", cb=self._on_stop)
        self._loops = [asyncio.create_task(self._every(self.beat)), asyncio.create_task(self._every(self.sweep))]
        await self._puller.start()
        await self._puller.add_free(self._concurrency)

    async def stop(self) -> None:
        """Stop pulling; stop every task this replica runs (as a host going away does), then say goodbye."""
        await self._puller.stop()
        if self._stop_sub is not None:
            with contextlib.suppress(Exception):
                await self._stop_sub.unsubscribe()
        for loop in self._loops:
            loop.cancel()
        for run in list(self.running.values()):
            self._request_stop(run, "Task stopped: the worker running it is shutting down", "TerminationNotice")
        await asyncio.gather(*[r.job for r in self.running.values() if r.job], return_exceptions=True)
        await self._logs.flush()
        if self.records is not None:
            with contextlib.suppress(Exception):
                await self.records.workers.delete(self.worker_id)

    async def _every(self, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await step()
            except Exception:
                log.exception("ECS supervision step failed")

    async def beat(self) -> None:
        assert self.records is not None
        await self.records.workers.put(self.worker_id, {"at": self.clock()})

    # -- supervision ---------------------------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Mark STOPPED the tasks whose owner has not beaten for ``lease_s`` (it died and took them with it)."""
        assert self.records is not None
        now = self.clock()
        beats: dict[str, float | None] = {}
        for key in await self.records.tasks.keys():
            task, _ = await self.records.tasks.get(key)
            if task is None or task["lastStatus"] == "STOPPED":
                continue
            owner = task.get(PRIVATE, {}).get("owner", "")
            if not owner or owner == self.worker_id:
                continue
            if owner not in beats:
                beat, _ = await self.records.workers.get(owner)
                beats[owner] = float(beat["at"]) if beat else None
            last = beats[owner]
            if last is not None and now - last <= self.lease_s:
                continue
            gone = f"Task stopped: the worker that ran it ({owner}) stopped heartbeating"

            def orphaned(current: Record | None, owner: str = owner, gone: str = gone) -> Record | None:
                if current is None or current["lastStatus"] == "STOPPED" or \
                        current.get(PRIVATE, {}).get("owner") != owner:
                    return current
                return self._stopped(current, now, gone, "TerminationNotice",
                                     container_reason="the worker running the container is gone")

            private = task.get(PRIVATE, {})
            if private.get("host") == runner.host_id():
                for pids in (private.get("pids") or {}).values():
                    if runner.kill_left_over(pids, task["taskArn"]):
                        log.warning("task %s: killed a container its dead worker %s left running", key, owner)
            updated = await self.records.tasks.update(key, orphaned)
            if updated is not None and updated["lastStatus"] == "STOPPED" and updated.get("stoppedReason") == gone:
                log.warning("task %s: its worker %s is gone; marked STOPPED", key, owner)
                await self._tell(updated)

    # -- messages ------------------------------------------------------------------------------------------------

    async def _on_message(self, msg: Msg) -> None:
        assert self.records is not None
        try:
            task_id = orjson.loads(msg.data)["t"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await bus.term(self.nc, msg)
            await self._puller.add_free(1)
            return
        claimed = False
        # Known before the claim is written: a StopTask that comes meanwhile finds it.
        run = self.running.setdefault(task_id, _Running(task_id))

        def claim(current: Record | None) -> Record | None:
            nonlocal claimed
            claimed = False
            if current is None or current["lastStatus"] == "STOPPED" or current[PRIVATE].get("owner"):
                return current  # gone, done, or another replica's (a redelivery): the sweep sees to a dead owner
            claimed = True
            return {**current, PRIVATE: {**current[PRIVATE], "owner": self.worker_id}}

        try:
            task = await self.records.tasks.update(task_id, claim)
        except Exception:
            log.exception("task %s could not be claimed", task_id)
            self.running.pop(task_id, None)
            await bus.nak_after(self.nc, msg, 1.0)
            await self._puller.add_free(1)
            return
        with contextlib.suppress(Exception):
            await msg.ack()
        if not claimed or task is None:
            if run.job is None:
                self.running.pop(task_id, None)
            await self._puller.add_free(1)
            return
        run.job = asyncio.create_task(self._run(run, task))

    async def _on_stop(self, msg: Msg) -> None:
        task_id = msg.subject[len(records.STOP_PREFIX):]
        run = self.running.get(task_id)
        if run is None:
            return
        try:
            reason = orjson.loads(msg.data).get("reason") or "Task stopped by user"
        except (orjson.JSONDecodeError, AttributeError):
            reason = "Task stopped by user"
        self._request_stop(run, reason, "UserInitiated")

    def _request_stop(self, run: _Running, reason: str, code: str) -> None:
        if run.stop_reason is None:
            run.stop_reason, run.stop_code = reason, code
        run.stop_requested.set()

    # -- running a task ------------------------------------------------------------------------------------------

    async def _change(self, task_id: str, change: Callable[[Record], Record], tell: bool = True) -> Record:
        assert self.records is not None

        def apply(current: Record | None) -> Record | None:
            return None if current is None else change(current)

        updated = await self.records.tasks.update(task_id, apply)
        if updated is None:
            raise LookupError(task_id)
        if tell:
            await self._tell(updated)
        return updated

    async def _tell(self, task: Record) -> None:
        try:
            event = records.state_change_event(task, self.arns, self.clock())
            await self.js.publish(bus.events_subject("default"), orjson.dumps(event), timeout=10)
        except Exception as exc:  # the task goes on; the event is best effort, as on AWS
            log.warning("state change event of %s not stored: %s", task.get("taskArn"), exc)

    async def _run(self, run: _Running, task: Record) -> None:
        try:
            await self._run_task(run, task)
        except Exception:
            log.exception("task %s failed in the engine", run.task_id)
            with contextlib.suppress(Exception):
                await self._change(run.task_id, lambda t: self._stopped(
                    t, self.clock(), "Task failed to start: an internal error of kambda's task engine",
                    "TaskFailedToStart") if t["lastStatus"] != "STOPPED" else t)
        finally:
            self.running.pop(run.task_id, None)
            await self._puller.add_free(1)

    async def _run_task(self, run: _Running, task: Record) -> None:
        private = task[PRIVATE]
        if task.get("desiredStatus") == "STOPPED" or run.stop_requested.is_set():  # StopTask came first
            reason = run.stop_reason or task.get("stoppedReason") or "Task stopped by user"
            await self._change(run.task_id, lambda t: self._stopped(t, self.clock(), reason, "UserInitiated"))
            return
        definition = private["definition"]
        overrides = {o.get("name"): o for o in (task.get("overrides") or {}).get("containerOverrides") or []}
        now = self.clock()
        await self._change(run.task_id, lambda t: {**t, "lastStatus": "PENDING", "pullStartedAt": now})
        specs: list[tuple[dict[str, Any], ContainerSpec, str]] = []
        try:
            for container in definition["containerDefinitions"]:
                digest, rootfs, image = await self.images.resolve(container["image"])
                specs.append((container, self._spec(container, overrides.get(container["name"]) or {},
                                                    definition, rootfs, image, task["taskArn"]), digest))
        except (oci.ImageError, PullError, OSError, ContainerError) as exc:
            reason = f"CannotPullContainerError: {exc}"
            await self._change(run.task_id, lambda t: self._stopped(t, self.clock(), reason, "TaskFailedToStart",
                                                                    container_reason=reason))
            return
        digests = {container["name"]: digest for container, _, digest in specs}
        now = self.clock()
        await self._change(run.task_id, lambda t: {**t, "pullStoppedAt": now, "containers": [
            {**c, "imageDigest": digests.get(c["name"], "")} for c in t["containers"]]}, tell=False)
        await self._containers(run, task, specs)

    def _spec(self, container: dict[str, Any], override: dict[str, Any], definition: dict[str, Any], rootfs: Path,
              image: oci.ImageConfig, task_arn: str) -> ContainerSpec:
        env = {e["name"]: e.get("value", "") for e in container.get("environment") or [] if e.get("name")}
        env.update({e["name"]: e.get("value", "") for e in override.get("environment") or [] if e.get("name")})
        env.setdefault("AWS_REGION", self.arns.region)
        env.setdefault("AWS_DEFAULT_REGION", self.arns.region)
        env.setdefault("AWS_EXECUTION_ENV", "AWS_ECS_FARGATE")
        env[TASK_ARN_ENV] = task_arn
        memory = override.get("memory") or container.get("memory") or _int(definition.get("memory"))
        stop_timeout = min(MAX_STOP_TIMEOUT_S, float(container.get("stopTimeout") or STOP_TIMEOUT_S))
        command = override.get("command") if override.get("command") is not None else container.get("command")
        return ContainerSpec(name=container["name"], rootfs=rootfs, image=image, entrypoint=container.get("entryPoint"),
                             command=command, environment=env, working_dir=container.get("workingDirectory") or "",
                             user=container.get("user") or "", memory_mb=int(memory) if memory else None,
                             stop_timeout=stop_timeout)

    async def _containers(self, run: _Running, task: Record, specs: list[tuple[dict[str, Any], ContainerSpec, str]],
                          ) -> None:
        private = task[PRIVATE]
        family, revision = private["family"], str(private["revision"])
        subject = logs_subject(family)
        started: dict[str, asyncio.Event] = {c["name"]: asyncio.Event() for c, _, _ in specs}
        exited: dict[str, asyncio.Future[Exit]] = {c["name"]: asyncio.get_running_loop().create_future()
                                                  for c, _, _ in specs}
        live: dict[str, Container] = {}
        essential_exit = asyncio.Event()
        failed_start: list[str] = []
        stopping = asyncio.Event()

        async def one(container: dict[str, Any], spec: ContainerSpec) -> None:
            name = container["name"]
            options = (container.get("logConfiguration") or {}).get("options") or {}
            group = options.get("awslogs-group") or f"/ecs/{family}"
            prefix = options.get("awslogs-stream-prefix")
            stream = f"{prefix}/{name}/{run.task_id}" if prefix else f"{name}/{run.task_id}"
            try:
                for dependency in container.get("dependsOn") or []:
                    other, condition = dependency.get("containerName"), dependency.get("condition", "START")
                    if other not in started:
                        continue
                    if condition in ("START", "HEALTHY"):
                        await started[other].wait()
                    else:
                        result = await asyncio.shield(exited[other])
                        if condition == "SUCCESS" and result.exit_code != 0:
                            raise ContainerError(f"dependency {other} exited {result.exit_code}, not 0")
                if run.stop_requested.is_set():
                    raise ContainerError("the task was stopped before the container started")
                box = Container(spec, lambda s, line: self._logs.line(subject, group, revision, run.task_id,
                                                                      stream, line))
                await box.start()
                live[name] = box
                if stopping.is_set():
                    asyncio.ensure_future(box.stop())
                started[name].set()
                result = await box.wait()
            except ContainerError as exc:
                failed_start.append(name)
                result = Exit(None, str(exc))
                started[name].set()  # nothing waits on a container that will never start
            if not exited[name].done():
                exited[name].set_result(result)
            if container.get("essential", True):
                essential_exit.set()

        jobs = [asyncio.create_task(one(c, s)) for c, s, _ in specs]
        first = [c["name"] for c, _, _ in specs if not c.get("dependsOn")] or [specs[0][0]["name"]]
        all_first = asyncio.ensure_future(asyncio.gather(*(started[name].wait() for name in first)))
        ended = asyncio.ensure_future(essential_exit.wait())
        first_waits: list[asyncio.Future[Any]] = [all_first, ended]
        await asyncio.wait(first_waits, return_when=asyncio.FIRST_COMPLETED)
        all_first.cancel()
        ended.cancel()
        if live:
            now = self.clock()
            pids = {name: box.pids for name, box in live.items()}
            await self._change(run.task_id, lambda t: {**t, "lastStatus": "RUNNING", "startedAt": now,
                                                       PRIVATE: {**t[PRIVATE], "host": runner.host_id(),
                                                                 "pids": pids},
                                                       "connectivity": "CONNECTED", "connectivityAt": now,
                                                       "containers": [{**c, "lastStatus": "RUNNING"}
                                                                      if c["name"] in live else c
                                                                      for c in t["containers"]]})
        stopper = asyncio.ensure_future(run.stop_requested.wait())
        ender = asyncio.ensure_future(essential_exit.wait())
        everything = asyncio.ensure_future(asyncio.gather(*jobs, return_exceptions=True))
        waits: list[asyncio.Future[Any]] = [stopper, ender, everything]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        ender.cancel()
        if run.stop_reason is not None:
            reason, code = run.stop_reason, run.stop_code
        elif failed_start and not any(name in live for name in started):
            reason, code = "Task failed to start", "TaskFailedToStart"
        else:
            reason, code = ESSENTIAL_EXITED, "EssentialContainerExited"
        now = self.clock()
        await self._change(run.task_id, lambda t: {**t, "lastStatus": "DEPROVISIONING", "desiredStatus": "STOPPED",
                                                   "stoppingAt": t.get("stoppingAt") or now})
        stopping.set()
        for box in list(live.values()):
            box_stop = asyncio.ensure_future(box.stop())
            box_stop.add_done_callback(lambda f: f.exception())
        await everything
        await self._logs.flush()
        results = {name: future.result() for name, future in exited.items() if future.done()}
        now = self.clock()
        await self._change(run.task_id, lambda t: self._stopped(t, now, reason, code, results))

    def _stopped(self, task: Record, now: float, reason: str, code: str, results: dict[str, Exit] | None = None,
                 container_reason: str = "") -> Record:
        containers = []
        for container in task["containers"]:
            result = (results or {}).get(container["name"])
            changed = {**container, "lastStatus": "STOPPED"}
            if result is not None and result.exit_code is not None:
                changed["exitCode"] = result.exit_code
            if result is not None and result.reason:
                changed["reason"] = result.reason
            elif container_reason and "exitCode" not in container:
                changed["reason"] = container_reason
            containers.append(changed)
        return {**task, "lastStatus": "STOPPED", "desiredStatus": "STOPPED", "stoppedReason":
                task.get("stoppedReason") if code == "UserInitiated" and task.get("stoppedReason") else reason,
                "stopCode": code, "stoppingAt": task.get("stoppingAt") or now, "executionStoppedAt": now,
                "stoppedAt": now, "containers": containers, "version": int(task.get("version", 1)) + 1}


def _int(value: Any) -> int | None:
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None
