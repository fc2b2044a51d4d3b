"""An execution's history: AWS's events, appended to the execution's own subject, read back to resume it.

Each event has AWS's shape (``id``, ``previousEventId``, ``timestamp``, ``type``, ``<...>EventDetails``) plus
two fields of kambda's own that GetExecutionHistory leaves out: ``k``, the deterministic key of the step that
recorded it (``Map/3/Task#1.0:start``), by which a replay finds what happened, and ``x``, what the replay needs
beyond AWS's fields (the variables a state assigned, a timer's due time).

Events are buffered while an execution runs pure states and written, several to one message, before anything
takes effect outside (a task is dispatched, a timer set, the execution closes): a message is published with
``Nats-Expected-Last-Subject-Sequence`` (compare-and-set: a second writer of the same execution fails, reloads
and finds the first one's events) and ``Nats-Msg-Id`` ``<execution>:<first event id>`` (deduplicated). The
history is read back with one batched direct get (nats-server 2.11+), not a consumer per execution.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import APIError

from kambda import bus

#: nats-server's error code of a failed Nats-Expected-Last-Subject-Sequence.
WRONG_LAST_SEQUENCE = 10071
#: AWS's quota of events per execution.
MAX_EVENTS = 25_000
#: A message of the history holds at most this many bytes of events (the stream allows 1 MB).
FLUSH_BYTES = 512 * 1024
READ_BATCH = 1000


class Superseded(Exception):
    """Another writer appended to this execution's history first: this run's view of it is stale."""


@dataclass
class Event:
    id: int
    prev: int
    ts: float
    type: str
    details: dict[str, Any] | None = None
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {"i": self.id, "p": self.prev, "t": self.ts, "y": self.type, "k": self.key}
        if self.details is not None:
            out["d"] = self.details
        if self.extra:
            out["x"] = self.extra
        return out

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Event:
        return cls(raw["i"], raw["p"], raw["t"], raw["y"], raw.get("d"), raw.get("k", ""), raw.get("x") or {})

    def aws(self, include_data: bool = True) -> dict[str, Any]:
        """The event as GetExecutionHistory answers it."""
        out: dict[str, Any] = {"timestamp": self.ts, "type": self.type, "id": self.id,
                               "previousEventId": self.prev}
        if self.details is not None:
            details = self.details
            if not include_data:
                details = {k: v for k, v in details.items() if k not in ("input", "output", "parameters")}
            out[details_key(self.type)] = details
        return out


def details_key(event_type: str) -> str:
    """The member of HistoryEvent that holds an event type's details (``stateEnteredEventDetails``...)."""
    if event_type.endswith("StateEntered"):
        return "stateEnteredEventDetails"
    if event_type.endswith("StateExited"):
        return "stateExitedEventDetails"
    return event_type[0].lower() + event_type[1:] + "EventDetails"


async def read(nc: NATS, execution: str, timeout: float = 10.0) -> tuple[list[Event], int]:
    """Every event of an execution's history, and the stream sequence of its last message (0: none)."""
    subject = bus.sfn_history_subject(execution)
    events: list[Event] = []
    last_seq = 0
    start = 1
    while True:
        batch, last_seq_batch, more = await _batch(nc, subject, start, timeout)
        for msg in batch:
            events.extend(Event.of(raw) for raw in orjson.loads(msg.data))
        if last_seq_batch:
            last_seq = last_seq_batch
        if not more:
            return events, last_seq
        start = last_seq + 1


