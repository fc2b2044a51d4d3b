"""A Task state's resource: Lambda (the function's ARN, or ``arn:aws:states:::lambda:invoke``), nested executions
(``states:startExecution``, ``.sync``, ``.sync:2``), EventBridge (``events:putEvents``), activities, HTTP
(``http:invoke``), the AWS SDK integrations (``aws-sdk:<service>:<action>``, ``dynamodb:<action>``: workflows/sdk.py),
each with ``.waitForTaskToken`` where AWS offers it, and the history events AWS records for
each (LambdaFunctionScheduled/Started/Succeeded/Failed/TimedOut for a function's ARN; TaskScheduled/Started/
Submitted/Succeeded/Failed/TimedOut for the service integrations; ActivityScheduled/Started/... for activities).

What runs the work is the :class:`Services` of the executor (the durable one keeps a Lambda task's result on a
stream under the task's id, ``<execution>.<scheduled event id>``, so a resumed execution never runs it twice).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from workflows.interpreter import Interpreter, TaskCall, dumps
from workflows.language import StatesError

STATES_PREFIX = "arn:aws:states:::"
TIMEOUT = "States.Timeout"


@dataclass
class LambdaResult:
    payload: bytes
    function_error: str = ""
    error_code: str = ""
    error_message: str = ""
    executed_version: str = "$LATEST"


class Services(Protocol):
    async def invoke_lambda(self, function: str, payload: bytes, task_id: str, started: float,
                            timeout: int | None) -> LambdaResult: ...

    async def external(self, key: str, token: str, started: float, timeout: int | None,
                       heartbeat: int | None) -> Any:
        """Wait for the task's token to be answered (SendTaskSuccess: the output; SendTaskFailure and timeouts
        raise StatesError)."""
        ...

    async def expect_token(self, key: str, token: str, started: float, heartbeat: int | None) -> None:
        """Make the task's token answerable before it is handed out: a worker quick to answer (SendTaskSuccess,
        SendTaskHeartbeat) must not find the task missing."""
        ...

    async def put_events(self, entries: list[dict[str, Any]]) -> dict[str, Any]: ...

    async def start_execution(self, machine_arn: str, name: str | None, execution_input: Any,
                              parent: tuple[str, str] | None) -> dict[str, Any]: ...

    async def wait_execution(self, key: str, execution_arn: str, started: float, timeout: int | None,
                             ) -> dict[str, Any]: ...

    async def http(self, args: dict[str, Any]) -> dict[str, Any]: ...

    async def schedule_activity(self, activity_arn: str, token: str, task_input: Any) -> None: ...

    async def aws_sdk(self, service: str, action: str, params: Any, role_arn: str, caller: str,
                      error_prefix: str | None) -> Any:
        """An AWS SDK integration's call (workflows/sdk.py)."""
        ...


def services_of(interpreter: Interpreter) -> Services:
    services = getattr(interpreter.rt, "services", None)
    if services is None:
        raise StatesError("States.Runtime", "This execution cannot run tasks")
    return services  # type: ignore[no-any-return]


async def run(interpreter: Interpreter, call: TaskCall) -> Any:
    resource = call.state.resource or ""
    if resource.startswith("arn:aws:lambda:"):
        return await _lambda_arn(interpreter, call, resource)
    if ":activity:" in resource and resource.startswith("arn:aws:states:"):
        return await _activity(interpreter, call, resource)
    if not resource.startswith(STATES_PREFIX):
        raise StatesError("States.Runtime", f"Unsupported resource '{resource}'")
    service, _, pattern = resource[len(STATES_PREFIX):].partition(".")
    if service.startswith("aws-sdk:") or service.startswith("dynamodb:"):
        return await _sdk(interpreter, call, service, pattern)
    runners = {"lambda:invoke": _lambda_invoke, "states:startExecution": _start_execution,
               "events:putEvents": _put_events, "http:invoke": _http}
    runner = runners.get(service)
    if runner is None:
        raise StatesError("States.Runtime", f"Unsupported resource '{resource}'")
    return await runner(interpreter, call, service, pattern)


async def _hand_out(ip: Interpreter, call: TaskCall, started: float) -> None:
    """Before a task's work (and with it its token, if it has one) leaves the execution."""
    if call.token is not None:
        await services_of(ip).expect_token(call.key, call.token, started, call.heartbeat)


def _lambda_error(result: LambdaResult) -> StatesError:
    if result.error_code:
        name = result.error_code.removesuffix("Exception")
        return StatesError(f"Lambda.{name}Exception" if name else "Lambda.ServiceException",
                           result.error_message or result.error_code)
    try:
        body = orjson.loads(result.payload) if result.payload else {}
    except orjson.JSONDecodeError:
        body = {}
    error = body.get("errorType") if isinstance(body, dict) else None
    return StatesError(str(error) if error else "Lambda.Unknown", result.payload.decode(errors="replace"))


