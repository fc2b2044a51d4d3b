"""The Amazon States Language as pure code: parse and validate a definition, and process each state.

No I/O here: the executor (workflows/executor.py) drives an execution and calls these functions at each step.

The context object ``$$`` (Execution, State, StateMachine, Task.Token, Map.Item.Index/Value) is a plain dict the
executor builds. One extra key, ``ctx[ENTERED_EVENT_ID]`` (an int), is the id of the history event that entered
the state: it appears in AWS's ``States.Runtime`` causes ("... (entered at the event id #4) ...") and is never
shown to the definition (``$$`` and ``$states.context`` leave out keys starting with ``_``).

Variables (JSONata or JSONPath ``Assign``) are a dict the executor keeps per scope: a Parallel branch or inline
Map iteration starts with a copy of the outer variables (read-only for it: its assignments do not flow out); a
DISTRIBUTED Map's children start with none.

How the executor runs one state, by type:

- Pass: ``out, variables = leave(s, inp, enter(s, inp, ctx, v), ctx, v)`` (``leave`` substitutes ``Result``).
- Task: ``args = enter(...)``; call ``s.resource`` with ``args`` (``timeout_seconds`` / ``heartbeat_seconds``);
  on success ``leave(s, inp, result, ...)``; on a failure ``retry_delay`` then ``catch``.
- Parallel: ``enter`` gives each branch's input; the list of branch outputs is ``leave``'s ``result``.
- Map: ``items(s, enter(...), ...)`` are the iterations' inputs (``max_concurrency``, ``tolerated``); the list
  of their outputs is ``leave``'s ``result``.
- Choice: ``next, output, variables = decide(...)`` (``choose`` gives next and variables only; a rule's own
  JSONata Output is only known to ``decide``).
- Wait: ``wait_until(..., now)`` then ``leave(s, inp, None, ...)``.
- Succeed: ``leave(s, inp, None, ...)``; Fail: ``fail_of(...)``.
- TestState: ``inspect(...)`` gives the intermediate values (InspectionData).

``parse`` caches machines by definition text: treat Machine and State as read-only.

Every function raises ``StatesError`` with AWS's error names and cause texts (States.Runtime for paths that
match nothing, as AWS reports it, States.ResultPathMatchFailure, States.IntrinsicFailure,
States.QueryEvaluationError, States.DataLimitExceeded, States.NoChoiceMatched); nothing else escapes for bad
input (tests/test_asl_robustness.py).
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from functools import lru_cache
from typing import Any

from workflows.language import process, retry
from workflows.language import validate as _validate
from workflows.language.errors import Diagnostic, InvalidDefinition, StatesError
from workflows.language.inspection import inspect
from workflows.language.model import JSONATA, JSONPATH, Catcher, Machine, Retrier, State, build_machine
from workflows.language.paths import ENTERED_EVENT_ID

__all__ = [
    "ENTERED_EVENT_ID",
    "JSONATA",
    "JSONPATH",
    "Catcher",
    "Diagnostic",
    "InvalidDefinition",
    "Machine",
    "Retrier",
    "State",
    "StatesError",
    "catch",
    "choose",
    "decide",
    "enter",
    "error_matches",
    "fail_of",
    "heartbeat_seconds",
    "inspect",
    "items",
    "leave",
    "max_concurrency",
    "parse",
    "retry_delay",
    "timeout_seconds",
    "tolerated",
    "validate",
    "wait_until",
]


def validate(definition: str) -> list[Diagnostic]:
    """ValidateStateMachineDefinition's diagnostics for a definition's JSON text (empty when valid)."""
    return _validate.validate(definition)


def parse(definition: str) -> Machine:
    """The ``Machine`` of a definition's JSON text; raises ``InvalidDefinition`` when ``validate`` has ERRORs.

    Parsed machines are cached by text (executions of one state machine share it): treat them as read-only."""
    return _parse(definition)


@lru_cache(maxsize=256)
def _parse(definition: str) -> Machine:
    diagnostics = _validate.validate(definition)
    if any(d.severity == "ERROR" for d in diagnostics):
        raise InvalidDefinition(diagnostics)
    return build_machine(json.loads(definition))


def enter(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> Any:
    """The effective input of Task/Pass/Parallel/Map: JSONPath ``InputPath`` then ``Parameters``, or JSONata
    ``Arguments`` (default: the input itself). For other types, the input after ``InputPath``."""
    return process.enter(state, state_input, ctx, variables)


def items(state: State, effective_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> list[Any]:
    """A Map's iteration inputs: ``ItemsPath`` (JSONPath, default ``$``) or ``Items`` (JSONata) of the effective
    input, then ``ItemSelector`` (legacy ``Parameters``) per item with ``$$.Map.Item.Index/Value``, then
    ``ItemBatcher`` batches (``{"Items": [...], "BatchInput": ...}``)."""
    return process.items(state, effective_input, ctx, variables)


def leave(
    state: State, state_input: Any, result: Any, ctx: dict[str, Any], variables: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """The state's output and the variables after its ``Assign``.

    JSONPath: ``ResultSelector`` on ``result``, ``ResultPath`` into ``state_input`` (null discards the result),
    then ``OutputPath``; Pass uses its ``Result`` if present, else ``result`` (its effective input); Choice, Wait
    and Succeed output their input through InputPath/OutputPath. JSONata: ``Output`` (default: the result, or
    the input for states without one) with ``$states.input/result/context``; ``Assign`` is evaluated against the
    same values and does not see its own assignments. Both check the 256 KB payload limit.
    """
    return process.leave(state, state_input, result, ctx, variables)


def choose(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> tuple[str, dict]:
    """The Choice's next state and the variables after the matched rule's (or the state's) ``Assign``; raises
    ``StatesError("States.NoChoiceMatched")`` when no rule matches and there is no ``Default``."""
    next_state, _, new_vars = process.decide(state, state_input, ctx, variables)
    return next_state, new_vars


def decide(
    state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]
) -> tuple[str, Any, dict[str, Any]]:
    """A Choice's (next state, output, variables) in one call: what ``choose`` and ``leave`` give, plus the
    JSONata ``Output`` of the matched rule (or of the state, for the Default)."""
    return process.decide(state, state_input, ctx, variables)


def wait_until(
    state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any], now: datetime
) -> datetime:
    """When a Wait state ends (aware UTC datetime): ``Seconds``/``SecondsPath`` after ``now``, or
    ``Timestamp``/``TimestampPath``; JSONata ``{% %}`` in Seconds or Timestamp."""
    return process.wait_until(state, state_input, ctx, variables, now)


def fail_of(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> tuple[str, str]:
    """A Fail state's (error, cause): ``Error``/``Cause``, ``ErrorPath``/``CausePath``, or JSONata expressions."""
    return process.fail_of(state, state_input, ctx, variables)


def timeout_seconds(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> int | None:
    """A Task's ``TimeoutSeconds``/``TimeoutSecondsPath`` (JSONata: an expression); None: AWS's default (none
    for Activities and callbacks: the execution's own 1-year limit; 60 s is *not* a default)."""
    return process.timeout_seconds(state, state_input, ctx, variables)


def heartbeat_seconds(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> int | None:
    """A Task's ``HeartbeatSeconds``/``HeartbeatSecondsPath``; None when not set."""
    return process.heartbeat_seconds(state, state_input, ctx, variables)


def max_concurrency(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> int:
    """A Map's ``MaxConcurrency``/``MaxConcurrencyPath`` (0: unlimited, AWS's default)."""
    return process.max_concurrency(state, state_input, ctx, variables)


def tolerated(
    state: State,
    total: int,
    failed: int,
    state_input: Any = None,
    ctx: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
) -> bool:
    """Whether ``failed`` of ``total`` iterations stay within ``ToleratedFailureCount``/``Percentage`` (or
    their ...Path forms, read from ``state_input``); without either, no failure is tolerated."""
    return process.tolerated(state, total, failed, state_input, ctx, variables)


def retry_delay(state: State, error: str, attempts: list[int], rng: random.Random) -> tuple[int, float] | None:
    """Which retrier handles ``error`` and the delay in seconds before the next attempt, or None.

    ``attempts[i]`` is how many retries retrier i has made so far in this state's execution (the executor keeps
    the list, one zero per retrier, and increments ``attempts[index]`` when it retries). The first retrier whose
    ErrorEquals matches is the one used; when it is exhausted (or its MaxAttempts is 0) the result is None and
    later retriers are not tried. The delay is ``IntervalSeconds * BackoffRate ** attempts[i]``, capped by
    ``MaxDelaySeconds``; JitterStrategy FULL draws it uniformly from [0, delay) with ``rng``.
    """
    return process.retry_delay(state, error, attempts, rng)


def catch(
    state: State, error: str, cause: str, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]
) -> tuple[str, Any, dict[str, Any]] | None:
    """The first matching Catcher's (next state, output, variables): JSONPath ``ResultPath`` puts
    ``{"Error", "Cause"}`` into the state input (default ``$``: replaces it); JSONata ``Output`` and ``Assign``
    see it as ``$states.errorOutput``. None when no Catcher matches."""
    return process.catch(state, error, cause, state_input, ctx, variables)


def error_matches(error_equals: list[str], error: str) -> bool:
    """Whether an ErrorEquals list matches ``error``: ``States.ALL`` matches every error except
    ``States.DataLimitExceeded`` and ``States.Runtime`` (not retriable/catchable by it, as AWS documents);
    ``States.TaskFailed`` matches any error except ``States.Timeout``; other names match exactly."""
    return retry.error_matches(error_equals, error)
