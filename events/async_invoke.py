"""Asynchronous (Event) invocations: run each stored event, retry failures, deliver outcomes.

The gateway answers an Event invoke 202 once the event is stored in the file-backed KAMBDA_ASYNC
stream. This poller, in every worker replica, pulls those events (a bounded number at a time per
replica) through the one durable consumer ``async-poller`` that all replicas share (so they split the
events between them), runs each through the ordinary sync path, and then, as AWS Lambda does:

- on success, acknowledges it and sends the on-success destination a record;
- on a function error (or a timeout, or a crash), gives it back to the stream to be redelivered
  after a growing delay, up to the function's MaximumRetryAttempts (default 2);
- when the retries are spent, or the event is older than MaximumEventAgeInSeconds (default 6 h),
  sends it to the on-failure destination (or the function's dead-letter target) and drops it;
- when the function is throttled, retries it until its maximum age without counting an attempt.

JetStream's delivery count is no attempt count (a throttle, or a delivery that reached a worker as
it stopped, is none), so a failed attempt and a throttle are recorded in the
``kambda_async_attempts`` bucket (by stream sequence) before the event is given back, and a
redelivery, to whichever replica, reads them there; the first delivery, the common case, costs
nothing. A run cut short by a crash is not counted: its event is run again as the same attempt.

While an event runs, the poller tells JetStream it is still in progress, so a crashed worker's
events are redelivered (to the other replicas) within ACK_WAIT_S, and a running one is never
redelivered meanwhile. The delivery is at least once: a worker that dies between a run and its
acknowledgement has it run again. Records go to destinations through events/destinations.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Counter, Gauge

from events.destinations import Destinations
from functions.lookup import FunctionLookup
from kambda import bus
from kambda.aws import errors
from kambda.backoff import Backoff
from kambda.bus.dispatch import Dispatcher
from kambda.names import LATEST, Arns
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invocation_pb2 import Invocation, InvocationResult

log = logging.getLogger(__name__)

ACK_WAIT_S = 30.0
IN_PROGRESS_EVERY_S = 10.0
DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE_S = 21600
#: Unacknowledged events of the shared consumer, all replicas together (each bounds its own by its
#: concurrency, and so the tier scales with replicas up to this).
MAX_ACK_PENDING = 65536
#: An event bus target may allow up to 185 retries: their delays stop doubling here.
MAX_RETRY_DELAY_S = 3600.0


class Tally(NamedTuple):
    """What an event's deliveries so far were: attempts that failed, and throttles (no attempt)."""

    failed: int = 0
    throttled: int = 0


class AsyncMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.retries = Counter("kambda_async_retries", "Asynchronous invocations retried after a failure.",
                               ["function"], registry=registry)
        self.dropped = Counter("kambda_async_dropped", "Asynchronous events given up on, by reason (age, "
                               "retries).", ["function", "reason"], registry=registry)
        self.succeeded = Counter("kambda_async_succeeded", "Asynchronous invocations that ran successfully.",
                                 ["function"], registry=registry)
        self.queue_depth = Gauge("kambda_async_queue_depth", "Asynchronous events stored and not yet done.",
                                 ["function"], registry=registry)


