"""TestState: run one state on a given input, without a state machine, as the console's "Test state" does.

The definition is one state's JSON, or a whole machine with ``stateName`` naming the state. It runs through the
same interpreter as an execution (EXPRESS's in-memory runtime: its Task calls the real function, or the ``mock``
result or error instead), once: a failure that one of the state's retriers would retry answers ``RETRIABLE``
(with ``retryIndex`` and the interval it would wait), one that a catcher takes ``CAUGHT_ERROR`` with the
catcher's ``Next`` as ``nextState``, anything else ``FAILED``. A Wait state answers at once, as on AWS.
``inspectionLevel`` DEBUG (and TRACE, which adds nothing more here) returns each processing step's value
(workflows/language/inspection.py). Map and Parallel are refused: they run whole machines, which
StartSyncExecution of an EXPRESS machine tests better.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import orjson

from workflows import errors, language, tasks
from workflows.express import CallLambda, ExpressServices, MemoryRuntime, machine_of
from workflows.interpreter import Interpreter, Scope, TaskCall
from workflows.language import StatesError
from workflows.language.inspection import inspect
from workflows.sdk import AwsSdk

NAME = "TestState"
TESTABLE = ("Task", "Pass", "Wait", "Choice", "Succeed", "Fail")


class _NoWait(MemoryRuntime):
    async def sleep_until(self, key: str, due: float) -> None:
        return None


def _json(value: Any, what: str, default: Any = None) -> Any:
    if value is None:
        return default
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise errors.Validation(f"Invalid {what}: not valid JSON") from None


def _state_definition(body: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(the state's name, its JSON, the machine's top-level fields it inherits, such as QueryLanguage)."""
    raw = _json(body.get("definition"), "definition")
    if not isinstance(raw, dict):
        raise errors.InvalidDefinition("Invalid State Machine Definition: 'the definition must be a JSON object'")
    if "States" in raw:
        name = body.get("stateName") or raw.get("StartAt")
        state = raw["States"].get(name) if isinstance(raw.get("States"), dict) else None
        if not isinstance(state, dict):
            raise errors.InvalidDefinition(f"Invalid State Machine Definition: 'no state named {name!r}'")
        return str(name), state, {k: v for k, v in raw.items() if k == "QueryLanguage"}
    return str(body.get("stateName") or NAME), raw, {}


def _targets(state: dict[str, Any]) -> set[str]:
    """The names the state may go to, which the one-state machine built around it must have."""
    names = {state.get("Next"), state.get("Default")}
    names.update(c.get("Next") for c in state.get("Choices") or [] if isinstance(c, dict))
    names.update(c.get("Next") for c in state.get("Catch") or [] if isinstance(c, dict))
    return {n for n in names if isinstance(n, str)}


async def run(js: Any, call_lambda: CallLambda, body: dict[str, Any], region: str, account: str,
              sdk: AwsSdk | None = None) -> dict[str, Any]:
    name, raw, top = _state_definition(body)
    kind = raw.get("Type")
    if kind not in TESTABLE:
        raise errors.InvalidDefinition(f"Invalid State Machine Definition: 'TestState does not support {kind} "
                                       f"states; it tests {', '.join(TESTABLE)}'")
    if kind == "Task" and ":activity:" in str(raw.get("Resource", "")):
        raise errors.InvalidDefinition("Invalid State Machine Definition: 'TestState does not support activities'")
    states = {t: {"Type": "Succeed"} for t in _targets(raw) if t != name}
    definition = orjson.dumps({**top, "StartAt": name, "States": {name: raw, **states}}).decode()
    try:
        machine = machine_of(definition)
    except language.InvalidDefinition as exc:
        raise errors.InvalidDefinition(str(exc)) from None
    state = machine.states[name]
    state_input = _json(body.get("input"), "input", {})
    variables = _json(body.get("variables"), "variables", {})
    context = _json(body.get("context"), "context", {})
    mock = body.get("mock") or {}
    execution = f"arn:aws:states:{region}:{account}:execution:{NAME}:{NAME}"
    runtime = _NoWait(ExpressServices(js, call_lambda, execution, sdk))
    results: list[Any] = []

    async def task(ip: Interpreter, call: TaskCall) -> Any:
        if "errorOutput" in mock:
            error = mock["errorOutput"] or {}
            raise StatesError(str(error.get("error", "")), str(error.get("cause", "")))
        result = _json(mock["result"], "mock result") if "result" in mock else await tasks.run(ip, call)
        results.append(result)
        return result

    base = {"Execution": {"Id": execution, "Name": NAME, "Input": state_input, "RoleArn": body.get("roleArn", "")},
            "StateMachine": {"Id": execution.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0],
                             "Name": NAME}}
    interpreter = Interpreter(runtime, NAME, {**base, **context}, task)
    started = runtime.journal.add("start", "ExecutionStarted", None, 0)
    scope = Scope("", dict(variables), started.id)
    once = replace(state, retry=[], catch=[])  # one attempt: the retriers and catchers are judged below
    out: dict[str, Any] = {}
    try:
        output, following = await interpreter.state(once, state_input, scope, name)
    except StatesError as err:
        out.update(error=err.error, cause=err.cause)
        ctx = interpreter.ctx(state, started)
        retry = language.retry_delay(state, err.error, [0] * len(state.retry), random.Random(0)) \
            if state.retry and err.error != "States.Runtime" else None
        caught = language.catch(state, err.error, err.cause, state_input, ctx, scope.variables) \
            if retry is None and state.catch else None
        if retry is not None:
            out["status"] = "RETRIABLE"
            details = {"retryIndex": retry[0], "retryBackoffIntervalSeconds": int(retry[1])}
        elif caught is not None:
            out["status"], out["nextState"] = "CAUGHT_ERROR", caught[0]
            out["output"] = orjson.dumps(caught[1]).decode()
            details = {"catchIndex": next(i for i, c in enumerate(state.catch)
                                          if language.error_matches(c.error_equals, err.error))}
        else:
            out["status"], details = "FAILED", {}
        if body.get("inspectionLevel") in ("DEBUG", "TRACE"):
            out["inspectionData"] = {"input": orjson.dumps(state_input).decode(), "errorDetails": details}
        return out
    out["status"], out["output"] = "SUCCEEDED", orjson.dumps(output).decode()
    if following is not None:
        out["nextState"] = following
    if body.get("inspectionLevel") in ("DEBUG", "TRACE"):
        data = inspect(state, state_input, results[0] if results else None, interpreter.ctx(state, started),
                       variables)
        out["inspectionData"] = {k: orjson.dumps(v).decode() for k, v in data.items()}
    return out
