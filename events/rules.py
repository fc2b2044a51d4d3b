"""The event rules, as a copy of the ``rule/`` keys of the ``kambda_events`` bucket kept current by
a KV watch, with each bus's compiled pattern index (rebuilt after a change of its rules).

The worker's event router matches events against it; the leader's schedule ticker reads the
schedule rules from it.
"""

from __future__ import annotations

import contextlib
import json
import logging

from nats.js import JetStreamContext

from events import patterns
from events.store import Record
from kambda import bus
from kambda.bus.kvwatch import KvWatch

log = logging.getLogger(__name__)


class Rules:
    def __init__(self, js: JetStreamContext) -> None:
        self._rules: dict[str, Record] = {}  # KV key -> rule
        self._compiled: dict[tuple[str, str], patterns.Node] = {}  # (key, pattern) -> node
        self._indexes: dict[str, patterns.RuleIndex] = {}
        self._dirty: set[str] = set()
        self._watch = KvWatch(js, bus.EVENTS_BUCKET, self._apply, "event rules")

    async def start(self) -> None:
        await self._watch.start()

    async def stop(self) -> None:
        await self._watch.stop()

    def _apply(self, key: str, value: bytes | None) -> None:
        if not key.startswith("rule/"):
            return
        self._dirty.add(key.split("/")[1])
        if not value:
            self._rules.pop(key, None)
        else:
            with contextlib.suppress(ValueError):
                self._rules[key] = json.loads(value)

    def get(self, key: str) -> Record | None:
        return self._rules.get(key)

    def all(self) -> list[Record]:
        return list(self._rules.values())

    def index(self, event_bus: str) -> patterns.RuleIndex:
        """The compiled enabled pattern rules of a bus (rebuilt after a change)."""
        if event_bus in self._dirty or event_bus not in self._indexes:
            self._dirty.discard(event_bus)
            compiled = {}
            for key, rule in self._rules.items():
                if rule.get("EventBusName") != event_bus or rule.get("State") != "ENABLED":
                    continue
                if not rule.get("EventPattern"):
                    continue
                cache_key = (key, rule["EventPattern"])
                if cache_key not in self._compiled:
                    try:
                        self._compiled[cache_key] = patterns.parse(rule["EventPattern"])
                    except patterns.InvalidEventPattern as exc:
                        log.warning("rule %s has an invalid pattern: %s", key, exc.message)
                        continue
                compiled[key] = self._compiled[cache_key]
            self._indexes[event_bus] = patterns.RuleIndex(compiled.items())
        return self._indexes[event_bus]
