"""What a durable run's tasks reach (workflows/tasks.py's ``Services``), and what is told when an execution
starts and closes (:class:`Closer`).

Waiting on a task token (``.waitForTaskToken``, activities): the token's record is written to the tokens bucket
(SendTaskSuccess/Failure/Heartbeat find it there), the task's timeout and heartbeat are durable timers on the work
stream, and the run blocks; the answer comes as a ``wake`` message with the task's key. A heartbeat timer that
comes due reads the token's last heartbeat and either times the task out (``States.HeartbeatTimeout``) or sets
itself again after that heartbeat.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from nats.aio.client import Client as NATS

from kambda import bus
from kambda.names import Arns
from workflows import executions
from workflows.history import Event
from workflows.integrations import http_call, put_events, sdk_call
from workflows.language import StatesError
from workflows.records import Records, execution_id, name_key, token_key
from workflows.tasks import LambdaResult

if TYPE_CHECKING:
    from workflows.executor import Executor, Run

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"


class Closer:
    """Tells the world that an execution started or closed: its record, EventBridge, metrics, its parent."""

    def __init__(self, nc: NATS, records: Records, arns: Arns, metrics: Any = None) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._records = records
        self._arns = arns
        self.metrics = metrics

    async def started(self, record: dict[str, Any]) -> None:
        await self._tell(record)

    async def closed(self, record: dict[str, Any], events: list[Event]) -> None:
        closed, changed = await executions.close(self._nc, self._records, record, events[-1])
        if not changed:
            return
        name = executions.machine_name(record["stateMachineArn"])
        if self.metrics is not None:
            self.metrics.closed.labels(name, closed["status"]).inc()
            self.metrics.duration.labels(name).observe(max(0.0, closed["stopDate"] - closed["startDate"]))
        await self._tell(closed)
        parent = record.get("parent")
        if parent:
            await self._js.publish(
                bus.sfn_work_subject(parent["e"]),
                orjson.dumps({"k": "wake", "e": parent["e"], "r": parent["r"], "key": parent["key"],
                              "value": executions.describe(closed)}),
                headers={"Nats-Msg-Id": f"{parent['e']}:child:{record['id']}"}, timeout=10)

    async def _tell(self, record: dict[str, Any]) -> None:
        event = executions.status_event(record, self._arns.account, self._arns.region)
        try:
            await self._js.publish(bus.events_subject("default"), orjson.dumps(event), timeout=10)
        except Exception as exc:  # the execution goes on; the event is best effort, as on AWS
            log.warning("status change event of %s not stored: %s", record["executionArn"], exc)


class Services:
    """The tasks' reach for one durable run."""

    def __init__(self, executor: Executor, run: Run, record: dict[str, Any]) -> None:
        self._executor = executor
        self._run = run
        self._record = record

    async def invoke_lambda(self, function: str, payload: bytes, task_id: str, started: float,
                            timeout: int | None) -> LambdaResult:
        return await self._executor.lambdas.call(function, payload, task_id, started, timeout)

    async def _token_record(self, key: str, started: float, heartbeat: int | None) -> dict[str, Any]:
        run, records = self._run, self._executor.records
        record_key = token_key(run.execution, key)
        found, _ = await records.tokens.get(record_key)
        if found is None:
            found = {"e": run.execution, "r": run.record_key, "k": key, "hb": started, "heartbeat": heartbeat,
                     "status": "WAITING"}
            await records.tokens.put(record_key, found)
        return found

    async def expect_token(self, key: str, token: str, started: float, heartbeat: int | None) -> None:
        async with self._run.busy():
            await self._token_record(key, started, heartbeat)

    async def external(self, key: str, token: str, started: float, timeout: int | None,
                       heartbeat: int | None) -> Any:
        run, records = self._run, self._executor.records
        record_key = token_key(run.execution, key)
        found = await self._token_record(key, started, heartbeat)
        timeout_key, heartbeat_key = key + ":timeout", key + ":heartbeat"
        if timeout is not None:
            await self._timer(timeout_key, started + timeout)
        if heartbeat is not None:
            await self._timer(heartbeat_key, float(found.get("hb", started)) + heartbeat)
        while True:
            woken, value = await run.block([key, timeout_key, heartbeat_key])
            now = run.clock()
            if woken == key:
                await records.tokens.delete(record_key)
                answer = value if isinstance(value, dict) else {}
                if "output" in answer:
                    return orjson.loads(answer["output"])
                raise StatesError(str(answer.get("error") or ""), str(answer.get("cause") or ""))
            if woken == timeout_key and timeout is not None and now >= started + timeout:
                await self._timed_out(record_key, found)
                raise StatesError("States.Timeout", "The task timed out")
            if woken == heartbeat_key and heartbeat is not None:
                current, _ = await records.tokens.get(record_key)
                last = float((current or found).get("hb", started))
                if now >= last + heartbeat:
                    await self._timed_out(record_key, current or found)
                    raise StatesError(HEARTBEAT_TIMEOUT, "The task's heartbeat timed out")
                await self._timer(heartbeat_key, last + heartbeat)

    async def _timer(self, key: str, due: float) -> None:
        run = self._run
        async with run.busy():
            await self._executor.set_timer(run.execution, run.record_key, key, due)

    async def _timed_out(self, record_key: str, found: dict[str, Any]) -> None:
        await self._executor.records.tokens.put(record_key, {**found, "status": "TIMED_OUT"})

    async def put_events(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return await put_events(self._executor.js, self._record["executionArn"], entries)

    async def start_execution(self, machine_arn: str, name: str | None, execution_input: Any,
                              parent: tuple[str, str] | None) -> dict[str, Any]:
        records = self._executor.records
        from workflows.registry import resolve_machine

        machine = await resolve_machine(records, machine_arn)
        if machine is None:
            raise StatesError("StepFunctions.StateMachineDoesNotExistException",
                              f"State Machine Does Not Exist: '{machine_arn}'")
        link = {"e": parent[0], "r": self._run.record_key, "key": parent[1]} if parent else None
        record = await executions.start(self._executor.nc, records, machine, name or str(uuid.uuid4()),
                                        orjson.dumps(execution_input).decode(), link)
        return {"ExecutionArn": record["executionArn"], "StartDate": executions.iso(record["startDate"])}

    async def wait_execution(self, key: str, execution_arn: str, started: float, timeout: int | None,
                             ) -> dict[str, Any]:
        records = self._executor.records
        record, _ = await records.executions.get(
            f"{name_key(executions.machine_name(execution_arn))}.{execution_id(execution_arn)}")
        if record is not None and record["status"] != "RUNNING":
            return executions.describe(record)
        keys = [key] + ([key + ":timeout"] if timeout is not None else [])
        if timeout is not None:
            await self._timer(key + ":timeout", started + timeout)
        while True:
            woken, value = await self._run.block(keys)
            if woken == key and isinstance(value, dict):
                return value
            if timeout is not None and self._run.clock() >= started + timeout:
                raise StatesError("States.Timeout", "The task timed out")

    async def http(self, args: dict[str, Any]) -> dict[str, Any]:
        return await http_call(args)

    async def aws_sdk(self, service: str, action: str, params: Any, role_arn: str, caller: str,
                      error_prefix: str | None) -> Any:
        return await sdk_call(self._executor.sdk, service, action, params, role_arn, caller, error_prefix)

    async def schedule_activity(self, activity_arn: str, token: str, task_input: Any) -> None:
        name = activity_arn.rsplit(":", 1)[-1]
        await self._executor.js.publish(
            bus.sfn_activity_subject(name_key(name)), orjson.dumps({"taskToken": token, "input": task_input}),
            headers={"Nats-Msg-Id": f"activity:{token}"}, timeout=10)

