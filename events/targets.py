"""A rule's targets: one asynchronous invocation stored per target of a matched (or fired) rule.

The invocation carries the rule's RetryPolicy and DeadLetterConfig; the async poller does the rest
(retries, age limit, dead letters). A target whose function (version, alias) does not exist gets
the event sent where a failed one would go, its dead-letter queue, or it is dropped with a warning.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable

from events import input_transform as event_input
from events.destinations import Destinations
from events.store import Record
from functions.lookup import FunctionLookup
from kambda import bus
from kambda.bus.dispatch import Dispatcher
from kambda.names import LATEST, Arns, parse_function, pick_version
from kambda.v1.invocation_pb2 import Invocation

log = logging.getLogger(__name__)


class Targets:
    def __init__(self, registry: FunctionLookup, dispatcher: Dispatcher, destinations: Destinations, arns: Arns,
                 clock: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._dispatcher = dispatcher
        self._destinations = destinations
        self._arns = arns
        self._clock = clock

    async def enqueue(self, rule: Record, target: Record, event: Record, ingestion_time: str,
                      msg_id: str | None = None) -> None:
        """Store one target's invocation (``msg_id``: JetStream drops a second one with the same id)."""
        rule_arn = self._arns.rule(rule["EventBusName"], rule["Name"])
        payload = event_input.render(target, event, rule_arn, rule["Name"], ingestion_time)
        ref = parse_function(target["Arn"])
        function, version = ref.name, await self.version_of(ref.name, ref.qualifier)
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
                await self._destinations.deliver(dead_letter, payload, {
                    **inv.dead_letter_headers, "ERROR_CODE": "ResourceNotFoundException",
                    "ERROR_MESSAGE": f"Function {inv.invoked_arn} does not exist"})
            else:
                log.warning("rule %s targets %s, which does not exist: event dropped", rule_arn, inv.invoked_arn)
            return
        await self._dispatcher.store(bus.async_subject(function, version), inv.SerializeToString(),
                                     headers={"Nats-Msg-Id": msg_id} if msg_id else None)

    async def version_of(self, function: str, qualifier: str | None) -> str | None:
        """The version a target's ARN runs ($LATEST, a published version, or an alias's pick by its
        weights, as an Event invoke of that ARN would), or None when it does not exist (after the
        registry view has caught up: it may be a moment behind a function just made)."""
        found = self._pick(function, qualifier)
        if found is None and await self._registry.caught_up():
            found = self._pick(function, qualifier)
        return found

    def _pick(self, function: str, qualifier: str | None) -> str | None:
        if function not in self._registry:
            return None
        if not qualifier or qualifier == LATEST:
            return LATEST
        if self._registry.has_alias(function, qualifier):
            alias = self._registry.get_alias(function, qualifier)
            qualifier = pick_version(alias.function_version, alias.additional_version_weights, random.random())
        return qualifier if self._registry.has_version(function, qualifier) else None
