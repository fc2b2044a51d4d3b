"""The event bus's routing, in the worker tier: events to the targets of the rules they match.

The router consumes the KAMBDA_EVENTS stream (subjects ``kambda.events.<bus>``; the gateway's
PutEvents and any other service publish there) through the one durable consumer ``event-router``,
which every worker replica pulls from: the replicas split the events, and the events a dead
worker held unacknowledged are redelivered to the others after ACK_WAIT_S. Each event is matched
against its bus's compiled :class:`~events.patterns.RuleIndex` (events/rules.py), and for every
target of every matching enabled rule one asynchronous invocation is stored on the async path
(events/targets.py). The event is acknowledged only once every invocation was stored, so a crash
routes it again (at least once).

Schedules are not fired here: only the leader fires ticks (events/ticks.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from events import store as eventbus
from events.rules import Rules
from events.store import Record
from events.targets import Targets
from kambda import bus
from kambda.names import Arns

log = logging.getLogger(__name__)

ACK_WAIT_S = 30.0
FETCH_BATCH = 256


class EventRouter:
    def __init__(self, js: JetStreamContext, rules: Rules, targets: Targets, arns: Arns,
                 clock: Callable[[], float] = time.time) -> None:
        self._js = js
        self._rules = rules
        self._targets = targets
        self._arns = arns
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self._js.add_consumer(bus.EVENTS_STREAM, ConsumerConfig(
            durable_name=bus.EVENT_ROUTER, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
            max_ack_pending=FETCH_BATCH * 4))
        psub = await self._js.pull_subscribe_bind(bus.EVENT_ROUTER, bus.EVENTS_STREAM)
        self._tasks.append(asyncio.create_task(self._consume(psub)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _consume(self, psub: Any) -> None:
        while True:
            try:
                msgs = await psub.fetch(FETCH_BATCH, timeout=1)
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception as exc:  # NATS reconnecting: try again shortly
                log.warning("event fetch failed: %s", exc)
                await asyncio.sleep(1)
                continue
            await asyncio.gather(*(self._route_msg(msg) for msg in msgs))

    async def _route_msg(self, msg: Msg) -> None:
        event_bus = msg.subject[len(bus.EVENTS_PREFIX):]
        try:
            event = json.loads(msg.data)
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except ValueError:
            log.warning("dropping an undecodable event on %s", msg.subject)
            await msg.term()
            return
        try:
            await self.route(event_bus, event)
        except Exception as exc:
            log.warning("routing an event on %s failed, to be retried: %s", msg.subject, exc)
            await msg.nak(delay=1.0)
            return
        await msg.ack()

    async def route(self, event_bus: str, event: Record) -> int:
        """Match one event and enqueue an invocation per target; returns how many were enqueued."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        event = eventbus.envelope(event, self._arns.account, self._arns.region, now)
        sends = []
        for key in self._rules.index(event_bus).match(event):
            rule = self._rules.get(key)
            if rule is None:
                continue
            for target in rule.get("Targets", []):
                sends.append(self._targets.enqueue(rule, target, event, eventbus.iso(now)))
        await asyncio.gather(*sends)
        return len(sends)
