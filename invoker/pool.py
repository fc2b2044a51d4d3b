"""The environments of one function version on this invoker, and how work reaches them.

Each environment slot is a task: wait for a message, run it, reply, acknowledge, repeat. A slot
counts as free (one pull outstanding on the queue) from the moment it exists, so a cold start
pulls its message while the runtime process is still starting. A slot whose environment died is
given a fresh one: at once after a timeout or crash, lazily (on the next message) after a failed
initialisation, so broken code does not spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from invoker.environment import (
    NO_CREDENTIALS,
    TAIL_BYTES,
    Credentials,
    Environment,
    Outcome,
    error_body,
    function_environment,
    role_credentials,
)
from invoker.runtime_api import RuntimeApi
from invoker.runtimes import EntrypointError
from invoker.sandbox import Identity, Sandbox
from invoker.zygote import Zygote
from kambda import bus, logs
from kambda.bus import flow
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invocation_pb2 import Invocation, InvocationResult, LogBatch, LogRecord
from kambda.v1.invoker_pb2 import FunctionStats

log = logging.getLogger(__name__)

_env_ids = itertools.count(1)
#: Logs of finished runs go out together, at most this long after the first of them...
LOG_FLUSH_S = 0.1
#: ...or at once when they add up to this much (a NATS message stays well under max_payload).
LOG_BATCH_BYTES = 512 * 1024
#: A run still going this long before its start deadline tells its caller that it started.
START_NOTICE_LEAD_S = 1.0
#: Configuration fields that change how many environments run (or nothing in them), not what runs in them.
_SCALING_FIELDS = ("reserved_concurrency", "provisioned_concurrency", "provisioned_last_modified",
                   "max_environments", "revision_id", "last_modified", "state", "state_reason",
                   "state_reason_code", "last_update_status", "tags", "description", "policies",
                   "runtime_update_mode", "runtime_version_arn")


def _runtime_identity(config: FunctionConfig) -> bytes:
    """What an environment runs: two configurations equal here can share environments."""
    copy = FunctionConfig()
    copy.CopyFrom(config)
    for name in _SCALING_FIELDS:
        copy.ClearField(name)
    return copy.SerializeToString(deterministic=True)


@dataclass
class _Slot:
    config: FunctionConfig
    retiring: bool = False
    busy: bool = False
    #: Counted in the puller's free slots (a pull is outstanding on its behalf).
    free: bool = False
    #: Started for provisioned concurrency (AWS_LAMBDA_INITIALIZATION_TYPE tells the handler).
    provisioned: bool = False
    task: asyncio.Task[None] | None = None
    waiter: asyncio.Future[Msg | None] | None = None
    #: A message handed to this slot while it was not waiting (starting its environment, or
    #: between two messages): it runs it next.
    pending: Msg | None = None
    env: Environment | None = field(default=None, repr=False)
    #: The execution-role credentials its environment was started with.
    credentials: Credentials = NO_CREDENTIALS


class FunctionPool:
    def __init__(self, nc: NATS, config: FunctionConfig, api: RuntimeApi,
                 code_path: Callable[[str], Awaitable[Path]], work_dir: Path, region: str,
                 function_arn: str, on_change: Callable[[], None], zygote: Zygote | None = None,
                 channel: bool = True, sandbox: Sandbox | None = None, role_key: bytes = b"",
                 credentials: Callable[[FunctionConfig], Credentials] | None = None,
                 clock: Callable[[], float] = time.time, endpoint: str = "") -> None:
        """``credentials(config)``: an environment's execution-role credentials (Kubernetes: the ones its
        assignment brought); by default minted here with ``role_key`` (none without one). ``clock``: the
        time they expire by (unix seconds)."""
        self._nc = nc
        self._role_key = role_key
        self._credentials = credentials or self._mint
        self._clock = clock
        #: The gateway as functions reach it (their SDKs' endpoints), empty: none.
        self._endpoint = endpoint
        self.config = config
        self._api = api
        self._code_path = code_path
        self._work_dir = work_dir
        self._region = region
        self._arn = function_arn
        self._on_change = on_change
        self._zygote = zygote
        self._channel = channel
        self._sandbox = sandbox
        #: SnapStart zygotes, by the runtime identity of the configuration they initialised.
        self._snap_zygotes: dict[bytes, Zygote] = {}
        self.desired = 0
        self.cold_starts = 0
        self._logs: list[LogRecord] = []
        self._log_bytes = 0
        self._log_timer: asyncio.TimerHandle | None = None
        self._slots: list[_Slot] = []
        self._waiters: deque[_Slot] = deque()
        self._puller = bus.Puller(nc, bus.SYNC_STREAM, bus.consumer_name(config.name, config.version),
                                  self._on_message)

    async def start(self) -> None:
        await self._puller.start()

    def _mint(self, config: FunctionConfig) -> Credentials:
        return role_credentials(self._role_key, config, self._arn, self._clock())

    def _renew_due(self, slot: _Slot) -> bool:
        """Its environment's role credentials are half spent and newer ones are to be had."""
        if slot.credentials.renew_at > self._clock():
            return False
        return self._credentials(slot.config).expires > slot.credentials.expires

    @property
    def empty(self) -> bool:
        return not self._slots

    def code_in_use(self) -> set[str]:
        """The packages this pool runs or is about to (a retiring slot may still run older code)."""
        return {self.config.code_sha256} | {slot.config.code_sha256 for slot in self._slots}

    def stats(self) -> FunctionStats:
        alive = [s for s in self._slots if s.env is not None and s.env.alive]
        busy = sum(1 for s in self._slots if s.busy)
        return FunctionStats(function=self.config.name, version=self.config.version,
                             environments=len(alive), busy=busy, idle=len(alive) - busy,
                             cold_starts=self.cold_starts)

    async def apply(self, config: FunctionConfig, desired: int, provisioned: int = 0) -> None:
        if _runtime_identity(config) != _runtime_identity(self.config):
            # New code or configuration: every slot of the old one retires (busy ones after their
            # request), and new slots start with the new configuration.
            for slot in self._slots:
                await self._retire(slot)
            self.config = config
        self.desired = desired
        active = [s for s in self._slots if not s.retiring]
        warm = sum(1 for s in active if s.provisioned)
        for _ in range(desired - len(active)):
            slot = _Slot(config=self.config, free=True, provisioned=warm < provisioned)
            warm += slot.provisioned
            self._slots.append(slot)
            slot.task = asyncio.create_task(self._run(slot))
            await self._puller.add_free(1)
        if len(active) > desired:
            # Retire idle on-demand slots first, then the most recently started ones.
            victims = sorted(active, key=lambda s: (s.provisioned, s.busy, -self._slots.index(s))
                             )[: len(active) - desired]
            for slot in victims:
                await self._retire(slot)
        self._on_change()

    async def _retire(self, slot: _Slot) -> None:
        if slot.retiring:
            return
        slot.retiring = True
        if slot.waiter is not None and not slot.waiter.done():
            self._waiters.remove(slot)
            slot.waiter.set_result(None)
        if slot.free:
            slot.free = False
            await self._puller.add_free(-1)

    async def stop(self) -> None:
        for slot in list(self._slots):
            await self._retire(slot)
            if slot.task is not None:
                slot.task.cancel()
        await asyncio.gather(*(s.task for s in self._slots if s.task), return_exceptions=True)
        await self._puller.stop()
        await self._flush_logs()
        for snap in self._snap_zygotes.values():
            await snap.stop()
        self._snap_zygotes.clear()

    # -- work distribution -------------------------------------------------------------------

    async def _on_message(self, msg: Msg) -> None:
        """The puller counted one free slot less for ``msg``: bind it to one free slot now.

        The slot stops counting as free at once, not when its task next runs, so that a slot
        retired in between is not taken off the free count a second time (the count would drift
        below the slots that wait, and their queue would stop being pulled)."""
        while self._waiters:
            slot = self._waiters.popleft()
            if slot.waiter is not None and not slot.waiter.done():
                slot.free = False
                slot.waiter.set_result(msg)
                return
        for slot in self._slots:
            if slot.free:  # starting its environment, or between two messages (a waiting one took it above)
                slot.free = False
                slot.pending = msg
                return
        log.warning("no free environment of %s for a pulled message: given back", self.config.name)
        await bus.nak(self._nc, msg)

    async def _next_message(self, slot: _Slot) -> Msg | None:
        if slot.pending is not None:
            msg: Msg | None = slot.pending
            slot.pending = None
        else:
            slot.waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(slot)
            try:
                msg = await slot.waiter
            finally:
                slot.waiter = None
        return msg

    async def _free_again(self, slot: _Slot, msg: Msg | None = None) -> None:
        """The slot is done with a message: acknowledge it (if any) and count the slot free again."""
        slot.free = not slot.retiring
        if msg is None:
            if slot.free:
                await self._puller.add_free(1)
        else:
            await self._puller.done(msg, free_again=slot.free)

    # -- one slot ----------------------------------------------------------------------------

    async def _run(self, slot: _Slot) -> None:
        eager = True
        try:
            while not slot.retiring:
                if (slot.env is None or not slot.env.alive) and eager:
                    try:
                        await self._fresh_env(slot)
                    except EntrypointError:
                        eager = False  # reported to the next request, which tries again
                msg = await self._next_message(slot)
                if msg is None:
                    break
                outcome = await self._serve(slot, msg)
                dead, init_failed = (outcome.dead, outcome.init_failed) if outcome is not None else (False, False)
                msg = outcome = None  # an idle slot holds no payload (6 MB each, ten slots a function)
                if dead:
                    eager = not init_failed
                    if slot.env is not None:
                        await slot.env.stop()
                        slot.env = None
                        self._on_change()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("environment slot of %s failed", self.config.name)
        finally:
            if slot.free:
                slot.free = False
                await self._puller.add_free(-1)
            if slot.env is not None:
                await slot.env.stop()
                slot.env = None
            if slot in self._slots:
                self._slots.remove(slot)
            if slot.pending is not None:  # retired before it came to it: give it back at once
                await bus.nak(self._nc, slot.pending)
                slot.pending = None
            self._on_change()

    async def _fresh_env(self, slot: _Slot) -> None:
        if slot.env is not None:
            await slot.env.stop()
        code_dir = await self._code_path(slot.config.code_sha256)
        ident: Identity | None = None
        if self._sandbox is not None:
            ident = await asyncio.to_thread(self._sandbox.identity, slot.config.name)
            code_dir = await asyncio.to_thread(self._sandbox.code_dir, ident, code_dir)
        snap = await self._snap_zygote(slot.config, code_dir, ident)
        kind = "provisioned-concurrency" if slot.provisioned else "snap-start" if snap else "on-demand"
        slot.credentials = self._credentials(slot.config)
        env = Environment(f"{next(_env_ids):06x}", slot.config, code_dir, self._api, self._work_dir,
                          self._region, self._arn, zygote=snap or self._zygote, initialization_type=kind,
                          channel=self._channel, sandbox=self._sandbox, identity=ident,
                          credentials=slot.credentials.env, endpoint=self._endpoint)
        try:
            await env.spawn()
        except BaseException:
            await env.stop()
            raise
        slot.env = env
        self._on_change()

    async def _snap_zygote(self, config: FunctionConfig, code_dir: Path, ident: Identity | None) -> Zygote | None:
        """The SnapStart zygote of this configuration (its module initialised once), if it has one."""
        if config.snap_start != "PublishedVersions" or not config.runtime.startswith("python3"):
            return None
        identity = _runtime_identity(config)
        for old, zygote in list(self._snap_zygotes.items()):  # zygotes of older code, now unused
            if old != identity and zygote.children == 0:
                await zygote.stop()
                del self._snap_zygotes[old]
        if identity not in self._snap_zygotes:
            preload: dict[str, object] = {"cwd": str(code_dir), "handler": config.handler}
            if self._sandbox is not None and ident is not None:
                # It runs the function's initialisation: as the function, never as root.
                tmp = await asyncio.to_thread(self._sandbox.tmp_dir, ident, "snap-")
                python = self._sandbox.python
                if python is None:
                    return None  # the environments report that no interpreter can run
                confine: dict[str, object] | None = self._sandbox.confinement(ident)
            else:
                tmp = self._work_dir / f"snap-{config.name}"
                tmp.mkdir(parents=True, exist_ok=True)
                python, confine = sys.executable, None
            preload["env"] = function_environment(config, code_dir, self._region, tmp=str(tmp),
                                                  initialization_type="snap-start", log_stream="", runtime_api="",
                                                  python=python, endpoint=self._endpoint,
                                                  credentials=self._credentials(config).env)
            self._snap_zygotes[identity] = Zygote(preload=preload, python=python, confine=confine)
        return self._snap_zygotes[identity]

    async def _serve(self, slot: _Slot, msg: Msg) -> Outcome | None:
        try:
            inv = Invocation.FromString(msg.data)
        except Exception:
            log.warning("dropping an undecodable message on %s", msg.subject)
            await bus.term(self._nc, msg)
            await self._free_again(slot)
            return None
        if inv.start_deadline_ms and time.time() * 1000 > inv.start_deadline_ms:
            # The caller has given up: never run late.
            await bus.term(self._nc, msg)
            await self._free_again(slot)
            return None
        slot.busy = True
        self._on_change()
        logs.request_id.set(inv.request_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("run started", extra={"event": "run.started", "function": self.config.name})
        notice = self._announce_start(inv)
        try:
            if slot.env is not None and self._renew_due(slot):
                await slot.env.stop()
                slot.env = None
            if slot.env is None or not slot.env.alive:
                try:
                    await self._fresh_env(slot)
                except EntrypointError as exc:
                    outcome = Outcome(error_body("Runtime.InvalidEntrypoint",
                                                 f"RequestId: {inv.request_id} Error: {exc}"),
                                      function_error=True, dead=True, init_failed=True)
                    result = InvocationResult(request_id=inv.request_id, payload=outcome.payload,
                                              function_error="Unhandled", executed_version=slot.config.version)
                    notice.cancel()
                    await self._reply(inv, result)
                    await self._free_again(slot, msg)
                    return outcome
            assert slot.env is not None
            env = slot.env
            outcome, duration_ms = await env.invoke(inv)
            cold = env.cold
            output = env.take_output()
            memory = env.max_memory_mb()
        except Exception as exc:
            log.exception("cannot run %s", self.config.name)
            result = InvocationResult(request_id=inv.request_id, error_code="ServiceException",
                                      error_message=f"The environment could not be started: {exc}")
            await self._reply(inv, result)
            await self._free_again(slot, msg)
            return Outcome(b"", dead=True)
        finally:
            slot.busy = False
            notice.cancel()  # the result tells the caller as much
        if cold:
            self.cold_starts += 1
        text = self._framed_log(inv, output, duration_ms, memory, env.init_duration_ms if cold else 0.0)
        result = InvocationResult(
            request_id=inv.request_id, payload=outcome.payload,
            function_error="Unhandled" if outcome.function_error else "",
            executed_version=slot.config.version, cold_start=cold, duration_ms=duration_ms,
            init_duration_ms=env.init_duration_ms if cold else 0.0,
            log_tail=text.encode()[-TAIL_BYTES:] if inv.log_tail else b"",
        )
        await self._reply(inv, result)
        await self._free_again(slot, msg)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("run finished in %.2f ms%s", duration_ms, " with a function error" if outcome.function_error
                      else "", extra={"event": "run.finished", "function": self.config.name})
        await self._publish_log(inv, env, text)
        self._on_change()
        return outcome

    def _announce_start(self, inv: Invocation) -> asyncio.Handle:
        """Tell the caller that its run started, so that it does not answer 429 at the start deadline
        while the run goes on. Only a run still going shortly before that deadline needs to say so
        (the result of a shorter one comes first): the notice waits until then, and most runs
        cancel it by finishing."""
        loop = asyncio.get_running_loop()
        if not (inv.notify_start and inv.reply_to):
            return loop.call_soon(lambda: None)
        lead_ms = START_NOTICE_LEAD_S * 1000
        delay = max(0.0, (inv.start_deadline_ms - lead_ms) / 1000 - time.time()) if inv.start_deadline_ms else 0.0
        return loop.call_later(delay, lambda: asyncio.ensure_future(
            self._nc.publish(inv.reply_to, b"", headers={"Kambda-Started": "1"})))

    async def _reply(self, inv: Invocation, result: InvocationResult) -> None:
        """Send the result; a large one waits until the gateway fetches it (kambda/bus/flow.py), and
        this slot takes no new work meanwhile."""
        if inv.reply_to:
            await flow.send(self._nc, inv.reply_to, result.SerializeToString())

    def _framed_log(self, inv: Invocation, output: bytes, duration_ms: float, memory_mb: int,
                    init_ms: float) -> str:
        rid = inv.request_id
        report = (f"REPORT RequestId: {rid}\tDuration: {duration_ms:.2f} ms\t"
                  f"Billed Duration: {max(1, math.ceil(duration_ms))} ms\t"
                  f"Memory Size: {self.config.memory_size} MB\tMax Memory Used: {memory_mb} MB")
        if init_ms:
            report += f"\tInit Duration: {init_ms:.2f} ms"
        body = output.decode("utf-8", errors="replace")
        if body and not body.endswith("\n"):
            body += "\n"
        return f"START RequestId: {rid} Version: {inv.version or self.config.version}\n{body}" \
               f"END RequestId: {rid}\n{report}\n"

    async def _publish_log(self, inv: Invocation, env: Environment, text: str) -> None:
        """Queue the run's log; the queue goes out as one message at most LOG_FLUSH_S later."""
        self._logs.append(LogRecord(function=self.config.name, version=self.config.version,
                                    request_id=inv.request_id, time_ms=int(time.time() * 1000),
                                    environment_id=env.log_stream, text=text))
        self._log_bytes += len(text)
        if self._log_bytes > LOG_BATCH_BYTES:
            await self._flush_logs()
        elif self._log_timer is None:
            self._log_timer = asyncio.get_running_loop().call_later(
                LOG_FLUSH_S, lambda: asyncio.ensure_future(self._flush_logs()))

    async def _flush_logs(self) -> None:
        if self._log_timer is not None:
            self._log_timer.cancel()
            self._log_timer = None
        if not self._logs:
            return
        batch = LogBatch(records=self._logs)
        self._logs, self._log_bytes = [], 0
        with contextlib.suppress(Exception):
            await self._nc.publish(bus.logs_subject(self.config.name), batch.SerializeToString())