class AsyncPoller:
    def __init__(self, nc: NATS, js: JetStreamContext, registry: FunctionLookup, dispatcher: Dispatcher,
                 destinations: Destinations, arns: Arns, metrics: AsyncMetrics, retry_base_s: float,
                 queue_timeout_s: float, concurrency: int = 64, clock: Callable[[], float] = time.time) -> None:
        self._nc = nc
        self._js = js
        self._registry = registry
        self._dispatcher = dispatcher
        self._destinations = destinations
        self._arns = arns
        self._metrics = metrics
        #: A throttled run is tried again later without counting as an attempt; a failed one counts.
        self._throttle_backoff = Backoff.exponential(retry_base_s, 60.0, 6)
        self._retry_backoff = Backoff.exponential(retry_base_s, MAX_RETRY_DELAY_S, 12)
        self._queue_timeout = queue_timeout_s
        self._concurrency = concurrency
        self._clock = clock
        #: Failed attempts and throttles of the events being retried, for every replica (and across
        #: restarts): JetStream's delivery count also counts deliveries that were no attempt.
        self._tallies: KeyValue | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._puller = bus.Puller(nc, bus.ASYNC_STREAM, bus.ASYNC_POLLER, self._on_message)
        self._depth_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._js.add_consumer(bus.ASYNC_STREAM, ConsumerConfig(
            durable_name=bus.ASYNC_POLLER, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
            max_ack_pending=MAX_ACK_PENDING, max_waiting=4096))
        self._tallies = await self._js.key_value(bus.ASYNC_ATTEMPTS_BUCKET)  # bus.ensure_platform made it
        await self._puller.start()
        await self._puller.add_free(self._concurrency)
        self._depth_task = asyncio.create_task(self._watch_depth())

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop pulling; let running events finish for up to ``drain_s``, then cancel the rest (they
        are redelivered, to another replica, once their ack wait has passed)."""
        if self._depth_task is not None:
            self._depth_task.cancel()
        await self._puller.stop()
        if self._tasks and drain_s > 0:
            await asyncio.wait(list(self._tasks), timeout=drain_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_message(self, msg: Msg) -> None:
        task = asyncio.create_task(self._handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, msg: Msg) -> None:
        try:
            inv = Invocation.FromString(msg.data)
        except Exception:
            await self._finish(msg, "term")
            return
        if not self._registry.has_version(inv.function, inv.version or LATEST) and (
                not await self._registry.caught_up() or not self._registry.has_version(inv.function,
                                                                                       inv.version or LATEST)):
            log.info("dropping an event for %s:%s, which no longer exists", inv.function, inv.version)
            await self._finish(msg, "term")
            return
        config = self._registry.get_version(inv.function, inv.version or LATEST)
        eic = config.event_invoke_config
        max_retries = eic.maximum_retry_attempts if eic.HasField("maximum_retry_attempts") else DEFAULT_RETRIES
        max_age = eic.maximum_event_age if eic.HasField("maximum_event_age") else DEFAULT_MAX_AGE_S
        # An event bus target's RetryPolicy takes the place of the function's own settings.
        if inv.HasField("maximum_retry_attempts"):
            max_retries = inv.maximum_retry_attempts
        if inv.HasField("maximum_event_age"):
            max_age = inv.maximum_event_age
        seq = msg.metadata.sequence.stream
        # A first delivery is the first attempt; a later one is the attempt after those that failed.
        tally = Tally() if msg.metadata.num_delivered == 1 else await self._load(seq, msg.metadata.num_delivered)
        attempt = tally.failed + 1
        if (self._clock() * 1000 - inv.enqueued_ms) / 1000 > max_age:
            self._metrics.dropped.labels(inv.function, "age").inc()
            await self._give_up(config, inv, tally.failed, "EventAgeExceeded", None)
            await self._finish(msg, "term", seq, tally)
            return
        keepalive = asyncio.create_task(self._in_progress(msg))
        try:
            result = await self._run(inv, config)
        finally:
            keepalive.cancel()
        if result is None:  # throttled: try again later, without counting an attempt
            tally = Tally(tally.failed, tally.throttled + 1)
            await self._save(seq, tally)
            delay = self._throttle_backoff.delay(tally.throttled)
            await self._finish(msg, "retry", seq, tally, delay=delay)
            return
        if not result.function_error and not result.error_code:
            self._metrics.succeeded.labels(inv.function).inc()
            await self._deliver(eic.on_success, self._record(config, inv, attempt, "Success", result))
            await self._finish(msg, "ack", seq, tally)
            return
        if attempt <= max_retries:
            self._metrics.retries.labels(inv.function).inc()
            tally = Tally(attempt, tally.throttled)
            await self._save(seq, tally)
            delay = self._retry_backoff.delay(attempt - 1)
            await self._finish(msg, "retry", seq, tally, delay=delay)
            return
        self._metrics.dropped.labels(inv.function, "retries").inc()
        await self._give_up(config, inv, attempt, "RetriesExhausted", result)
        await self._finish(msg, "term", seq, tally)

    async def _run(self, inv: Invocation, config: FunctionConfig) -> InvocationResult | None:
        """One attempt through the sync path; None when the function was throttled."""
        now_ms = int(self._clock() * 1000)
        attempt = Invocation()
        attempt.CopyFrom(inv)
        attempt.invocation_type = "Event"
        attempt.start_deadline_ms = now_ms + int(self._queue_timeout * 1000)
        try:
            return await self._dispatcher.invoke(attempt, self._queue_timeout + config.timeout + 5)
        except errors.TooManyRequests:
            return None
        except errors.KambdaError as exc:
            return InvocationResult(request_id=inv.request_id, error_code=exc.code, error_message=exc.message)

    async def _in_progress(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(IN_PROGRESS_EVERY_S)
            with contextlib.suppress(Exception):
                await self._nc.publish(msg.reply, b"+WPI")

    async def _finish(self, msg: Msg, how: str, seq: int | None = None, tally: Tally | None = None,
                      delay: float = 0.0) -> None:
        if how == "ack":
            await self._puller.done(msg, free_again=True)
        else:
            if how == "retry":
                await bus.nak_after(self._nc, msg, delay)
            else:
                await bus.term(self._nc, msg)
            await self._puller.add_free(1)
        if seq is not None and how != "retry" and tally is not None and (tally.failed or tally.throttled) \
                and self._tallies is not None:
            with contextlib.suppress(Exception):  # the bucket's TTL removes what is left behind
                await self._tallies.purge(str(seq))

    async def _load(self, seq: int, delivered: int) -> Tally:
        """The failed attempts and throttles of a redelivered event, as any replica recorded them."""
        if self._tallies is not None:
            try:
                entry = await self._tallies.get(str(seq))
                failed, throttled = (int(part) for part in (entry.value or b"0 0").split())
                return Tally(failed, throttled)
            except KeyNotFoundError:
                return Tally()  # redelivered without a failed attempt: its run was cut short (a crash)
            except Exception as exc:
                log.warning("cannot read the attempts of async event %d: %s", seq, exc)
        return Tally(delivered - 1, 0)  # every delivery an attempt: fewer retries, never a lost event

    async def _save(self, seq: int, tally: Tally) -> None:
        if self._tallies is None:
            return
        try:
            await self._tallies.put(str(seq), f"{tally.failed} {tally.throttled}".encode())
        except Exception as exc:
            log.warning("cannot record the attempts of async event %d: %s", seq, exc)

    def _record(self, config: FunctionConfig, inv: Invocation, attempts: int, condition: str,
                result: InvocationResult | None) -> dict[str, Any]:
        """The destination record, in AWS's shape."""
        def decoded(raw: bytes) -> Any:
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                return raw.decode("utf-8", "replace")

        record: dict[str, Any] = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {"requestId": inv.request_id,
                               "functionArn": self._arns.function(config.name, inv.version or LATEST),
                               "condition": condition, "approximateInvokeCount": attempts},
            "requestPayload": decoded(inv.payload),
        }
        if result is not None:
            record["responseContext"] = {"statusCode": 200, "executedVersion": result.executed_version or LATEST}
            if result.function_error or result.error_code:
                record["responseContext"]["functionError"] = result.function_error or "Unhandled"
            record["responsePayload"] = (decoded(result.payload) if not result.error_code else
                                         {"errorType": result.error_code, "errorMessage": result.error_message})
        return record

    async def _give_up(self, config: FunctionConfig, inv: Invocation, attempts: int, condition: str,
                       result: InvocationResult | None) -> None:
        on_failure = config.event_invoke_config.on_failure
        if inv.dead_letter_arn:
            # An event bus target's dead-letter queue gets the event, with why in its headers.
            error = (result.function_error or result.error_code) if result else condition
            await self._deliver(inv.dead_letter_arn, None, raw=inv.payload,
                                headers={**inv.dead_letter_headers, "ERROR_CODE": condition, "ERROR_MESSAGE": error})
        elif on_failure:
            await self._deliver(on_failure, self._record(config, inv, attempts, condition, result))
        elif config.dead_letter_target:
            # A dead-letter queue gets the event itself, as AWS's does, with why in its headers.
            error = (result.function_error or result.error_code) if result else condition
            await self._deliver(config.dead_letter_target, None, raw=inv.payload,
                                headers={"RequestID": inv.request_id, "ErrorCode": "200", "ErrorMessage": error})
        else:
            log.warning("event %s of %s dropped (%s)", inv.request_id, config.name, condition)

    async def _deliver(self, arn: str, record: dict[str, Any] | None, raw: bytes | None = None,
                       headers: dict[str, str] | None = None) -> None:
        if arn:
            await self._destinations.deliver(arn, raw if raw is not None else json.dumps(record).encode(), headers)

    async def _watch_depth(self) -> None:
        """kambda_async_queue_depth, from the stream's per-subject counts every 2 s."""
        seen: set[str] = set()
        while True:
            with contextlib.suppress(Exception):
                info = await self._js.stream_info(bus.ASYNC_STREAM, subjects_filter="kambda.async.>")
                counts: dict[str, int] = {}
                for subject, count in (info.state.subjects or {}).items():
                    function = subject.split(".")[2]
                    counts[function] = counts.get(function, 0) + count
                for function in seen | set(counts):
                    self._metrics.queue_depth.labels(function).set(counts.get(function, 0))
                seen |= set(counts)
            await asyncio.sleep(2.0)
