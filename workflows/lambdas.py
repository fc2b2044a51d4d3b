"""Calling Lambda functions from a workflow: through the dispatcher (EXPRESS, in memory), or durably (STANDARD).

A durable call is published on the function's sync queue with the results stream as its reply subject:
``kambda.sfn.results.<execution>.<scheduled event id>``. The invoker publishes the result there, JetStream
keeps it, and the worker waiting for it hears it on the same subject. A worker that resumes an execution whose
task had started reads the result from the stream if it came meanwhile, and otherwise publishes the invocation
again under the same ``Nats-Msg-Id`` (the task's id: JetStream drops it if the first one is still known) and
waits. A completed task is therefore never run again; one whose run was cut off with nats-server itself can run
twice, at least once in every case (as on AWS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from kambda import bus
from kambda.aws import errors
from kambda.bus import flow
from kambda.bus.dispatch import Dispatcher
from kambda.names import parse_function
from kambda.v1.invocation_pb2 import Invocation, InvocationResult
from workflows.language import StatesError
from workflows.tasks import LambdaResult

log = logging.getLogger(__name__)

#: (function name, qualifier) -> (executed version, the function's timeout in seconds); raises ResourceNotFound.
Resolve = Callable[[str, str | None], Awaitable[tuple[str, int]]]
Activate = Callable[[str, str, int], Awaitable[int]]
#: How long a call may wait for an environment before it is dropped by the invoker.
QUEUE_TIMEOUT_S = 30.0
NUDGE_EVERY_S = 1.0


def _ref(function: str) -> tuple[str, str | None]:
    try:
        ref = parse_function(function)
    except errors.KambdaError as err:
        raise StatesError("Lambda.InvalidParameterValueException", err.message) from None
    return ref.name, ref.qualifier


async def _resolved(resolve: Resolve, name: str, qualifier: str | None) -> tuple[str, int]:
    try:
        return await resolve(name, qualifier)
    except errors.ResourceNotFound as err:
        raise StatesError("Lambda.ResourceNotFoundException", err.message) from None


def _result(answer: InvocationResult) -> LambdaResult:
    return LambdaResult(answer.payload, answer.function_error, answer.error_code, answer.error_message,
                        answer.executed_version or "$LATEST")


async def call_in_memory(dispatcher: Dispatcher, resolve: Resolve, function: str, payload: bytes,
                         timeout: int | None) -> LambdaResult:
    """One sync invocation through the dispatcher (what an EXPRESS execution does)."""
    name, qualifier = _ref(function)
    version, function_timeout = await _resolved(resolve, name, qualifier)
    now_ms = int(time.time() * 1000)
    inv = Invocation(request_id=str(uuid.uuid4()), function=name, version=version, payload=payload,
                     invocation_type="RequestResponse", enqueued_ms=now_ms,
                     start_deadline_ms=now_ms + int(QUEUE_TIMEOUT_S * 1000))
    wait = float(timeout) if timeout is not None else QUEUE_TIMEOUT_S + function_timeout + 5
    try:
        return _result(await dispatcher.invoke(inv, wait))
    except errors.TooManyRequests as err:
        if timeout is not None:
            raise StatesError("States.Timeout", "The task timed out") from None
        raise StatesError("Lambda.TooManyRequestsException", err.message) from None
    except errors.KambdaError as err:
        raise StatesError("Lambda.ServiceException", err.message) from None


class DurableLambda:
    """Lambda calls whose results are kept on the results stream (see the module docstring)."""

    def __init__(self, nc: NATS, resolve: Resolve, activate: Activate) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._resolve = resolve
        self._activate = activate
        self._nudged: dict[tuple[str, str], float] = {}

    async def call(self, function: str, payload: bytes, task_id: str, started: float,
                   timeout: int | None) -> LambdaResult:
        name, qualifier = _ref(function)
        execution, _, event_id = task_id.partition(".")
        subject = bus.sfn_result_subject(execution, int(event_id))
        arrived: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

        async def on_result(msg: Msg) -> None:
            if not arrived.done():
                arrived.set_result(msg)

        sub = await self._nc.subscribe(subject, cb=on_result)
        try:
            kept = await self._kept(subject)
            if kept is not None:
                return kept
            version, function_timeout = await _resolved(self._resolve, name, qualifier)
            limit = float(timeout) if timeout is not None else QUEUE_TIMEOUT_S + function_timeout + 5
            left = started + limit - time.time()
            if left <= 0:
                raise StatesError("States.Timeout", "The task timed out")
            now_ms = int(time.time() * 1000)
            inv = Invocation(request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, task_id)), function=name,
                             version=version, payload=payload, invocation_type="RequestResponse",
                             enqueued_ms=now_ms, start_deadline_ms=now_ms + int(QUEUE_TIMEOUT_S * 1000),
                             reply_to=subject)
            await self._nc.publish(bus.sync_subject(name, version), inv.SerializeToString(),
                                   headers={"Nats-Msg-Id": task_id})
            await self._nudge(name, version)
            try:
                msg = await asyncio.wait_for(arrived, left)
            except TimeoutError:
                raise StatesError("States.Timeout", "The task timed out") from None
            return await self._decode(msg, subject)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _kept(self, subject: str) -> LambdaResult | None:
        try:
            raw = await self._js.get_last_msg(bus.SFN_RESULTS_STREAM, subject, direct=True)
        except NotFoundError:
            return None
        if not raw.data:
            return None
        return _result(InvocationResult.FromString(raw.data))

    async def _decode(self, msg: Msg, subject: str) -> LambdaResult:
        if msg.headers and msg.headers.get(flow.SIZE_HEADER) and msg.reply:
            # A large result is offered, not pushed: fetch it, and keep it on the stream for a replay.
            answer = await self._nc.request(msg.reply, b"", timeout=flow.OFFER_WAIT_S)
            with contextlib.suppress(Exception):
                await self._js.publish(subject, answer.data, timeout=10)
            return _result(InvocationResult.FromString(answer.data))
        return _result(InvocationResult.FromString(msg.data))

    async def _nudge(self, name: str, version: str) -> None:
        """Ask the controller for an environment at most once a second per function (its ticks see the queue)."""
        key = (name, version)
        now = time.monotonic()
        if now - self._nudged.get(key, -1e9) < NUDGE_EVERY_S:
            return
        self._nudged[key] = now
        task = asyncio.ensure_future(self._activate(name, version, 1))
        task.add_done_callback(lambda done: _log_failure(done, name))


def _log_failure(task: asyncio.Future[int], name: str) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("activate %s failed: %s", name, task.exception())


def resolver_of(lookup: Any) -> Resolve:
    """A Resolve over a functions.lookup.FunctionLookup (the worker's registry mirror)."""
    import random

    from kambda.names import LATEST, pick_version

    async def resolve(name: str, qualifier: str | None) -> tuple[str, int]:
        for attempt in range(2):
            if attempt:
                await lookup.caught_up()
            if name not in lookup:
                continue
            version = qualifier or LATEST
            if version != LATEST and lookup.has_alias(name, version):
                alias = lookup.get_alias(name, version)
                version = pick_version(alias.function_version, alias.additional_version_weights, random.random())
            if lookup.has_version(name, version):
                return version, int(lookup.get_version(name, version).timeout or 3)
        raise errors.ResourceNotFound(f"Function not found: {name}" + (f":{qualifier}" if qualifier else ""))

    return resolve
