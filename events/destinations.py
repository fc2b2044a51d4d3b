"""Where an outcome goes: a destination ARN (a function, invoked asynchronously, or a NATS subject).

The async poller sends success and failure records here, event source mappings their failed
records, the event router and the schedule ticker the events whose target does not exist. A
broken destination is logged and never stops the caller.

Destination ARNs: a function (``arn:aws:lambda:REGION:ACCOUNT:function:NAME``), invoked
asynchronously with the payload as its event, or a NATS subject (``arn:kambda:nats:::SUBJECT``),
which gets the payload as it is.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from nats.aio.client import Client as NATS

from kambda import bus
from kambda.bus.dispatch import Dispatcher
from kambda.names import LATEST, NATS_DESTINATION, Arns, parse_function
from kambda.v1.invocation_pb2 import Invocation

log = logging.getLogger(__name__)


class Destinations:
    def __init__(self, nc: NATS, dispatcher: Dispatcher, arns: Arns, clock: Callable[[], float] = time.time) -> None:
        self._nc = nc
        self._dispatcher = dispatcher
        self._arns = arns
        self._clock = clock

    async def deliver(self, arn: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        """Send ``payload`` to a destination: a NATS subject, or a function invoked asynchronously."""
        try:
            if arn.startswith(NATS_DESTINATION):
                await self._nc.publish(arn[len(NATS_DESTINATION):], payload, headers=headers)
                return
            target = parse_function(arn)
            event = Invocation(request_id=str(uuid.uuid4()), function=target.name, version=LATEST,
                               invoked_arn=self._arns.function(target.name), payload=payload,
                               invocation_type="Event", enqueued_ms=int(self._clock() * 1000))
            await self._dispatcher.store(bus.async_subject(target.name, LATEST), event.SerializeToString())
        except Exception as exc:  # a broken destination must not stop its caller
            log.warning("delivery to destination %s failed: %s", arn, exc)
