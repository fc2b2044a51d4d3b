"""A fake kubelet: every pod of a namespace in the fake API server becomes a real local process.

For each new pod it runs the pod's first container: ``command`` + ``args`` (the console scripts
``kambda-invoker``, ``kambda-gateway``, ``kambda-controller`` and ``kambda`` become
``python -m <module>`` on this interpreter), with the container's ``env`` resolved as a kubelet
does (``envFrom``; ``value`` with ``$(VAR)`` references, ``valueFrom.fieldRef``, ``resourceFieldRef``,
``configMapKeyRef``, ``secretKeyRef``) on top of this process's environment without its
``KAMBDA_*`` variables, and then ``extra_env`` (PYTHONPATH, a NATS URL the host can reach ...).

The pod becomes Running and Ready as soon as its process starts, or, with ``ready_when`` (a
regular expression), once a line of its output matches it: a readiness probe for processes that
print when they are ready. The kubelet binds the pods it runs to its node (``spec.nodeName``), so
their deletion is graceful as on a real cluster: a deleted pod turns Terminating
(``deletionTimestamp``), its process group gets SIGTERM, then SIGKILL after the pod's grace period
(at most ``max_grace`` s), and then the kubelet deletes the pod for good. A process that exits by itself leaves its pod
Failed (a real kubelet would restart the container: restartPolicy Always; here the ReplicaSet
controller replaces the pod instead, which a test can see).

The kubelet follows the store directly rather than over HTTP, so the API server's test hooks
(dropped watches, injected errors) disturb the client under test and never the kubelet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kambda import procs

from .objects import ApiError, Obj
from .podenv import POD_IP, ContainerConfigError, argv_of, resolve_env
from .server import FakeKube, handover
from .store import Event, now

log = logging.getLogger(__name__)


@dataclass
class PodProcess:
    """One pod's process, as the kubelet started it."""

    pod: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    returncode: int | None = None
    ready: bool = False
    deleted: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Kubelet:
    """Runs the pods of ``namespace`` as local processes. ``with Kubelet(kube, "fns", env) as kubelet:``."""

    def __init__(self, kube: FakeKube, namespace: str, extra_env: Mapping[str, str] | None = None,
                 log_dir: str | Path | None = None, ready_when: str | None = None, max_grace: float = 10.0) -> None:
        self.kube = kube
        self.store = kube.store
        self.namespace = namespace
        self.extra_env = dict(extra_env or {})
        self._own_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="fakekubelet-"))
        self.ready_when = re.compile(ready_when) if ready_when else None
        self.max_grace = max_grace
        self._pods: dict[str, PodProcess] = {}
        self._history: list[PodProcess] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._unwatch: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started: set[str] = set()  # pods given a process (or a config error): each is started once
        self._finishing: set[str] = set()  # Terminating pods being stopped
        self.node_name = f"fakekube-{namespace}"

    # -- life cycle -----------------------------------------------------------------------------------------

    def start(self) -> Kubelet:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            queue: asyncio.Queue[Event] = asyncio.Queue()
            self._unwatch = self.store.watch("pods", None, handover(loop, queue))
            started.set()
            consumer = loop.create_task(self._consume(queue))
            loop.run_forever()
            consumer.cancel()
            loop.run_until_complete(asyncio.gather(consumer, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name=f"fakekubelet-{self.namespace}", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after the grace period) and the kubelet."""
        if self._loop is None or self._thread is None:
            return
        if self._unwatch is not None:
            self._unwatch()
        asyncio.run_coroutine_threadsafe(self._stop_all(), self._loop).result(self.max_grace + 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop = None
        if self._own_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> Kubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for tests --------------------------------------------------------------------------------------------

    def processes(self) -> dict[str, PodProcess]:
        """The pods whose processes are running now (a deleted pod's until its process has ended), by name."""
        with self._lock:
            return {name: p for name, p in self._pods.items() if p.proc is not None and p.returncode is None}

    def history(self) -> list[PodProcess]:
        """Every process this kubelet started, in order, ended ones included."""
        with self._lock:
            return list(self._history)

    def logs(self) -> str:
        """Every process's output, for a failing test's message."""
        return "".join(f"\n== {p.pod} (exit {p.returncode})\n{p.log()[-3000:]}" for p in self.history())

    # -- the work ---------------------------------------------------------------------------------------------

    async def _consume(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            try:
                self._handle(event)
            except Exception:  # a kubelet bug must not stop it silently: it shows in the test's log
                log.exception("fake kubelet: handling %s %s failed", event.type, event.obj["metadata"]["name"])

    def _handle(self, event: Event) -> None:
        meta = event.obj["metadata"]
        if meta.get("namespace") != self.namespace:
            return
        name = meta["name"]
        if event.type == "DELETED":
            self._started.discard(name)
            with self._lock:
                process = self._pods.get(name)
            if process is not None and not process.deleted:
                process.deleted = True
                grace = (event.obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                self._spawn_task(self._terminate(process, min(float(grace), self.max_grace)))
        elif meta.get("deletionTimestamp"):
            if (event.obj.get("spec") or {}).get("nodeName") == self.node_name and name not in self._finishing:
                self._finishing.add(name)
                with self._lock:
                    process = self._pods.get(name)
                self._spawn_task(self._finish(event.obj, process))
        elif name not in self._started and (event.obj.get("status") or {}).get("phase", "Pending") == "Pending":
            self._started.add(name)
            self._spawn_task(self._run_pod(event.obj))

    async def _finish(self, pod: Obj, process: PodProcess | None) -> None:
        """A Terminating pod: stop its process within its grace period, then delete it for good."""
        meta = pod["metadata"]
        try:
            if process is not None and not process.deleted:
                process.deleted = True
                await self._terminate(process, min(float(meta.get("deletionGracePeriodSeconds") or 0), self.max_grace))
            try:
                self.store.delete("pods", self.namespace, meta["name"],
                                  {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
            except ApiError:
                pass  # already gone
        finally:
            self._finishing.discard(meta["name"])

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_pod(self, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        try:  # bound to this kubelet's node: from now on its deletion is graceful and waits for us
            pod = self.store.mutate("pods", self.namespace, name,
                                    lambda p: p["spec"].__setitem__("nodeName", self.node_name), bump_generation=False)
        except ApiError:
            return  # deleted before it could start
        try:
            argv = argv_of(container)
            env = {k: v for k, v in os.environ.items() if not k.startswith("KAMBDA_")}
            env.update(resolve_env(pod, container, lambda plural, n: self.store.get(plural, self.namespace, n)))
            env["HOSTNAME"] = name
            env.update(self.extra_env)
        except ContainerConfigError as exc:
            self._set_status(name, _waiting(container, "CreateContainerConfigError", str(exc)))
            return
        process = PodProcess(name, argv, env, self.log_dir / f"{name}.log")
        with self._lock:
            self._pods[name] = process
            self._history.append(process)
        workdir = Path(container["workingDir"]) if Path(container.get("workingDir") or "/nonexistent").is_dir() \
            else self.log_dir
        try:
            process.proc = await procs.spawn(argv, env=env, cwd=workdir, own_group=True, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT)
        except OSError as exc:
            process.returncode = 127
            process.done.set()
            self._set_status(name, _terminated(container, 127, f"StartError: {exc}"))
            return
        if process.deleted:  # deleted (or the kubelet stopped) while it was starting
            await self._terminate(process, 0)
        self._mark_running(process, container, ready=self.ready_when is None)
        await self._follow_output(process, container)
        process.returncode = await process.proc.wait()
        process.done.set()
        with self._lock:
            if self._pods.get(name) is process:
                del self._pods[name]
        if not process.deleted:
            self._set_status(name, _terminated(container, process.returncode, "Error" if process.returncode
                                               else "Completed"))

    async def _follow_output(self, process: PodProcess, container: Obj) -> None:
        """Copy the output to the pod's log until it closes, watching for ``ready_when``."""
        assert process.proc is not None and process.proc.stdout is not None
        pending = b""
        with open(process.log_path, "ab") as log:
            while chunk := await process.proc.stdout.read(65536):
                log.write(chunk)
                log.flush()
                if process.ready or self.ready_when is None:
                    continue
                *lines, pending = (pending + chunk).split(b"\n")
                if any(self.ready_when.search(line.decode(errors="replace")) for line in lines):
                    self._mark_running(process, container, ready=True)

    def _mark_running(self, process: PodProcess, container: Obj, ready: bool) -> None:
        process.ready = ready
        flag = "True" if ready else "False"
        stamp = now()
        status = {
            "phase": "Running", "hostIP": POD_IP, "podIP": POD_IP, "podIPs": [{"ip": POD_IP}], "startTime": stamp,
            "qosClass": "BestEffort",
            "conditions": [{"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": stamp}
                           for t, s in (("PodScheduled", "True"), ("Initialized", "True"),
                                        ("ContainersReady", flag), ("Ready", flag))],
            "containerStatuses": [{"name": container["name"], "image": container.get("image", ""),
                                   "imageID": "", "containerID": f"fakekube://{process.pid}", "ready": ready,
                                   "started": True, "restartCount": 0, "state": {"running": {"startedAt": stamp}}}],
        }
        if not process.deleted:
            self._set_status(process.pod, status)

    def _set_status(self, name: str, status: Obj) -> None:
        try:
            self.store.mutate("pods", self.namespace, name, lambda pod: pod.__setitem__("status", status))
        except ApiError:
            pass  # deleted meanwhile

    async def _terminate(self, process: PodProcess, grace: float) -> None:
        proc = process.proc
        if proc is None or proc.returncode is not None:
            return
        procs.kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            pass
        procs.kill_group(proc.pid, signal.SIGKILL)  # whatever is left of the group
        process.returncode = await proc.wait()
        process.done.set()

    async def _stop_all(self) -> None:
        with self._lock:
            running = list(self._pods.values())
        for process in running:
            process.deleted = True
        await asyncio.gather(*(self._terminate(p, self.max_grace) for p in running), return_exceptions=True)
        tasks = list(self._tasks)
        if tasks:  # they end once their process's output is closed; a stuck one is cancelled
            _, pending = await asyncio.wait(tasks, timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _waiting(container: Obj, reason: str, message: str) -> Obj:
    return {"phase": "Pending", "qosClass": "BestEffort",
            "containerStatuses": [{"name": container["name"], "image": container.get("image", ""), "imageID": "",
                                   "ready": False, "started": False, "restartCount": 0,
                                   "state": {"waiting": {"reason": reason, "message": message}}}]}


def _terminated(container: Obj, code: int, reason: str) -> Obj:
    stamp = now()
    return {"phase": "Failed" if code else "Succeeded", "hostIP": POD_IP, "podIP": POD_IP, "qosClass": "BestEffort",
            "conditions": [{"type": "Ready", "status": "False", "lastProbeTime": None, "lastTransitionTime": stamp,
                            "reason": "PodCompleted"}],
            "containerStatuses": [{"name": container["name"], "image": container.get("image", ""), "imageID": "",
                                   "ready": False, "started": False, "restartCount": 0,
                                   "state": {"terminated": {"exitCode": code, "reason": reason, "finishedAt": stamp}}}]}
