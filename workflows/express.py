"""EXPRESS executions: the same interpreter over a journal in memory, fast and at least once.

StartSyncExecution runs one here, in the gateway that got the call, and answers when it ends (200 whatever the
status). StartExecution of an EXPRESS machine stores a ``express`` message on the work stream, and a worker
runs it here and acknowledges it when it ends: a worker that dies meanwhile leaves it to be run again.
AWS keeps no history of Express executions in the API (only in logs), and neither does kambda; callbacks
(``.waitForTaskToken``), ``.sync`` and activities are STANDARD's, as on AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from nats.js import JetStreamContext

from workflows import language, tasks
from workflows.history import Event, Journal
from workflows.integrations import http_call, put_events, sdk_call
from workflows.interpreter import Interpreter
from workflows.language import Machine, StatesError
from workflows.sdk import AwsSdk
from workflows.tasks import LambdaResult

CallLambda = Callable[[str, bytes, int | None], Awaitable[LambdaResult]]
_machines: dict[str, Machine] = {}


def machine_of(definition: str) -> Machine:
    machine = _machines.get(definition)
    if machine is None:
        machine = language.parse(definition)
        if len(_machines) > 1000:
            _machines.clear()
        _machines[definition] = machine
    return machine


class ExpressServices:
    def __init__(self, js: JetStreamContext, call_lambda: CallLambda, execution_arn: str,
                 sdk: AwsSdk | None = None) -> None:
        self._js = js
        self._call = call_lambda
        self._arn = execution_arn
        self._sdk = sdk

    async def invoke_lambda(self, function: str, payload: bytes, task_id: str, started: float,
                            timeout: int | None) -> LambdaResult:
        return await self._call(function, payload, timeout)

    async def expect_token(self, key: str, token: str, started: float, heartbeat: int | None) -> None:
        return None  # no token is ever answered here: external() refuses callbacks

    async def external(self, key: str, token: str, started: float, timeout: int | None,
                       heartbeat: int | None) -> Any:
        raise StatesError("States.Runtime", "Express state machines do not support callbacks or activities")

    async def put_events(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return await put_events(self._js, self._arn, entries)

    async def start_execution(self, machine_arn: str, name: str | None, execution_input: Any,
                              parent: tuple[str, str] | None) -> dict[str, Any]:
        raise StatesError("States.Runtime", "Express state machines do not start nested executions in kambda")

    async def wait_execution(self, key: str, execution_arn: str, started: float, timeout: int | None,
                             ) -> dict[str, Any]:
        raise StatesError("States.Runtime", "Express state machines do not support .sync")

    async def http(self, args: dict[str, Any]) -> dict[str, Any]:
        return await http_call(args)

    async def aws_sdk(self, service: str, action: str, params: Any, role_arn: str, caller: str,
                      error_prefix: str | None) -> Any:
        return await sdk_call(self._sdk, service, action, params, role_arn, caller, error_prefix)

    async def schedule_activity(self, activity_arn: str, token: str, task_input: Any) -> None:
        raise StatesError("States.Runtime", "Express state machines do not support activities")


class MemoryRuntime:
    """The interpreter's Runtime for an EXPRESS execution: events in memory, timers are sleeps."""

    def __init__(self, services: ExpressServices, clock: Callable[[], float] = time.time) -> None:
        self.journal = Journal(clock=clock)
        self.clock = clock
        self.services = services

    async def flush(self) -> None:
        self.journal.pending.clear()

    async def sleep_until(self, key: str, due: float) -> None:
        left = due - self.clock()
        if left > 0:
            await asyncio.sleep(left)

    @contextlib.asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        yield


async def run(js: JetStreamContext, call_lambda: CallLambda, definition: str, execution_arn: str,
              machine_arn: str, name: str, input_text: str, role_arn: str = "", sdk: AwsSdk | None = None,
              ) -> dict[str, Any]:
    """Run an EXPRESS execution to its end: StartSyncExecution's answer (status, output or error and cause)."""
    start = time.time()
    machine = machine_of(definition)
    runtime = MemoryRuntime(ExpressServices(js, call_lambda, execution_arn, sdk))
    execution_input = orjson.loads(input_text)
    started = runtime.journal.add("start", "ExecutionStarted", None, 0)
    context = {
        "Execution": {"Id": execution_arn, "Name": name, "Input": execution_input,
                      "StartTime": _iso(start), "RoleArn": role_arn, "RedriveCount": 0},
        "StateMachine": {"Id": machine_arn, "Name": machine_arn.rsplit(":", 1)[-1]},
    }
    interpreter = Interpreter(runtime, "express", context, tasks.run)  # type: ignore[arg-type]
    status, output, error, cause = await interpreter.run(machine, execution_input, started)
    out: dict[str, Any] = {"executionArn": execution_arn, "stateMachineArn": machine_arn, "name": name,
                           "startDate": start, "stopDate": time.time(), "status": status, "input": input_text,
                           "inputDetails": {"included": True},
                           "billingDetails": {"billedMemoryUsedInMB": 64,
                                              "billedDurationInMilliseconds": max(100, int((time.time() - start)
                                                                                           * 1000))}}
    if status == "SUCCEEDED":
        out["output"] = orjson.dumps(output).decode()
        out["outputDetails"] = {"included": True}
    else:
        out["error"], out["cause"] = error, cause
    return out


def _iso(ts: float) -> str:
    from workflows.executions import iso

    return iso(ts)


__all__ = ["Event", "ExpressServices", "MemoryRuntime", "machine_of", "run"]
