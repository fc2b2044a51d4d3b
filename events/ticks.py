"""Schedule ticks, fired by the leader controller alone (the worker tier runs what they store).

Every second the ticker looks for schedule rules whose latest tick has not been fired
(``fired/<bus>/<rule>`` in KV). Firing stores the invocations with a ``Nats-Msg-Id`` made of the
rule, target and tick, then records the tick with compare-and-set. Two controllers that race on a
tick (a deposed leader that has not noticed yet, and its successor) store one invocation
(JetStream drops the duplicate) and record it once; a controller that dies between the two
steps is covered the same way by the next one. A tick that passed while no controller ran is
fired late once (only the latest one, never a backlog).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError

from events import schedules
from events import store as eventbus
from events.rules import Rules
from events.store import Record, Store
from events.targets import Targets
from kambda.names import Arns

log = logging.getLogger(__name__)

SCHEDULE_EVERY_S = 1.0


class ScheduleTicker:
    def __init__(self, js: JetStreamContext, rules: Rules, targets: Targets, arns: Arns,
                 clock: Callable[[], float] = time.time) -> None:
        self._rules = rules
        self._targets = targets
        self._arns = arns
        self._clock = clock
        self._store = Store(js)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.fire_due(datetime.fromtimestamp(self._clock(), UTC))
            except Exception:
                log.exception("firing schedules failed")
            await asyncio.sleep(SCHEDULE_EVERY_S)

    async def fire_due(self, now: datetime) -> int:
        """Fire every schedule rule whose latest tick at or before ``now`` was not fired yet."""
        fired = 0
        for rule in self._rules.all():
            if rule.get("State") != "ENABLED" or not rule.get("ScheduleExpression"):
                continue
            anchor = datetime.fromtimestamp(float(rule.get("ScheduleAnchor", rule.get("CreatedAt", 0)) or 0), UTC)
            try:
                tick = schedules.parse(rule["ScheduleExpression"], anchor).latest_due(now)
            except Exception as exc:
                log.warning("rule %s has a bad schedule: %s", rule["Name"], exc)
                continue
            if tick is None or tick <= anchor:
                continue
            if await self._fire(rule, tick):
                fired += 1
        return fired

    async def _fire(self, rule: Record, tick: datetime) -> bool:
        key = eventbus.fired_key(rule["EventBusName"], rule["Name"])
        last, revision = await self._store.get(key)
        stamp = eventbus.iso(tick)
        if last is not None and last.get("Tick", "") >= stamp:
            return False
        rule_arn = self._arns.rule(rule["EventBusName"], rule["Name"])
        event = {"version": "0", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule_arn}@{stamp}")),
                 "detail-type": "Scheduled Event", "source": "aws.events", "account": self._arns.account,
                 "time": stamp, "region": self._arns.region, "resources": [rule_arn], "detail": {}}
        await asyncio.gather(*(self._targets.enqueue(rule, target, event, stamp,
                                                     msg_id=f"{event['id']}/{target['Id']}")
                               for target in rule.get("Targets", [])))
        kv = await self._store.kv()
        value = json.dumps({"Tick": stamp}).encode()
        try:
            if revision:
                await kv.update(key, value, last=revision)
            else:
                await kv.create(key, value)
        except KeyWrongLastSequenceError:
            return False  # another controller recorded this tick; JetStream dropped our duplicate
        return True
