"""The invoker's top level: assignments from the controller become function pools.

The controller says, per function version, "hold N environments of this configuration" (an
Assignment on ``kambda.invoker.<id>.assign``); the host keeps one FunctionPool per version and
reports what runs on its stats subject (``kambda.invokers.stats.<id>``) whenever it changes, and on a slow heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from invoker import codecache
from invoker.codecache import CodeCache
from invoker.environment import NO_CREDENTIALS, Credentials, session_env
from invoker.pool import FunctionPool
from invoker.runtime_api import RuntimeApi
from invoker.sandbox import Sandbox
from invoker.settings import InvokerSettings
from invoker.zygote import Zygote
from kambda import bus
from kambda.aws import roles
from kambda.bus import callout
from kambda.names import Arns
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invoker_pb2 import Assignment, AssignmentAck, FunctionStats, InvokerStats, RoleCredentials

log = logging.getLogger(__name__)


def _credentials(assigned: RoleCredentials, now: float) -> Credentials:
    return Credentials(session_env(assigned.access_key_id, assigned.secret_access_key, assigned.session_token),
                       issued=now, expires=float(assigned.expires))

HEARTBEAT_S = 5.0


class InvokerHost:
    def __init__(self, nc: NATS, settings: InvokerSettings, assign_key: str = "") -> None:
        self._nc = nc
        self._assign_key = assign_key
        self._settings = settings
        self._arns = Arns(settings.region, settings.account)
        self._api = RuntimeApi()
        self._code = CodeCache(codecache.from_bus(nc.jetstream()), settings.code_dir)
        #: Kubernetes: the credential each code package's last assignment brought, to read it with,
        #: and the execution-role credentials of each version (the controller mints them).
        self._code_tokens: dict[str, str] = {}
        self._roles: dict[tuple[str, str], Credentials] = {}
        self._pools: dict[tuple[str, str], FunctionPool] = {}
        self._sandbox = Sandbox(settings.sandbox, settings.state_dir) if settings.sandbox.enabled else None
        self._role_key = roles.read_key(settings.role_key_file)
        self._zygote: Zygote | None = None
        self._lock = asyncio.Lock()
        self._sub: object | None = None
        self._stats_due = asyncio.Event()
        self._reporter: asyncio.Task[None] | None = None
        #: The package each function version was last assigned, and packages a newer one replaced.
        self._code_of: dict[tuple[str, str], str] = {}
        self._superseded: set[str] = set()
        #: Versions whose pool has a NATS connection of its own (Kubernetes: per-function credentials).
        self._own: dict[tuple[str, str], NATS] = {}

    async def start(self) -> None:
        self._settings.work_dir.mkdir(parents=True, exist_ok=True)
        watch = bus.watch_of(self._nc)
        if watch is not None:  # the next stats (sent once the connection is back) carry the count
            watch.listeners.append(lambda reason: self._stats_due.set())
        if self._sandbox is not None:
            await asyncio.to_thread(self._sandbox.prepare)
        else:
            log.warning("sandbox off: functions are trusted code: environments run as this invoker's user "
                        "(uid %d) and reach everything it can", os.geteuid())
        if self._settings.zygote:
            python = self._sandbox.python if self._sandbox is not None else sys.executable
            self._zygote = Zygote(python=python) if python else None
        await self._api.start()
        self._sub = await self._nc.subscribe(bus.assign_subject(self._settings.invoker_id, self._assign_key),
                                             cb=self._on_assign)
        self._reporter = asyncio.create_task(self._report())
        if self._zygote is not None:
            await self._zygote.start()
        await self._publish_stats(hello=True)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()  # type: ignore[attr-defined]
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
        await asyncio.gather(*(pool.stop() for pool in self._pools.values()), return_exceptions=True)
        self._pools.clear()
        for key in list(self._own):
            await self._close_own(key)
        if self._zygote is not None:
            await self._zygote.stop()
        await self._api.stop()

    async def drain(self, timeout: float) -> None:
        """Take no new work and let running requests finish, for at most ``timeout`` seconds.

        On Kubernetes a pod is deleted whenever its Deployment scales down, busy or not: the
        SIGTERM it gets must not cost the request it is running."""
        async with self._lock:
            for pool in self._pools.values():
                await pool.apply(pool.config, 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(not pool.empty for pool in self._pools.values()) and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def _on_assign(self, msg: Msg) -> None:
        try:
            assignment = Assignment.FromString(msg.data)
        except Exception:
            log.warning("undecodable assignment ignored")
            return
        config = assignment.config
        key = (config.name, config.version)
        async with self._lock:
            self._note_code(key, config.code_sha256, assignment.deleted)
            if assignment.code_token:
                self._code_tokens[config.code_sha256] = assignment.code_token
            if assignment.HasField("role_credentials"):
                self._roles[key] = _credentials(assignment.role_credentials, time.time())
            pool = self._pools.get(key)
            if pool is not None and assignment.deleted:
                config = pool.config  # a deleted version's assignment names it and nothing more
            if pool is None and assignment.desired > 0:
                nc, code = await self._connection_of(key, assignment.nats_token)
                pool = FunctionPool(nc, config, self._api, code.path, self._settings.work_dir,
                                    self._settings.region, self._arns.function(config.name),
                                    self._stats_due.set, self._zygote,
                                    channel=self._settings.runtime_channel == "pipe", sandbox=self._sandbox,
                                    role_key=self._role_key, endpoint=self._settings.endpoint_url,
                                    credentials=self._assigned_credentials(key) if key in self._roles else None)
                await pool.start()
                self._pools[key] = pool
            if pool is not None:
                await pool.apply(config, assignment.desired, assignment.provisioned)
        stats = pool.stats() if pool is not None else FunctionStats(function=key[0], version=key[1])
        if msg.reply:
            ack = AssignmentAck(invoker_id=self._settings.invoker_id, stats=stats)
            await self._nc.publish(msg.reply, ack.SerializeToString())

    def _assigned_credentials(self, key: tuple[str, str]) -> Callable[[FunctionConfig], Credentials]:
        def latest(config: FunctionConfig) -> Credentials:
            return self._roles.get(key, NO_CREDENTIALS)
        return latest

    async def _connection_of(self, key: tuple[str, str], token: str) -> tuple[NATS, CodeCache]:
        """The connection a version's pool uses: its own, logged in with the version's credential
        (kambda/bus/callout.py), when the assignment brings one; else this invoker's."""
        if not token:
            return self._nc, self._code
        nc = await bus.connect(self._settings.nats_url, f"kambda-invoker-{self._settings.invoker_id}-{key[0]}",
                               token=token, inbox_prefix=callout.inbox_prefix(*key))
        self._own[key] = nc
        fetch = codecache.with_code_tokens(self._settings.nats_url, f"kambda-invoker-{self._settings.invoker_id}-code",
                                           self._code_tokens)
        return nc, CodeCache(fetch, self._settings.code_dir)

    async def _close_own(self, key: tuple[str, str]) -> None:
        nc = self._own.pop(key, None)
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.drain()

    def _note_code(self, key: tuple[str, str], sha256_hex: str, deleted: bool) -> None:
        """Remember the package a version runs; one it runs no more (replaced, or the version
        deleted) is dropped from disk by _reap once no environment runs it."""
        old = self._code_of.pop(key, None)
        if not deleted:
            self._code_of[key] = sha256_hex
        if old is not None and old != self._code_of.get(key):
            self._superseded.add(old)
            self._stats_due.set()

    async def _report(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stats_due.wait(), HEARTBEAT_S)
            self._stats_due.clear()
            await self._reap()
            await self._publish_stats()
            await asyncio.sleep(0.05)  # coalesce bursts of changes into one report

    async def _reap(self) -> None:
        """Drop pools that were scaled to zero and have no environment left, and superseded code
        packages that nothing runs any more (a function's current package stays, for its next cold
        start, even at zero)."""
        async with self._lock:
            for key, pool in list(self._pools.items()):
                if pool.desired == 0 and pool.empty:
                    await pool.stop()
                    del self._pools[key]
                    self._roles.pop(key, None)
                    await self._close_own(key)
            if not self._superseded:
                return
            in_use = set(self._code_of.values()).union(*(pool.code_in_use() for pool in self._pools.values()))
            unused = self._superseded - in_use
            self._superseded -= unused
            for sha in unused:
                self._code_tokens.pop(sha, None)
                await asyncio.to_thread(self._code.drop, sha)
                if self._sandbox is not None:
                    await asyncio.to_thread(self._sandbox.drop_code, sha)
                log.info("dropped code package %s: superseded and no longer running", sha[:12])

    async def _publish_stats(self, hello: bool = False) -> None:
        watch = bus.watch_of(self._nc)
        stats = InvokerStats(invoker_id=self._settings.invoker_id, time_ms=int(time.time() * 1000),
                             assign_key=self._assign_key,
                             hello=hello, functions=[p.stats() for p in self._pools.values()],
                             nats_disconnects=watch.disconnects if watch is not None else 0)
        with contextlib.suppress(Exception):
            await self._nc.publish(bus.stats_subject(self._settings.invoker_id, self._assign_key),
                                   stats.SerializeToString())
