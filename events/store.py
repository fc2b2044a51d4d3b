"""Event buses, rules and targets as they are stored, and the event envelope.

Everything lives in the ``kambda_events`` KV bucket (kambda/bus.py), as JSON:

- ``bus/<name>``: ``{"Name", "CreatedAt"}``; the ``default`` bus is implicit and always exists;
- ``rule/<bus>/<name>``: the rule with its targets in one value (``Name``, ``EventBusName``,
  ``EventPattern``, ``ScheduleExpression``, ``State``, ``Description``, ``CreatedAt``,
  ``ScheduleAnchor``, ``Targets``), so that a change of targets is one compare-and-set;
- ``fired/<bus>/<name>``: the last tick of a schedule that was fired (ISO time), updated with
  compare-and-set so that two controllers never fire one tick twice.

The gateway writes rules (each change is a compare-and-set against the revision it read, retried
on a conflict); the workers and the leader controller watch the bucket (events/rules.py).

Events travel on ``kambda.events.<bus>`` (stream KAMBDA_EVENTS) as the EventBridge envelope in
JSON; :func:`envelope` fills what a publisher left out.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from kambda import bus
from kambda.aws import errors
from kambda.bus import kvwatch

DEFAULT_BUS = "default"
NAME_RE = re.compile(r"[.\-_A-Za-z0-9]{1,64}")
BUS_NAME_RE = re.compile(r"[.\-_A-Za-z0-9]{1,256}")
MAX_TARGETS_PER_RULE = 5
CAS_ATTEMPTS = 8

Record = dict[str, Any]


def bus_key(name: str) -> str:
    return f"bus/{name}"


def rule_key(event_bus: str, name: str) -> str:
    return f"rule/{event_bus}/{name}"


def fired_key(event_bus: str, name: str) -> str:
    return f"fired/{event_bus}/{name}"


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(event: Record, account: str, region: str, now: datetime) -> Record:
    """The EventBridge envelope of an event, with ``id``, ``time``, ``version``, ``account``,
    ``region`` and ``resources`` filled in when the publisher left them out."""
    return {
        "version": str(event.get("version", "0")),
        "id": str(event.get("id") or uuid.uuid4()),
        "detail-type": event.get("detail-type", ""),
        "source": event.get("source", ""),
        "account": str(event.get("account") or account),
        "time": str(event.get("time") or iso(now)),
        "region": str(event.get("region") or region),
        "resources": list(event.get("resources") or []),
        "detail": event.get("detail", {}),
    }


class Store:
    """The KV bucket, with compare-and-set updates."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None

    async def kv(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._js.key_value(bus.EVENTS_BUCKET)
        return self._kv

    async def get(self, key: str) -> tuple[Record | None, int]:
        """The value at ``key`` and its revision (None and 0 when there is none)."""
        try:
            entry = await (await self.kv()).get(key)
        except KeyNotFoundError:
            return None, 0
        if not entry.value:
            return None, 0
        return json.loads(entry.value), entry.revision or 0

    async def create(self, key: str, value: Record) -> bool:
        """Store a new value; False when the key exists already."""
        kv = await self.kv()
        try:
            await kv.create(key, json.dumps(value).encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def update(self, key: str, change: Callable[[Record | None], Awaitable[Record | None] | Record | None],
                     ) -> Record | None:
        """Read, change and write back ``key`` with compare-and-set, retrying on a conflict.

        ``change`` gets the current value (or None) and returns the new one, or None to delete."""
        kv = await self.kv()
        for _ in range(CAS_ATTEMPTS):
            current, revision = await self.get(key)
            result = change(current)
            new = await result if isinstance(result, Awaitable) else result
            try:
                if new is None:
                    if revision:
                        await kv.delete(key, last=revision)
                elif revision:
                    await kv.update(key, json.dumps(new).encode(), last=revision)
                else:
                    await kv.create(key, json.dumps(new).encode())
                return new
            except KeyWrongLastSequenceError:
                continue
        raise errors.ConcurrentModification(f"{key} was changed by another request meanwhile; try again")

    async def delete(self, key: str) -> None:
        await (await self.kv()).delete(key)

    async def keys(self, prefix: str) -> list[str]:
        return [k for k in await kvwatch.keys(self._js, await self.kv()) if k.startswith(prefix)]

    async def values(self, prefix: str) -> list[Record]:
        out = []
        for key in await self.keys(prefix):
            value, _ = await self.get(key)
            if value is not None:
                out.append(value)
        return out