async def _batch(nc: NATS, subject: str, start: int, timeout: float) -> tuple[list[Msg], int, bool]:
    """One batched direct get from ``start``: the messages, the last one's sequence, whether more follow."""
    inbox = nc.new_inbox()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    got: list[Msg] = []
    state = {"last": 0, "more": False}

    async def on_msg(msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is not None:
            if status == "204":  # end of batch
                state["more"] = int(headers.get("Nats-Num-Pending", "0") or 0) > 0 and len(got) >= READ_BATCH
            if not done.done():
                done.set_result(None)
            return
        got.append(msg)
        state["last"] = int(headers.get("Nats-Sequence", "0"))
        if int(headers.get("Nats-Num-Pending", "1") or 0) == 0 and not done.done():
            done.set_result(None)

    sub = await nc.subscribe(inbox, cb=on_msg)
    try:
        request = {"seq": start, "next_by_subj": subject, "batch": READ_BATCH}
        await nc.publish(f"$JS.API.DIRECT.GET.{bus.SFN_HISTORY_STREAM}", orjson.dumps(request), reply=inbox)
        await asyncio.wait_for(done, timeout)
    finally:
        await sub.unsubscribe()
    return got, state["last"], bool(state["more"])


def _visits(key: str) -> list[str]:
    """The state visits a key lies within, outermost first: ``M#1/3/T#1.0:done`` -> ``M#1``, ``M#1/3/T#1``."""
    path = key.split(":", 1)[0]
    out = []
    for i, part in enumerate(path.split("/")):
        if "#" in part:
            visit = part.split("#", 1)[1].split(".", 1)[0]
            prefix = "/".join(path.split("/")[:i])
            out.append((prefix + "/" if prefix else "") + part.split("#", 1)[0] + "#" + visit)
    return out


def _replayable(events: list[Event]) -> dict[str, Event]:
    """The events a replay may find by key. After a redrive (RedriveExecution), only what succeeded before it
    stands: an event within a state visit that never exited (the failed state, a Map or Parallel around it) is
    run again, as AWS reruns an execution from the state that failed."""
    by_key = {e.key: e for e in events if e.key}
    redriven = [i for i, e in enumerate(events) if e.type == "ExecutionRedriven"]
    if not redriven:
        return by_key
    last = redriven[-1]
    before = events[:last]
    exited = {e.key[:-4] for e in before if e.key.endswith(":out")}
    kept = {e.key: e for e in before if e.key and e.key not in ("end",)
            and all(visit in exited for visit in _visits(e.key))}
    kept.update({e.key: e for e in events[last:] if e.key})
    return kept


class Journal:
    """The history of one execution as a run sees it: the events recorded before (found by key on a replay)
    and the new ones, buffered until :meth:`flush` writes them."""

    def __init__(self, events: list[Event] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.events = events or []
        self.by_key = _replayable(self.events)
        self.clock = clock
        self.pending: list[Event] = []

    @property
    def count(self) -> int:
        return len(self.events)

    def find(self, key: str) -> Event | None:
        return self.by_key.get(key)

    def add(self, key: str, event_type: str, details: dict[str, Any] | None, prev: int,
            extra: dict[str, Any] | None = None) -> Event:
        """The event of ``key``: the one recorded before, or a new one (buffered)."""
        found = self.by_key.get(key) if key else None
        if found is not None:
            return found
        if len(self.events) >= MAX_EVENTS:
            from workflows.language import StatesError

            raise StatesError("States.Runtime", f"The execution reached the maximum number of history events "
                                                f"({MAX_EVENTS}).")
        event = Event(len(self.events) + 1, prev, self.clock(), event_type, details, key, extra or {})
        self.events.append(event)
        if key:
            self.by_key[key] = event
        self.pending.append(event)
        return event

    async def flush(self) -> None:
        self.pending.clear()


class DurableJournal(Journal):
    """A journal whose flush appends to the execution's subject, compare-and-set."""

    def __init__(self, nc: NATS, execution: str, events: list[Event], last_seq: int,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(events, clock)
        self._js = nc.jetstream()
        self._execution = execution
        self._subject = bus.sfn_history_subject(execution)
        self.last_seq = last_seq
        self._lock = asyncio.Lock()

    async def flush(self) -> None:
        async with self._lock:
            while self.pending:
                chunk: list[Event] = []
                size = 0
                while self.pending and (not chunk or size < FLUSH_BYTES):
                    event = self.pending.pop(0)
                    chunk.append(event)
                    size += len(orjson.dumps(event.details)) if event.details else 32
                await self._append(chunk)

    async def _append(self, chunk: list[Event]) -> None:
        headers = {"Nats-Msg-Id": f"{self._execution}:{chunk[0].id}",
                   "Nats-Expected-Last-Subject-Sequence": str(self.last_seq)}
        try:
            ack = await self._js.publish(self._subject, orjson.dumps([e.stored() for e in chunk]), headers=headers,
                                         timeout=10)
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise Superseded(self._execution) from None
            raise
        if ack.duplicate:
            raise Superseded(self._execution)
        self.last_seq = ack.seq


async def append_first(nc: NATS, execution: str, event: Event) -> bool:
    """Write an execution's first event (ExecutionStarted); False when the history has one already."""
    journal = DurableJournal(nc, execution, [], 0)
    journal.pending.append(event)
    try:
        await journal.flush()
    except Superseded:
        return False
    return True