def _output_of(result: LambdaResult) -> Any:
    try:
        return orjson.loads(result.payload) if result.payload else None
    except orjson.JSONDecodeError:
        raise StatesError("States.Runtime", "The Lambda function's result is not JSON") from None


async def _lambda_arn(ip: Interpreter, call: TaskCall, resource: str) -> Any:
    """A function's ARN as the resource: the LambdaFunction* events."""
    scope, key = call.scope, call.key
    done = ip.rt.journal.find(key + ":done")
    details: dict[str, Any] = {"resource": resource, "input": dumps(call.args), "inputDetails": {"truncated": False}}
    if call.timeout is not None:
        details["timeoutInSeconds"] = call.timeout
    scheduled = ip.event(scope, key + ":scheduled", "LambdaFunctionScheduled", details)
    started = ip.event(scope, key + ":started", "LambdaFunctionStarted")
    if done is None:
        await ip.rt.flush()
        async with ip.rt.busy():
            try:
                result = await services_of(ip).invoke_lambda(resource, orjson.dumps(call.args),
                                                             f"{ip.execution_id}.{scheduled.id}", started.ts,
                                                             call.timeout)
            except StatesError as err:
                if err.error == TIMEOUT:
                    ip.event(scope, key + ":done", "LambdaFunctionTimedOut", {"error": err.error, "cause": err.cause})
                raise
        if result.function_error or result.error_code:
            failure = _lambda_error(result)
            ip.event(scope, key + ":done", "LambdaFunctionFailed", {"error": failure.error, "cause": failure.cause})
            raise failure
        output = _output_of(result)
        ip.event(scope, key + ":done", "LambdaFunctionSucceeded", {"output": dumps(output),
                                                                   "outputDetails": {"truncated": False}})
        return output
    return _recorded(done)


def _submitted(ip: Interpreter, key: str) -> Any:
    """What a recorded TaskSubmitted event says was handed out."""
    event = ip.rt.journal.find(key)
    return orjson.loads((event.details or {}).get("output", "null")) if event is not None else None


def _recorded(done: Any) -> Any:
    if done.type.endswith("Succeeded"):
        return orjson.loads(done.details["output"])
    raise StatesError(done.details.get("error", "States.TaskFailed"), done.details.get("cause", ""))


async def _task_events(ip: Interpreter, call: TaskCall, resource_type: str, resource: str) -> tuple[Any, Any, Any]:
    """TaskScheduled and TaskStarted, and the recorded end of the task if a replay has one."""
    details: dict[str, Any] = {"resourceType": resource_type, "resource": resource, "region": _region(ip),
                               "parameters": dumps(call.args)}
    if call.timeout is not None:
        details["timeoutInSeconds"] = call.timeout
    if call.heartbeat is not None:
        details["heartbeatInSeconds"] = call.heartbeat
    scheduled = ip.event(call.scope, call.key + ":scheduled", "TaskScheduled", details)
    started = ip.event(call.scope, call.key + ":started", "TaskStarted",
                       {"resourceType": resource_type, "resource": resource})
    return scheduled, started, ip.rt.journal.find(call.key + ":done")


def _region(ip: Interpreter) -> str:
    parts = str(ip.context["Execution"]["Id"]).split(":")
    return parts[3] if len(parts) > 3 else "us-east-1"


def _succeed(ip: Interpreter, call: TaskCall, resource_type: str, resource: str, output: Any) -> Any:
    ip.event(call.scope, call.key + ":done", "TaskSucceeded",
             {"resourceType": resource_type, "resource": resource, "output": dumps(output),
              "outputDetails": {"truncated": False}})
    return output


def _fail(ip: Interpreter, call: TaskCall, resource_type: str, resource: str, err: StatesError) -> StatesError:
    kind = "TaskTimedOut" if err.error in (TIMEOUT, "States.HeartbeatTimeout") else "TaskFailed"
    ip.event(call.scope, call.key + ":done", kind,
             {"resourceType": resource_type, "resource": resource, "error": err.error, "cause": err.cause})
    return err


async def _callback(ip: Interpreter, call: TaskCall, resource_type: str, resource: str, started: Any,
                    submitted: Any) -> Any:
    """A ``.waitForTaskToken`` task once its work is handed out: TaskSubmitted, then the token's answer."""
    ip.event(call.scope, call.key + ":submitted", "TaskSubmitted",
             {"resourceType": resource_type, "resource": resource, "output": dumps(submitted),
              "outputDetails": {"truncated": False}})
    await ip.rt.flush()
    assert call.token is not None
    try:
        output = await services_of(ip).external(call.key, call.token, started.ts, call.timeout, call.heartbeat)
    except StatesError as err:
        raise _fail(ip, call, resource_type, resource, err) from None
    return _succeed(ip, call, resource_type, resource, output)


