"""The event bus in the controller: routes events to rule targets, and fires schedules.

Routing: the router consumes the KAMBDA_EVENTS stream (subjects ``kambda.events.<bus>``; the
gateway's PutEvents and any other service publish there) with one durable consumer. Each event is
matched against the bus's compiled :class:`~events.patterns.RuleIndex` (rebuilt when the
``kambda_events`` bucket changes), and for every target of every matching enabled rule, one
asynchronous invocation is stored on the async path, carrying the rule's RetryPolicy and
DeadLetterConfig. The async poller does the rest (retries, age limit, dead letters). The event is
acknowledged only once every invocation was stored, so a crash routes it again (at least once).

Schedules: every second the router looks for schedule rules whose latest tick has not been fired
(``fired/<bus>/<rule>`` in KV). Firing stores the invocations with a ``Nats-Msg-Id`` made of the
rule, target and tick, then records the tick with compare-and-set. Two controllers that race on a
tick store one invocation (JetStream drops the duplicate) and record it once; a controller that
dies between the two steps is covered the same way by the next one. A tick that passed while no
controller ran is fired late once (only the latest one, never a backlog).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import KeyWrongLastSequenceError

from events import input_transform as event_input
from events import patterns, schedules
from events import store as eventbus
from events.async_invoke import AsyncPoller
from events.store import Record, Store
from functions.lookup import FunctionLookup
from kambda import bus
from kambda.bus.dispatch import Dispatcher
from kambda.names import LATEST, Arns, parse_function, pick_version
from kambda.v1.invocation_pb2 import Invocation

log = logging.getLogger(__name__)

ACK_WAIT_S = 30.0
FETCH_BATCH = 256
SCHEDULE_EVERY_S = 1.0


class EventRouter:
    def __init__(self, nc: NATS, js: JetStreamContext, registry: FunctionLookup, dispatcher: Dispatcher,
                 poller: AsyncPoller, arns: Arns, clock: Callable[[], float] = time.time) -> None:
        self._nc = nc
        self._js = js
        self._registry = registry
        self._dispatcher = dispatcher
        self._poller = poller
        self._arns = arns
        self._clock = clock
        self._store = Store(js)
        self._rules: dict[str, Record] = {}  # KV key -> rule
        self._compiled: dict[tuple[str, str], patterns.Node] = {}  # (key, pattern) -> node
        self._indexes: dict[str, patterns.RuleIndex] = {}
        self._dirty: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._loaded = asyncio.Event()

    async def load(self) -> None:
        """Read every rule and keep following the bucket's changes."""
        kv = await self._store.kv()
        watcher = await kv.watchall()
        self._tasks.append(asyncio.create_task(self._watch(watcher)))
        await asyncio.wait_for(self._loaded.wait(), 30)

    async def start(self) -> None:
        await self.load()
        await self._js.add_consumer(bus.EVENTS_STREAM, ConsumerConfig(
            durable_name=bus.EVENT_ROUTER, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
            max_ack_pending=FETCH_BATCH * 4))
        psub = await self._js.pull_subscribe_bind(bus.EVENT_ROUTER, bus.EVENTS_STREAM)
        self._tasks.append(asyncio.create_task(self._consume(psub)))
        self._tasks.append(asyncio.create_task(self._schedule_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- rules --------------------------------------------------------------------------------

    async def _watch(self, watcher: Any) -> None:
        while True:
            try:
                entry = await watcher.updates(timeout=5)
            except (NatsTimeoutError, TimeoutError):
                continue
            if entry is None:  # the end of the initial values
                self._loaded.set()
                continue
            if not entry.key.startswith("rule/"):
                continue
            event_bus = entry.key.split("/")[1]
            self._dirty.add(event_bus)
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                self._rules.pop(entry.key, None)
            else:
                with contextlib.suppress(ValueError):
                    self._rules[entry.key] = json.loads(entry.value)

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

    # -- routing ------------------------------------------------------------------------------

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
        for key in self.index(event_bus).match(event):
            rule = self._rules.get(key)
            if rule is None:
                continue
            for target in rule.get("Targets", []):
                sends.append(self._enqueue(rule, target, event, eventbus.iso(now)))
        await asyncio.gather(*sends)
        return len(sends)

    async def _enqueue(self, rule: Record, target: Record, event: Record, ingestion_time: str,
                       msg_id: str | None = None) -> None:
        rule_arn = self._arns.rule(rule["EventBusName"], rule["Name"])
        payload = event_input.render(target, event, rule_arn, rule["Name"], ingestion_time)
        ref = parse_function(target["Arn"])
        function, version = ref.name, self._version_of(ref.name, ref.qualifier)
        dead_letter = (target.get("DeadLetterConfig") or {}).get("Arn", "")
        inv = Invocation(request_id=str(uuid.uuid4()), function=function, version=version or LATEST,
                         invoked_arn=self._arns.function(function, ref.qualifier), payload=payload,
                         invocation_type="Event",
                         enqueued_ms=int(self._clock() * 1000), dead_letter_arn=dead_letter)
        inv.dead_letter_headers.update({"RULE_ARN": rule_arn, "TARGET_ARN": target["Arn"]})
        policy = target.get("RetryPolicy") or {}
        if policy.get("MaximumRetryAttempts") is not None:
            inv.maximum_retry_attempts = policy["MaximumRetryAttempts"]
        if policy.get("MaximumEventAgeInSeconds") is not None:
            inv.maximum_event_age = policy["MaximumEventAgeInSeconds"]
        if version is None:
            # No function (version, alias) to run it: the event goes where a failed one would.
            if dead_letter:
                await self._poller.deliver(dead_letter, payload, {
                    **inv.dead_letter_headers, "ERROR_CODE": "ResourceNotFoundException",
                    "ERROR_MESSAGE": f"Function {inv.invoked_arn} does not exist"})
            else:
                log.warning("rule %s targets %s, which does not exist: event dropped", rule_arn, inv.invoked_arn)
            return
        await self._dispatcher.store(bus.async_subject(function, version), inv.SerializeToString(),
                                     headers={"Nats-Msg-Id": msg_id} if msg_id else None)

    def _version_of(self, function: str, qualifier: str | None) -> str | None:
        """The version a target's ARN runs ($LATEST, a published version, or an alias's pick by its
        weights, as an Event invoke of that ARN would), or None when it does not exist."""
        if function not in self._registry:
            return None
        if not qualifier or qualifier == LATEST:
            return LATEST
        if self._registry.has_alias(function, qualifier):
            alias = self._registry.get_alias(function, qualifier)
            qualifier = pick_version(alias.function_version, alias.additional_version_weights, random.random())
        return qualifier if self._registry.has_version(function, qualifier) else None

    # -- schedules ----------------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        while True:
            try:
                await self.fire_due(datetime.fromtimestamp(self._clock(), UTC))
            except Exception:
                log.exception("firing schedules failed")
            await asyncio.sleep(SCHEDULE_EVERY_S)

    async def fire_due(self, now: datetime) -> int:
        """Fire every schedule rule whose latest tick at or before ``now`` was not fired yet."""
        fired = 0
        for rule in list(self._rules.values()):
            if rule.get("State") != "ENABLED" or not rule.get("ScheduleExpression"):
                continue
            anchor = datetime.fromtimestamp(rule.get("ScheduleAnchor", rule.get("CreatedAt", 0)), UTC)
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
        await asyncio.gather(*(self._enqueue(rule, target, event, stamp, msg_id=f"{event['id']}/{target['Id']}")
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
