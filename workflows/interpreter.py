"""Runs a state machine's states, recording each transition as AWS's history events, over a :class:`Runtime`.

The same code runs a STANDARD execution (the durable runtime of workflows/executor.py: a journal appended to
JetStream, timers on the work stream) and an EXPRESS one (workflows/express.py: in memory). It is deterministic
given the history: every event is recorded under a key built from where it happens (``<scope>/<state>#<visit>``,
a Map iteration's scope is ``<map key>/<index>/``, a retry's attempt is ``.<n>``), so a replay after a crash
walks the same keys, finds the events recorded before (their outputs and variables, not recomputed), and
continues from the first one missing. Side effects (tasks, timers) happen only after what announces them is
written (``Runtime.flush``).

State processing (InputPath, Parameters, JSONata, Choice rules, Retry/Catch arithmetic) is workflows.language's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from workflows import language as asl
from workflows.history import Event, Journal
from workflows.language import Machine, State, StatesError

RUNTIME = "States.Runtime"


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Runtime(Protocol):
    """What the interpreter needs of the executor that runs it."""

    journal: Journal
    clock: Callable[[], float]

    async def flush(self) -> None:
        """Write the recorded events before anything takes effect outside."""

    async def sleep_until(self, key: str, due: float) -> None:
        """Return at ``due`` (epoch seconds): a durable timer, or a sleep in memory."""

    def busy(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Around an await that makes progress by itself (a task running): the run is not idle meanwhile."""


@dataclass
class Scope:
    """Where in the execution a machine runs: the top level, a Parallel branch or a Map iteration."""

    path: str
    variables: dict[str, Any]
    prev: int
    visits: dict[str, int] = field(default_factory=dict)


@dataclass
class TaskCall:
    state: State
    args: Any
    ctx: dict[str, Any]
    key: str
    scope: Scope
    timeout: int | None
    heartbeat: int | None
    token: str | None


Tasks = Callable[["Interpreter", TaskCall], Awaitable[Any]]