async def _lambda_invoke(ip: Interpreter, call: TaskCall, service: str, pattern: str) -> Any:
    resource = "invoke" + (f".{pattern}" if pattern else "")
    scheduled, started, done = await _task_events(ip, call, "lambda", resource)
    if done is not None:
        return _recorded(done)
    args = call.args if isinstance(call.args, dict) else {}
    function = args.get("FunctionName")
    if not isinstance(function, str):
        raise _fail(ip, call, "lambda", resource, StatesError("States.Runtime", "lambda:invoke needs FunctionName"))
    if args.get("Qualifier"):
        function = f"{function}:{args['Qualifier']}"
    payload = args.get("Payload")
    await ip.rt.flush()
    await _hand_out(ip, call, started.ts)
    submitted_key = call.key + ":submitted"
    if ip.rt.journal.find(submitted_key) is None:
        async with ip.rt.busy():
            try:
                result = await services_of(ip).invoke_lambda(
                    function, orjson.dumps(payload) if payload is not None else b"{}",
                    f"{ip.execution_id}.{scheduled.id}", started.ts, call.timeout)
            except StatesError as err:
                raise _fail(ip, call, "lambda", resource, err) from None
        if result.function_error or result.error_code:
            raise _fail(ip, call, "lambda", resource, _lambda_error(result))
        response = {"ExecutedVersion": result.executed_version, "Payload": _output_of(result),
                    "SdkHttpMetadata": {"HttpStatusCode": 200}, "SdkResponseMetadata": {}, "StatusCode": 200}
    else:
        response = _submitted(ip, submitted_key)
    if pattern == "waitForTaskToken":
        return await _callback(ip, call, "lambda", resource, started, response)
    return _succeed(ip, call, "lambda", resource, response)


async def _put_events(ip: Interpreter, call: TaskCall, service: str, pattern: str) -> Any:
    resource = "putEvents" + (f".{pattern}" if pattern else "")
    _, started, done = await _task_events(ip, call, "events", resource)
    if done is not None:
        return _recorded(done)
    await ip.rt.flush()
    entries = (call.args or {}).get("Entries") if isinstance(call.args, dict) else None
    if not isinstance(entries, list):
        raise _fail(ip, call, "events", resource, StatesError("States.Runtime", "events:putEvents needs Entries"))
    await _hand_out(ip, call, started.ts)
    if ip.rt.journal.find(call.key + ":submitted") is None:
        async with ip.rt.busy():
            answer = await services_of(ip).put_events(entries)
    else:
        answer = _submitted(ip, call.key + ":submitted")
    if pattern == "waitForTaskToken":
        return await _callback(ip, call, "events", resource, started, answer)
    return _succeed(ip, call, "events", resource, answer)


async def _http(ip: Interpreter, call: TaskCall, service: str, pattern: str) -> Any:
    _, _, done = await _task_events(ip, call, "http", "invoke")
    if done is not None:
        return _recorded(done)
    await ip.rt.flush()
    async with ip.rt.busy():
        try:
            answer = await services_of(ip).http(call.args if isinstance(call.args, dict) else {})
        except StatesError as err:
            raise _fail(ip, call, "http", "invoke", err) from None
    return _succeed(ip, call, "http", "invoke", answer)


#: The optimized DynamoDB integrations (``arn:aws:states:::dynamodb:<action>``), whose errors say ``DynamoDB.``.
DYNAMODB_ACTIONS = ("getItem", "putItem", "updateItem", "deleteItem")


async def _sdk(ip: Interpreter, call: TaskCall, service: str, pattern: str) -> Any:
    """``aws-sdk:<service>:<action>`` (and ``.waitForTaskToken``) and the optimized ``dynamodb:<action>``: the
    call goes through kambda's own front door as the execution's role (workflows/sdk.py)."""
    parts = service.split(":")
    if parts[0] == "aws-sdk" and len(parts) == 3:
        resource_type, target, action, prefix = f"aws-sdk:{parts[1]}", parts[1], parts[2], None
    elif parts[0] == "dynamodb" and len(parts) == 2 and parts[1] in DYNAMODB_ACTIONS:
        resource_type, target, action, prefix = "dynamodb", "dynamodb", parts[1], "DynamoDB"
    else:
        raise StatesError("States.Runtime", f"Unsupported resource '{STATES_PREFIX}{service}'")
    if pattern not in ("", "waitForTaskToken"):
        raise StatesError("States.Runtime", f"The resource '{STATES_PREFIX}{service}' has no .{pattern} pattern")
    resource = action + (f".{pattern}" if pattern else "")
    _, started, done = await _task_events(ip, call, resource_type, resource)
    if done is not None:
        return _recorded(done)
    await ip.rt.flush()
    await _hand_out(ip, call, started.ts)
    execution = ip.context["Execution"]
    if ip.rt.journal.find(call.key + ":submitted") is None:
        async with ip.rt.busy():
            try:
                answer = await services_of(ip).aws_sdk(target, action, call.args, str(execution.get("RoleArn") or ""),
                                                       str(execution.get("Id") or ""), prefix)
            except StatesError as err:
                raise _fail(ip, call, resource_type, resource, err) from None
    else:
        answer = _submitted(ip, call.key + ":submitted")
    if pattern == "waitForTaskToken":
        return await _callback(ip, call, resource_type, resource, started, answer)
    return _succeed(ip, call, resource_type, resource, answer)


