"""Sending invocations onto the bus and waiting for their results (the gateway's invoke path, and the
controller's asynchronous-event poller, both use it).

One wildcard subscription serves every request of this gateway: each request gets a token, its
JetStream publish acknowledgement comes back on ``<inbox>.a.<token>`` and its result on
``<inbox>.r.<token>``. The publish and the wait thus cost one write and no extra round trip.
A result larger than a small message is announced there instead, and fetched (on
``<inbox>.f.<token>``) when this connection's byte budget has room (kambda/bus/flow.py): sixteen
6 MB results finishing at once must not pile up in nats-server's buffer for this connection.
When the connection is lost, every request waiting here is answered with an error at once (its
result, sent meanwhile, is gone).

The dispatcher also decides when to nudge the controller (Activate): when this gateway has more
requests in flight for a function than the environments the controller last said it wants. The
controller's scale events keep that number current, so a warm function is never nudged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from kambda import bus
from kambda.aws import errors
from kambda.bus import flow
from kambda.v1.invocation_pb2 import Invocation, InvocationResult
from kambda.v1.invoker_pb2 import ScaleEvent

log = logging.getLogger(__name__)

Key = tuple[str, str]
#: A function whose demand stays above what the controller grants is nudged again at most this often.
RENUDGE_S = 1.0
#: How long past a request's start deadline the gateway still listens for the invoker's "started".
START_GRACE_S = 0.25
Activate = Callable[[str, str, int], Awaitable[int]]


class Dispatcher:
    def __init__(self, nc: NATS, activate: Activate,
                 on_scale: Callable[[ScaleEvent], None] = lambda event: None) -> None:
        self._nc = nc
        self._activate = activate
        self._on_scale_event = on_scale
        self._prefix = nc.new_inbox()
        self._tokens = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[InvocationResult]] = {}
        self._started: dict[str, asyncio.Future[None]] = {}
        self._acks: dict[str, asyncio.Future[None]] = {}
        self.in_flight: defaultdict[Key, int] = defaultdict(int)
        self._capacity: dict[Key, int] = {}
        #: Scale events seen per key: an Activate answer older than one of them must not replace it.
        self._scale_events: defaultdict[Key, int] = defaultdict(int)
        self._activating: dict[Key, asyncio.Task[None]] = {}
        #: When the controller last heard of this key's demand, and how much it was.
        self._told: dict[Key, tuple[float, int]] = {}
        self._subs: list[object] = []
        self._budget = flow.budget_of(nc)
        #: Large results being fetched, by token.
        self._fetching: dict[str, asyncio.Future[bytes]] = {}
        self._fetches: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._subs.append(await self._nc.subscribe(f"{self._prefix}.>", cb=self._on_reply))
        self._subs.append(await self._nc.subscribe("kambda.scale.*", cb=self._on_scale))
        watch = bus.watch_of(self._nc)
        if watch is not None:
            watch.listeners.append(self.connection_lost)

    def connection_lost(self, reason: str) -> None:
        """The bus connection dropped: results on their way here are lost, so every waiting request
        is answered now rather than at its deadline."""
        waiting = [fut for fut in self._waiting.values() if not fut.done()]
        for fut in waiting:
            fut.set_exception(errors.ServiceError(f"The connection to the invocation queue was lost ({reason})"))
        if waiting:
            log.warning("answered %d waiting requests with an error: the NATS connection was lost", len(waiting))

    async def stop(self) -> None:
        watch = bus.watch_of(self._nc)
        if watch is not None and self.connection_lost in watch.listeners:
            watch.listeners.remove(self.connection_lost)
        for task in list(self._fetches):
            task.cancel()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]
        for task in self._activating.values():
            task.cancel()

    async def store(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        """Publish to a JetStream subject and return once the stream has stored it (durably, for a
        file-backed stream): an Event invoke is answered 202 only then. ``headers`` may carry
        ``Nats-Msg-Id``, which JetStream uses to drop a duplicate within its dedupe window."""
        token = str(next(self._tokens))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[token] = ack
        try:
            await self._nc.publish(subject, payload, reply=f"{self._prefix}.a.{token}", headers=headers)
            await asyncio.wait_for(ack, 10)
        except TimeoutError:
            raise errors.ServiceError("The event queue did not acknowledge the event") from None
        finally:
            self._acks.pop(token, None)

    async def invoke(self, inv: Invocation, wait_s: float, start_wait_s: float | None = None,
                     throttle_reason: str = "ConcurrentInvocationLimitExceeded") -> InvocationResult:
        """Queue a sync invocation and wait up to ``wait_s`` seconds for its result.

        With ``start_wait_s`` (and ``inv.notify_start``), a run that has not started within that
        long is answered 429 at once; the invoker drops it when it comes to it, never runs it late.
        """
        loop = asyncio.get_running_loop()
        token = str(next(self._tokens))
        result: asyncio.Future[InvocationResult] = loop.create_future()
        self._waiting[token] = result
        started: asyncio.Future[None] | None = None
        if start_wait_s is not None:
            started = self._started[token] = loop.create_future()
        inv.reply_to = f"{self._prefix}.r.{token}"
        key = (inv.function, inv.version)
        self.in_flight[key] += 1

        def throttled() -> errors.KambdaError:  # built only when needed, not per request
            return errors.TooManyRequests("Rate Exceeded.", Reason=throttle_reason)

        try:
            await self._nc.publish(bus.sync_subject(inv.function, inv.version), inv.SerializeToString(),
                                   reply=f"{self._prefix}.a.{token}")
            self._admit(key)
            if started is not None and start_wait_s is not None:
                # The invoker drops the run at its start deadline; a start just before it is
                # announced a moment later, and must not be answered 429 while it runs.
                either: set[asyncio.Future[Any]] = {started, result}
                await asyncio.wait(either, timeout=start_wait_s + START_GRACE_S, return_when=asyncio.FIRST_COMPLETED)
                if not started.done() and not result.done():
                    raise throttled()
            def expire() -> None:
                if not result.done():
                    result.set_exception(throttled())

            timer = loop.call_later(wait_s, expire)
            try:
                return await result
            finally:
                timer.cancel()
        finally:
            self._waiting.pop(token, None)
            self._started.pop(token, None)
            self.in_flight[key] -= 1
            if not self.in_flight[key]:
                del self.in_flight[key]

    async def _on_reply(self, msg: Msg) -> None:
        kind, token = msg.subject[len(self._prefix) + 1:].split(".", 1)
        if kind == "r" and msg.headers and msg.headers.get("Kambda-Started"):
            started = self._started.get(token)
            if started is not None and not started.done():
                started.set_result(None)
            return
        if kind == "r" and msg.headers and msg.headers.get(flow.SIZE_HEADER):
            self._fetch_later(token, msg)
            return
        if kind == "f":
            arrived = self._fetching.get(token)
            if arrived is not None and not arrived.done():
                arrived.set_result(msg.data)
            return
        if kind == "r":
            fut = self._waiting.get(token)
            if fut is not None and not fut.done():
                try:
                    fut.set_result(InvocationResult.FromString(msg.data))
                except Exception:
                    fut.set_exception(errors.ServiceError("Undecodable invocation result"))
            return
        # A publish acknowledgement: an Event waits for it; a sync request only cares if it failed.
        failure = _publish_failure(msg)
        acked: asyncio.Future[Any] | None = self._acks.get(token) or self._waiting.get(token)
        if acked is None or acked.done():
            return
        if failure is not None:
            acked.set_exception(failure)
        elif token in self._acks:
            acked.set_result(None)

    # -- large results -----------------------------------------------------------------------

    def _fetch_later(self, token: str, notice: Msg) -> None:
        waiter = self._waiting.get(token)
        if waiter is None or waiter.done() or not notice.reply:
            if notice.reply:  # nobody waits: the invoker need not hold the result any longer
                task = asyncio.ensure_future(self._nc.publish(notice.reply, b"", headers={flow.GONE_HEADER: "1"}))
                self._fetches.add(task)
                task.add_done_callback(self._fetches.discard)
            return
        size = int(notice.headers.get(flow.SIZE_HEADER, "0")) if notice.headers else 0
        fetch = asyncio.create_task(self._fetch(token, notice.reply, size, waiter))
        self._fetches.add(fetch)
        fetch.add_done_callback(self._fetches.discard)

    async def _fetch(self, token: str, subject: str, size: int, waiter: asyncio.Future[InvocationResult]) -> None:
        """Fetch a large result once the budget has room for it (or give up when its waiter is done)."""
        loop = asyncio.get_running_loop()
        key = object()
        while not self._budget.try_take(size):
            room = loop.create_future()
            self._budget.wait(key, lambda room=room: room.done() or room.set_result(None))  # type: ignore[misc]
            either: set[asyncio.Future[Any]] = {room, waiter}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                self._budget.forget(key)
                await self._nc.publish(subject, b"", headers={flow.GONE_HEADER: "1"})
                return
        arrived: asyncio.Future[bytes] = loop.create_future()
        self._fetching[token] = arrived
        try:
            await self._nc.publish(subject, b"", reply=f"{self._prefix}.f.{token}")
            both: set[asyncio.Future[Any]] = {arrived, waiter}
            done, _ = await asyncio.wait(both, timeout=flow.OFFER_WAIT_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                return
            if arrived not in done:
                waiter.set_exception(errors.ServiceError("The invocation's result did not arrive"))
                return
            try:
                waiter.set_result(InvocationResult.FromString(arrived.result()))
            except Exception:
                waiter.set_exception(errors.ServiceError("Undecodable invocation result"))
        finally:
            self._fetching.pop(token, None)
            self._budget.give(size)

    # -- activation --------------------------------------------------------------------------

    def _admit(self, key: Key) -> None:
        """Nudge the controller when more requests wait here than it has environments for, and it
        has not heard of this much demand yet (a capped function must not be nudged per request:
        the controller's own ticks see its queue)."""
        in_flight = self.in_flight.get(key, 1)
        capacity = self._capacity.get(key, 0)
        if in_flight <= capacity or key in self._activating:
            return
        told_at, told = self._told.get(key, (-1e9, 0))
        if capacity == 0 or in_flight > told or time.monotonic() - told_at > RENUDGE_S:
            self._activating[key] = asyncio.create_task(self._nudge(key))

    async def _nudge(self, key: Key) -> None:
        try:
            attempt = 0
            while attempt < 5:
                attempt += 1
                before = self._capacity.get(key, 0)
                events_before = self._scale_events[key]
                try:
                    wanted = self.in_flight.get(key, 0)
                    self._told[key] = (time.monotonic(), wanted)
                    granted = await self._activate(key[0], key[1], wanted)
                    if self._scale_events[key] == events_before:
                        self._capacity[key] = granted
                        # More arrived while we asked, and the controller could still grant more.
                        if self.in_flight.get(key, 0) > granted > before:
                            attempt = 0
                            continue
                        return
                    # A scale event came while we asked and may be newer than this answer (a
                    # scale-down to zero, say): it stands, and if it is short we ask again below.
                    if self.in_flight.get(key, 0) <= self._capacity.get(key, 0):
                        return
                except errors.KambdaError as exc:
                    log.warning("activate %s:%s failed: %s", key[0], key[1], exc.message)
                if not self.in_flight.get(key):
                    return
                await asyncio.sleep(0.2 * attempt)
        finally:
            self._activating.pop(key, None)

    async def _on_scale(self, msg: Msg) -> None:
        try:
            event = ScaleEvent.FromString(msg.data)
        except Exception:
            return
        self._on_scale_event(event)
        key = (event.function, event.version)
        self._capacity[key] = event.desired
        self._scale_events[key] += 1
        if self.in_flight.get(key, 0) > event.desired and key not in self._activating:
            # Scaled below what is waiting here (a race with scale-down): ask again.
            self._activating[key] = asyncio.create_task(self._nudge(key))


def _publish_failure(msg: Msg) -> errors.KambdaError | None:
    """None when JetStream stored the message, else the error to give the caller."""
    status = msg.headers.get("Status") if msg.headers else None
    if status == "503":
        return errors.ServiceError("The invocation queue is not available")
    if b'"error"' not in msg.data:
        return None  # the common case, without parsing the acknowledgement
    try:
        ack = json.loads(msg.data) if msg.data else {}
    except ValueError:
        return errors.ServiceError("Undecodable acknowledgement from the invocation queue")
    error = ack.get("error") if isinstance(ack, dict) else None
    if error:
        description = str(error.get("description", ""))
        if "maximum" in description or "full" in description:
            return errors.TooManyRequests("Rate Exceeded.", Reason="ConcurrentInvocationLimitExceeded")
        return errors.ServiceError(f"The invocation queue refused the request: {description}")
    return None
