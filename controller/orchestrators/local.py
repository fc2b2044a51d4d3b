"""The local orchestrator: invoker processes on this machine (the embedded default).

It starts one invoker process when the controller starts, so a cold start pays for an execution
environment only, never for an invoker. Desired state lives here and is re-sent whenever the
invoker (re)starts and says hello; an invoker that dies is restarted with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from kambda import bus, procs
from kambda.backoff import PROCESS_RESTART
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invoker_pb2 import Assignment, AssignmentAck, FunctionStats

log = logging.getLogger(__name__)



class LocalOrchestrator:
    def __init__(self, nc: NATS, nats_url: str, state_dir: Path, environ: Mapping[str, str],
                 invoker_id: str = "local-0", nats_creds: str = "") -> None:
        self._nc = nc
        self._nats_creds = nats_creds
        self._nats_url = nats_url
        self._state_dir = state_dir
        self._environ = environ
        self.invoker_id = invoker_id
        self._desired: dict[tuple[str, str], Assignment] = {}
        self._stats: dict[tuple[str, str], FunctionStats] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._sub: object | None = None
        self._send_lock = asyncio.Lock()

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(bus.ALL_STATS, cb=self._on_stats)
        self._supervisor = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._proc is not None:
            await procs.stop(self._proc, 8.0)
        if self._sub is not None:
            await self._sub.unsubscribe()  # type: ignore[attr-defined]

    def stats(self, function: str, version: str) -> FunctionStats:
        return self._stats.get((function, version)) or FunctionStats(function=function, version=version)

    async def current(self, function: str, version: str) -> FunctionStats:
        """The invoker's answer to the version's assignment sent again (it changes nothing there): its count
        now, not as of its last report."""
        await self._send_desired((function, version))
        return self.stats(function, version)

    async def apply(self, config: FunctionConfig, desired: int) -> None:
        key = (config.name, config.version)
        assignment = Assignment(config=config, desired=desired,
                                provisioned=min(desired, config.provisioned_concurrency))
        if desired == 0:
            self._desired.pop(key, None)
        else:
            self._desired[key] = assignment
        await self._send(assignment)

    async def forget(self, function: str, version: str) -> None:
        self._desired.pop((function, version), None)
        await self._send(Assignment(config=FunctionConfig(name=function, version=version), desired=0, deleted=True))

    async def _send(self, assignment: Assignment) -> None:
        async with self._send_lock:
            await self._request(assignment)

    async def _send_desired(self, key: tuple[str, str]) -> None:
        """Send again what is desired for ``key`` when the lock is ours: read before it, a newer assignment
        sent meanwhile would be undone."""
        async with self._send_lock:
            assignment = self._desired.get(key)
            if assignment is not None:
                await self._request(assignment)

    async def _request(self, assignment: Assignment) -> None:
        try:
            reply = await self._nc.request(bus.assign_subject(self.invoker_id),
                                           assignment.SerializeToString(), timeout=10)
        except (NoRespondersError, NatsTimeoutError) as exc:
            # The invoker is (re)starting: its hello makes us send the desired state again.
            log.info("invoker %s not reachable (%s); assignment kept", self.invoker_id, type(exc).__name__)
            return
        ack = AssignmentAck.FromString(reply.data)
        self._stats[(ack.stats.function, ack.stats.version)] = ack.stats

    async def _on_stats(self, msg: Msg) -> None:
        stats = bus.stats_of(msg)
        if stats is None or stats.invoker_id != self.invoker_id:
            return
        # Each report is complete: a version it does not mention has no environment left.
        self._stats = {(fs.function, fs.version): fs for fs in stats.functions}
        if stats.hello:
            asyncio.create_task(self._resend_all())

    async def _resend_all(self) -> None:
        for key in list(self._desired):
            await self._send_desired(key)

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            env = {
                **self._environ,
                "KAMBDA_NATS_URL": self._nats_url,
                "KAMBDA_INVOKER_ID": self.invoker_id,
                # Its own identity, never the controller's (which the environment above may hold).
                "KAMBDA_NATS_CREDS": self._nats_creds,
                "KAMBDA_NATS_INVOKER_CREDS": "",
                "KAMBDA_CONTROLLER_TOKEN_FILE": "",  # an invoker never calls the controller
                "KAMBDA_STATE_DIR": str(self._state_dir),
            }
            self._proc = await procs.spawn(procs.python_argv("invoker"), env=env)
            started = asyncio.get_running_loop().time()
            code = await self._proc.wait()
            if self._stopping:
                return
            self._stats.clear()
            ran_for = asyncio.get_running_loop().time() - started
            failures = 0 if ran_for > 30 else failures + 1
            delay = PROCESS_RESTART.delay(failures)
            log.error("invoker %s exited with %s after %.1f s; restarting in %.1f s",
                      self.invoker_id, code, ran_for, delay)
            await asyncio.sleep(delay)


def default_environ() -> dict[str, str]:
    """The part of the controller's environment an invoker inherits (settings, not secrets)."""
    return {k: v for k, v in os.environ.items() if k.startswith(("KAMBDA_", "PATH", "HOME", "LANG"))}
