"""The durable executor of STANDARD executions, in every worker replica (and EXPRESS ones started without waiting).

Work: every message on ``kambda.sfn.work.<execution>`` (stream KAMBDA_SFN_WORK, one durable consumer
``sfn-executor`` shared by every replica, so executions are split between them) says that an execution needs a
step: ``start``, ``timer`` (a Wait state's end, a retry's interval, a task's timeout or heartbeat check: the
message is given back with a delay until it is due, which makes it a durable timer that survives any restart),
or ``wake`` (a task token answered, a child execution closed). The replica that takes one runs the execution:
it reads the history, replays it (workflows/interpreter.py finds each step's recorded events by key) and goes on
from the first step not recorded, appending compare-and-set (workflows/history.py). It holds the messages that
woke it (in-progress acks) while it runs; when the run finishes, or every branch of it waits on a timer or a
callback (nothing left in progress), the run ends and the messages are acknowledged: what it waits for is on the
work stream already. A replica that dies leaves its messages unacknowledged; they are redelivered within
``ACK_WAIT_S`` to another one, which replays and resumes. A run that finds another writer's events (its append
fails) stops and gives its messages back, to be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import CollectorRegistry, Counter, Histogram

from kambda import bus
from workflows import executions, express, history, language, tasks
from workflows.history import DurableJournal, Superseded
from workflows.interpreter import Interpreter
from workflows.lambdas import DurableLambda
from workflows.language import Machine, StatesError
from workflows.records import Records
from workflows.sdk import AwsSdk
from workflows.services import Closer, Services

log = logging.getLogger(__name__)

ACK_WAIT_S = 3.0
IN_PROGRESS_EVERY_S = 1.0
#: How long a run waits, with nothing in progress, before it is considered idle and ends.
IDLE_CHECK_S = 0.02
#: Timers due this soon are slept in memory instead of set on the stream.
SHORT_SLEEP_S = 0.05
TERMINAL = ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut")


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.started = Counter("kambda_sfn_executions_started", "Step Functions executions started.",
                               ["state_machine"], registry=registry)
        self.closed = Counter("kambda_sfn_executions_closed", "Step Functions executions closed, by status "
                              "(SUCCEEDED, FAILED, TIMED_OUT, ABORTED).", ["state_machine", "status"],
                              registry=registry)
        self.transitions = Counter("kambda_sfn_state_transitions", "States entered.", ["state_machine"],
                                   registry=registry)
        self.duration = Histogram("kambda_sfn_execution_duration_seconds", "Execution duration, start to close.",
                                  ["state_machine"], registry=registry,
                                  buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600, 86400))
        self.resumed = Counter("kambda_sfn_runs_replayed", "Runs of an execution that replayed its history.",
                               registry=registry)


def work(kind: str, execution: str, record: str, **fields: Any) -> bytes:
    return orjson.dumps({"k": kind, "e": execution, "r": record, **fields})


class Run:
    """One execution being run by this replica: its journal, the messages it holds, what it waits for."""

    def __init__(self, executor: Executor, execution: str, record_key: str) -> None:
        self.executor = executor
        self.execution = execution
        self.record_key = record_key
        self.msgs: list[Msg] = []
        #: Wake-ups that came for keys this run has not reached (or came while replaying).
        self.facts: dict[str, Any] = {}
        self.wakers: dict[str, asyncio.Future[Any]] = {}
        self.busy_count = 0
        self.blocked = 0
        self.progress = 0
        self.journal: DurableJournal | None = None
        self.task: asyncio.Task[None] | None = None
        self.clock: Callable[[], float] = executor.clock
        self.services: Services | None = None

    # -- the Runtime the interpreter sees --------------------------------------------------------------------------

    async def flush(self) -> None:
        assert self.journal is not None
        async with self.busy():
            await self.journal.flush()

    @contextlib.asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        self.busy_count += 1
        self.progress += 1
        try:
            yield
        finally:
            self.busy_count -= 1
            self.progress += 1

    async def sleep_until(self, key: str, due: float) -> None:
        left = due - self.clock()
        if left <= 0:
            return
        if left < SHORT_SLEEP_S:
            async with self.busy():
                await asyncio.sleep(left)
            return
        await self.flush()
        async with self.busy():
            await self.executor.set_timer(self.execution, self.record_key, key, due)
        while self.clock() < due:
            await self.block([key])

    async def block(self, keys: list[str]) -> tuple[str, Any]:
        """Wait for one of ``keys`` to be woken (a timer due, a token answered): (key, what came)."""
        for key in keys:
            if key in self.facts:
                return key, self.facts.pop(key)
        future: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        for key in keys:
            self.wakers[key] = future  # type: ignore[assignment]
        self.blocked += 1
        self.progress += 1
        try:
            return await future
        finally:
            self.blocked -= 1
            self.progress += 1
            for key in keys:
                if self.wakers.get(key) is future:
                    del self.wakers[key]

    def wake(self, key: str, value: Any) -> None:
        future = self.wakers.get(key)
        if future is not None and not future.done():
            future.set_result((key, value))
        else:
            self.facts[key] = value

    # -- holding messages -----------------------------------------------------------------------------------------

    async def keep_alive(self) -> None:
        while True:
            await asyncio.sleep(IN_PROGRESS_EVERY_S)
            for msg in list(self.msgs):
                with contextlib.suppress(Exception):
                    await self.executor.nc.publish(msg.reply, b"+WPI")

    async def settle(self, how: bytes) -> None:
        msgs, self.msgs = self.msgs, []
        for msg in msgs:
            with contextlib.suppress(Exception):
                await self.executor.nc.publish(msg.reply, how)

    async def idle(self) -> None:
        """Return once the run has nothing in progress and at least one branch waits (checked twice)."""
        seen = -1
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            quiet = self.busy_count == 0 and self.blocked > 0
            if quiet and seen == self.progress:
                return
            seen = self.progress if quiet else -1


class Executor:
    def __init__(self, nc: NATS, records: Records, lambdas: DurableLambda, call_lambda: express.CallLambda,
                 closer: Closer, metrics: Metrics, concurrency: int = 256,
                 clock: Callable[[], float] = time.time, sdk: AwsSdk | None = None) -> None:
        self.nc = nc
        #: The AWS SDK integrations' caller (None: the platform gave no endpoint for them).
        self.sdk = sdk
        self.call_lambda = call_lambda
        self.js = nc.jetstream()
        self.records = records
        self.lambdas = lambdas
        self.closer = closer
        self.metrics = metrics
        self.clock = clock
        self._concurrency = concurrency
        self._puller = bus.Puller(nc, bus.SFN_WORK_STREAM, bus.SFN_EXECUTOR, self._on_message)
        self.runs: dict[str, Run] = {}
        self._machines: dict[str, Machine] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.js.add_consumer(bus.SFN_WORK_STREAM, ConsumerConfig(
            durable_name=bus.SFN_EXECUTOR, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
            max_ack_pending=1_000_000, max_deliver=-1, max_waiting=4096))
        await self._puller.start()
        await self._puller.add_free(self._concurrency)

    async def stop(self) -> None:
        await self._puller.stop()
        for run in list(self.runs.values()):
            if run.task is not None:
                run.task.cancel()
        await asyncio.gather(*[r.task for r in self.runs.values() if r.task], return_exceptions=True)

    async def set_timer(self, execution: str, record: str, key: str, due: float) -> None:
        msg_id = f"{execution}:t:{hashlib.sha1(f'{key}@{due}'.encode()).hexdigest()[:20]}"
        await self.js.publish(bus.sfn_work_subject(execution), work("timer", execution, record, key=key, due=due),
                              headers={"Nats-Msg-Id": msg_id}, timeout=10)

    # -- messages -------------------------------------------------------------------------------------------------

    async def _on_message(self, msg: Msg) -> None:
        try:
            body = orjson.loads(msg.data)
            execution, record = body["e"], body["r"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await bus.term(self.nc, msg)
            await self._puller.add_free(1)
            return
        due = body.get("due")
        if isinstance(due, int | float) and due > self.clock():
            await bus.nak_after(self.nc, msg, due - self.clock())
            await self._puller.add_free(1)
            return
        await self._puller.add_free(1)  # the message is the run's to settle now
        if body.get("k") == "express":
            task = asyncio.create_task(self._express(msg, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        run = self.runs.get(execution)
        if run is not None and run.task is not None and not run.task.done():
            run.msgs.append(msg)
            self._wake(run, body)
            return
        run = Run(self, execution, record)
        run.msgs.append(msg)
        self._wake(run, body)
        self.runs[execution] = run
        run.task = asyncio.create_task(self._run(run))

    async def _express(self, msg: Msg, body: dict[str, Any]) -> None:
        """An EXPRESS execution started without waiting: run in memory, acknowledged once it ends (at least
        once: a replica that dies meanwhile leaves it to another)."""
        keep = asyncio.create_task(_in_progress(self.nc, msg))
        how = b"+ACK"
        try:
            machine = executions.machine_name(body["machine"])
            self.metrics.started.labels(machine).inc()
            result = await express.run(self.js, self.call_lambda, body["definition"], body["arn"], body["machine"],
                                       body["name"], body["input"], body.get("roleArn", ""))
            self.metrics.closed.labels(machine, result["status"]).inc()
            self.metrics.duration.labels(machine).observe(result["stopDate"] - result["startDate"])
        except asyncio.CancelledError:
            how = b"-NAK"
        except Exception:
            log.exception("express execution %s failed to run", body.get("arn"))
            how = b"-NAK " + orjson.dumps({"delay": int(1e9)})
        finally:
            keep.cancel()
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, how)

    def _wake(self, run: Run, body: dict[str, Any]) -> None:
        if body.get("k") in ("timer", "wake") and isinstance(body.get("key"), str):
            run.wake(body["key"], body.get("value"))

    async def _run(self, run: Run) -> None:
        keep_alive = asyncio.create_task(run.keep_alive())
        how = b"+ACK"
        try:
            await self._execute(run)
        except Superseded:
            log.info("execution %s was advanced elsewhere; replaying", run.execution)
            how = b"-NAK " + orjson.dumps({"delay": int(0.05e9)})
        except asyncio.CancelledError:
            how = b"-NAK"
        except Exception:
            log.exception("execution %s failed to run; trying again", run.execution)
            how = b"-NAK " + orjson.dumps({"delay": int(1e9)})
        finally:
            keep_alive.cancel()
            if self.runs.get(run.execution) is run:
                del self.runs[run.execution]
            await run.settle(how)

    async def _execute(self, run: Run) -> None:
        record, _ = await self.records.executions.get(run.record_key)
        if record is None:
            log.warning("no record of execution %s: its work is dropped", run.execution)
            return
        events, last_seq = await history.read(self.nc, run.execution)
        if not events:
            log.warning("execution %s has no history yet", run.execution)
            return
        if events[-1].type in TERMINAL:
            await self.closer.closed(record, events)  # the close may not have been told before a crash
            return
        machine_name = record["stateMachineArn"].rsplit(":", 1)[-1]
        if len(events) == 1:
            self.metrics.started.labels(machine_name).inc()
            await self.closer.started(record)
        else:
            self.metrics.resumed.inc()
        run.journal = DurableJournal(self.nc, run.execution, events, last_seq, self.clock)
        run.services = Services(self, run, record)
        machine = self._machine(record["definition"])
        context = context_of(record)
        interpreter = Interpreter(run, run.execution, context, tasks.run)  # type: ignore[arg-type]
        body = asyncio.ensure_future(interpreter.run(machine, orjson.loads(record["input"]), events[0]))
        idle = asyncio.ensure_future(run.idle())
        try:
            await asyncio.wait({body, idle}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.metrics.transitions.labels(machine_name).inc(interpreter.transitions)
            if not body.done():
                body.cancel()
                await asyncio.gather(body, return_exceptions=True)
                idle.cancel()
                await asyncio.gather(idle, return_exceptions=True)
        if body.cancelled():
            return  # every branch waits on the stream: the run ends here
        idle.cancel()
        status, output, error, cause = body.result()
        await self.closer.closed(record, run.journal.events)

    def _machine(self, definition: str) -> Machine:
        machine = self._machines.get(definition)
        if machine is None:
            machine = language.parse(definition)
            if len(self._machines) > 1000:
                self._machines.clear()
            self._machines[definition] = machine
        return machine


async def _in_progress(nc: NATS, msg: Msg) -> None:
    while True:
        await asyncio.sleep(IN_PROGRESS_EVERY_S)
        with contextlib.suppress(Exception):
            await nc.publish(msg.reply, b"+WPI")


def context_of(record: dict[str, Any]) -> dict[str, Any]:
    """``$$.Execution`` and ``$$.StateMachine`` of an execution record."""
    machine_arn = record["stateMachineArn"]
    return {
        "Execution": {"Id": record["executionArn"], "Name": record["name"], "Input": orjson.loads(record["input"]),
                      "StartTime": record["startIso"], "RoleArn": record.get("roleArn", ""),
                      "RedriveCount": record.get("redriveCount", 0)},
        "StateMachine": {"Id": machine_arn, "Name": machine_arn.rsplit(":", 1)[-1]},
    }


__all__ = ["Executor", "Metrics", "Run", "StatesError", "context_of", "work"]