async def _start_execution(ip: Interpreter, call: TaskCall, service: str, pattern: str) -> Any:
    resource = "startExecution" + (f".{pattern}" if pattern else "")
    _, started, done = await _task_events(ip, call, "states", resource)
    if done is not None:
        return _recorded(done)
    await ip.rt.flush()
    args = call.args if isinstance(call.args, dict) else {}
    machine = args.get("StateMachineArn")
    if not isinstance(machine, str):
        raise _fail(ip, call, "states", resource, StatesError("States.Runtime", "startExecution needs "
                                                                                "StateMachineArn"))
    await _hand_out(ip, call, started.ts)
    child_input = args.get("Input", {})
    if isinstance(child_input, str):
        try:
            child_input = orjson.loads(child_input)
        except orjson.JSONDecodeError:
            pass
    name = args.get("Name") or f"{ip.execution_id[:16]}-{hashlib.sha1(call.key.encode()).hexdigest()[:16]}"
    submitted = _submitted(ip, call.key + ":submitted")
    if submitted is not None:  # a replay: the child was started before
        answer = submitted
    else:
        try:
            async with ip.rt.busy():
                answer = await services_of(ip).start_execution(
                    machine, name, child_input, (ip.execution_id, call.key) if pattern.startswith("sync") else None)
        except StatesError as err:
            raise _fail(ip, call, "states", resource, err) from None
    if pattern == "waitForTaskToken":
        return await _callback(ip, call, "states", resource, started, answer)
    if not pattern.startswith("sync"):
        return _succeed(ip, call, "states", resource, answer)
    ip.event(call.scope, call.key + ":submitted", "TaskSubmitted",
             {"resourceType": "states", "resource": resource, "output": dumps(answer),
              "outputDetails": {"truncated": False}})
    await ip.rt.flush()
    try:
        described = await services_of(ip).wait_execution(call.key, answer["ExecutionArn"], started.ts, call.timeout)
    except StatesError as err:
        raise _fail(ip, call, "states", resource, err) from None
    # AWS's .sync output is the DescribeExecution answer with capitalised keys; .sync:2 parses its Output.
    shown = {key[0].upper() + key[1:]: value for key, value in described.items()}
    if shown.get("Status") != "SUCCEEDED":
        error = "States.TaskFailed" if shown.get("Status") == "FAILED" else f"States.{shown.get('Status')}"
        raise _fail(ip, call, "states", resource, StatesError(error, dumps(shown)))
    if pattern == "sync:2" and isinstance(shown.get("Output"), str):
        shown["Output"] = orjson.loads(shown["Output"])
    return _succeed(ip, call, "states", resource, shown)


async def _activity(ip: Interpreter, call: TaskCall, resource: str) -> Any:
    details: dict[str, Any] = {"resource": resource, "input": dumps(call.args), "inputDetails": {"truncated": False}}
    if call.timeout is not None:
        details["timeoutInSeconds"] = call.timeout
    if call.heartbeat is not None:
        details["heartbeatInSeconds"] = call.heartbeat
    scheduled = ip.event(call.scope, call.key + ":scheduled", "ActivityScheduled", details)
    done = ip.rt.journal.find(call.key + ":done")
    if done is not None:
        return _recorded(done)
    await ip.rt.flush()
    assert call.token is not None
    await _hand_out(ip, call, scheduled.ts)
    services = services_of(ip)
    async with ip.rt.busy():
        await services.schedule_activity(resource, call.token, call.args)
    try:
        output = await services.external(call.key, call.token, scheduled.ts, call.timeout, call.heartbeat)
    except StatesError as err:
        kind = "ActivityTimedOut" if err.error in (TIMEOUT, "States.HeartbeatTimeout") else "ActivityFailed"
        ip.event(call.scope, call.key + ":done", kind, {"error": err.error, "cause": err.cause})
        raise
    ip.event(call.scope, call.key + ":done", "ActivitySucceeded", {"output": dumps(output),
                                                                   "outputDetails": {"truncated": False}})
    return output