class Interpreter:
    def __init__(self, runtime: Runtime, execution_id: str, context: dict[str, Any], tasks: Tasks) -> None:
        """``context``: the ``Execution`` and ``StateMachine`` parts of ``$$``; ``tasks`` runs a Task's resource
        (workflows/tasks.py), recording its events through :meth:`event`."""
        self.rt = runtime
        self.context = context
        self.tasks = tasks
        self.execution_id = execution_id
        self.transitions = 0

    # -- events ---------------------------------------------------------------------------------------------------

    def event(self, scope: Scope, key: str, event_type: str, details: dict[str, Any] | None = None,
              extra: dict[str, Any] | None = None) -> Event:
        event = self.rt.journal.add(key, event_type, details, scope.prev, extra)
        scope.prev = event.id
        return event

    # -- the execution --------------------------------------------------------------------------------------------

    async def run(self, machine: Machine, execution_input: Any, started: Event) -> tuple[str, Any, str, str]:
        """Run to the end: (status, output, error, cause), the closing event recorded and flushed."""
        scope = Scope("", {}, started.id)
        try:
            output = await self.machine(machine, execution_input, scope)
        except StatesError as err:
            self.event(scope, "end", "ExecutionFailed", {"error": err.error, "cause": err.cause})
            await self.rt.flush()
            return "FAILED", None, err.error, err.cause
        self.event(scope, "end", "ExecutionSucceeded", {"output": dumps(output), "outputDetails": _whole()})
        await self.rt.flush()
        return "SUCCEEDED", output, "", ""

    async def machine(self, machine: Machine, state_input: Any, scope: Scope) -> Any:
        name: str | None = machine.start_at
        value = state_input
        while name is not None:
            state = machine.states.get(name)
            if state is None:
                raise StatesError(RUNTIME, f"The state machine has no state named '{name}'")
            visit = scope.visits[name] = scope.visits.get(name, 0) + 1
            value, name = await self.state(state, value, scope, f"{scope.path}{name}#{visit}")
        return value

    def ctx(self, state: State, entered: Event, retry_count: int = 0) -> dict[str, Any]:
        return {**self.context, "State": {"Name": state.name, "EnteredTime": iso(entered.ts),
                                          "RetryCount": retry_count},
                asl.ENTERED_EVENT_ID: entered.id}

    async def state(self, state: State, state_input: Any, scope: Scope, key: str) -> tuple[Any, str | None]:
        """Run one state: its output and the next state's name (None: the end of this machine)."""
        kind = state.type
        entered = self.event(scope, key + ":in", f"{kind}StateEntered",
                             {"name": state.name, "input": dumps(state_input), "inputDetails": _whole()})
        self.transitions += 1
        ctx = self.ctx(state, entered)
        variables = scope.variables
        following = None if state.terminal else state.next
        if kind == "Fail":
            error, cause = asl.fail_of(state, state_input, ctx, variables)
            raise StatesError(error, cause)
        if kind in ("Task", "Parallel", "Map"):
            try:
                result = await self._retrying(state, state_input, ctx, scope, key)
                output, variables = asl.leave(state, state_input, result, ctx, variables)
            except StatesError as err:
                caught = asl.catch(state, err.error, err.cause, state_input, ctx, variables) if state.catch else None
                if caught is None:
                    raise
                following, output, variables = caught
        elif kind == "Choice":
            following, output, variables = asl.decide(state, state_input, ctx, variables)
        elif kind == "Wait":
            due = asl.wait_until(state, state_input, ctx, variables, datetime.fromtimestamp(entered.ts, UTC))
            await self.rt.sleep_until(key + ":wait", due.timestamp())
            output, variables = asl.leave(state, state_input, None, ctx, variables)
        elif kind == "Pass":
            output, variables = asl.leave(state, state_input, asl.enter(state, state_input, ctx, variables), ctx,
                                          variables)
        else:  # Succeed
            output, variables = asl.leave(state, state_input, None, ctx, variables)
        extra: dict[str, Any] = {"n": following}
        if variables is not scope.variables:
            extra["v"] = variables
        exited = self.event(scope, key + ":out", f"{kind}StateExited",
                            {"name": state.name, "output": dumps(output), "outputDetails": _whole()}, extra)
        if exited.extra is not extra:  # recorded before: what it says stands (JSONata's $uuid is not replayed)
            output = orjson.loads(exited.details["output"]) if exited.details else output
            following = exited.extra.get("n", following)
            variables = exited.extra.get("v", variables)
        scope.variables = variables
        return output, following

    # -- Retry ----------------------------------------------------------------------------------------------------

    async def _retrying(self, state: State, state_input: Any, ctx: dict[str, Any], scope: Scope, key: str) -> Any:
        attempts = [0] * len(state.retry)
        attempt = 0
        while True:
            try:
                return await self._attempt(state, state_input, ctx, scope, f"{key}.{attempt}", attempt)
            except StatesError as err:
                if not state.retry or err.error == RUNTIME:
                    raise
                rng = random.Random(f"{self.execution_id}:{key}.{attempt}")
                picked = asl.retry_delay(state, err.error, attempts, rng)
                if picked is None:
                    raise
                index, delay = picked
                attempts[index] += 1
                failed_at = self.rt.journal.events[scope.prev - 1].ts if scope.prev else self.rt.clock()
                attempt += 1
                await self.rt.sleep_until(f"{key}.{attempt}:retry", failed_at + delay)

    async def _attempt(self, state: State, state_input: Any, ctx: dict[str, Any], scope: Scope, key: str,
                       attempt: int) -> Any:
        ctx = {**ctx, "State": {**ctx["State"], "RetryCount": attempt}}
        variables = scope.variables
        if state.type == "Parallel":
            return await self._parallel(state, asl.enter(state, state_input, ctx, variables), ctx, scope, key)
        if state.type == "Map":
            return await self._map(state, state_input, asl.enter(state, state_input, ctx, variables), ctx, scope,
                                   key)
        token = None
        resource = state.resource or ""
        if resource.endswith(".waitForTaskToken") or ":activity:" in resource:
            token = task_token(self.execution_id, key)
            ctx = {**ctx, "Task": {"Token": token}}
        args = asl.enter(state, state_input, ctx, variables)
        call = TaskCall(state, args, ctx, key, scope, asl.timeout_seconds(state, state_input, ctx, variables),
                        asl.heartbeat_seconds(state, state_input, ctx, variables), token)
        return await self.tasks(self, call)

    # -- Parallel and Map -----------------------------------------------------------------------------------------

    async def _parallel(self, state: State, effective: Any, ctx: dict[str, Any], scope: Scope, key: str) -> Any:
        self.event(scope, key + ":started", "ParallelStateStarted")
        branches = [Scope(f"{key}/b{i}/", dict(scope.variables), scope.prev) for i in range(len(state.branches))]
        runs = [asyncio.ensure_future(self.machine(branch, effective, sub))
                for branch, sub in zip(state.branches, branches, strict=True)]
        try:
            outputs = await asyncio.gather(*runs)
        except StatesError as err:
            await _cancel(runs)
            scope.prev = max([scope.prev] + [b.prev for b in branches])
            self.event(scope, key + ":failed", "ParallelStateFailed", {"error": err.error, "cause": err.cause})
            raise
        scope.prev = max([scope.prev] + [b.prev for b in branches])
        self.event(scope, key + ":succeeded", "ParallelStateSucceeded")
        return list(outputs)

    async def _map(self, state: State, state_input: Any, effective: Any, ctx: dict[str, Any], scope: Scope,
                   key: str) -> Any:
        variables = scope.variables
        inputs = asl.items(state, effective, ctx, variables)
        if state.processor is None:
            raise StatesError(RUNTIME, f"Map state '{state.name}' has no ItemProcessor")
        processor = state.processor
        self.event(scope, key + ":started", "MapStateStarted", {"length": len(inputs)})
        limit = asl.max_concurrency(state, state_input, ctx, variables) or len(inputs) or 1
        gate = asyncio.Semaphore(limit)
        failures: list[StatesError] = []
        subs = [Scope(f"{key}/{i}/", dict(variables), scope.prev) for i in range(len(inputs))]
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def iteration(index: int, item: Any) -> Any:
            sub = subs[index]
            async with gate:
                if outcome.done():
                    return None
                sub.prev = scope.prev
                self.event(sub, f"{key}/{index}:start", "MapIterationStarted", {"name": state.name, "index": index})
                try:
                    output = await self.machine(processor, item, sub)
                except StatesError as err:
                    self.event(sub, f"{key}/{index}:end", "MapIterationFailed", {"name": state.name, "index": index})
                    failures.append(err)
                    if not asl.tolerated(state, len(inputs), len(failures), state_input, ctx, variables) \
                            and not outcome.done():
                        outcome.set_exception(err)
                    return {"Error": err.error, "Cause": err.cause}
                self.event(sub, f"{key}/{index}:end", "MapIterationSucceeded", {"name": state.name, "index": index})
                return output

        runs = [asyncio.ensure_future(iteration(i, item)) for i, item in enumerate(inputs)]
        everything = asyncio.ensure_future(asyncio.gather(*runs))
        try:
            await asyncio.wait({everything, outcome}, return_when=asyncio.FIRST_COMPLETED)
            if outcome.done():
                err = outcome.exception()
                await _cancel(runs)
                everything.cancel()
                scope.prev = max([scope.prev] + [s.prev for s in subs])
                if state.raw.get("ToleratedFailureCount") is not None or \
                        state.raw.get("ToleratedFailurePercentage") is not None:
                    err = StatesError("States.ExceedToleratedFailureThreshold",
                                      "The specified tolerated failure threshold was exceeded")
                assert isinstance(err, StatesError)
                self.event(scope, key + ":failed", "MapStateFailed", {"error": err.error, "cause": err.cause})
                raise err
            outputs = everything.result()
        finally:
            if not outcome.done():
                outcome.cancel()
        scope.prev = max([scope.prev] + [s.prev for s in subs])
        self.event(scope, key + ":succeeded", "MapStateSucceeded")
        return list(outputs)


def task_token(execution_id: str, key: str) -> str:
    """A task's token: which execution and which attempt of which state (deterministic, so a replay hands the
    same token to the same Parameters)."""
    import base64

    return base64.urlsafe_b64encode(f"{execution_id}|{key}".encode()).decode().rstrip("=")


def parse_token(token: str) -> tuple[str, str] | None:
    import base64
    import binascii

    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    execution, sep, key = text.partition("|")
    if not sep or len(execution) != 32 or not key:
        return None
    return execution, key


async def _cancel(runs: Sequence[asyncio.Future[Any]]) -> None:
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)


def _whole() -> dict[str, bool]:
    return {"truncated": False}


@contextlib.asynccontextmanager
async def nothing() -> AsyncIterator[None]:
    yield
