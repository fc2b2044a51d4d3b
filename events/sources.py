"""Event source mappings at work: NATS JetStream streams (or plain subjects) feeding functions in
batches, in every worker replica.

The SQS/Kinesis role of AWS Lambda. The controller creates, validates and stores the mappings
(events/mappings.py); each worker follows the ``kambda_mappings`` bucket and, for each enabled
mapping, runs up to ``maximum_concurrency`` batch loops (per replica) on the mapping's one durable
consumer ``esm-<uuid>``, which all replicas share: they split the records, and the records a dead
worker held are redelivered to the others. A loop fetches up to ``batch_size`` records (waiting up
to the batching window to fill the batch), invokes the function synchronously with
``{"Records": [...]}`` in SQS's shape, and then:

- on success, acknowledges every record, except those the function names in
  ``{"batchItemFailures": [{"itemIdentifier": messageId}]}`` when the mapping has
  ``FunctionResponseTypes: ["ReportBatchItemFailures"]``;
- on failure (function error, timeout, throttle), gives every record back;
- gives a failed record back to be redelivered after a growing delay, until its retries are
  spent; then sends it to the mapping's on-failure destination and drops it (a poison message
  never blocks the rest).

A JetStream source is at least once: the durable consumer keeps the position across restarts. A
plain subject (``arn:kambda:nats:::subject/...``) is at most once: the replicas listen in one queue
group (each message reaches one of them); what arrives while no worker listens, or fails, is gone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Gauge

from events.async_invoke import MAX_RETRY_DELAY_S
from events.ddb_streams import StreamBatches
from events.destinations import Destinations
from events.mappings import (
    ACK_WAIT_S,
    MAPPINGS_BUCKET,
    STREAM_SOURCE,
    SUBJECT_SOURCE,
    consumer_name,
    ddb_stream,
    mappings_bucket,
    stream_of,
)
from functions.lookup import FunctionLookup
from kambda import bus
from kambda.aws import errors
from kambda.backoff import Backoff
from kambda.bus.dispatch import Dispatcher
from kambda.bus.kvwatch import KvWatch
from kambda.names import LATEST, Arns
from kambda.v1.invocation_pb2 import Invocation, InvocationResult
from kambda.v1.mapping_pb2 import EventSourceMapping

log = logging.getLogger(__name__)

#: With no batching window, how long to gather the records already there after the first.
MIN_GATHER_S = 0.01
#: How soon a mapping whose runner could not start (its consumer not made yet, NATS away) is tried again.
RETRY_START_S = 1.0


class EventSources:
    """A runner for each enabled mapping, started, restarted and stopped as the bucket changes."""

    def __init__(self, nc: NATS, js: JetStreamContext, registry: FunctionLookup, dispatcher: Dispatcher,
                 destinations: Destinations, arns: Arns, metrics: CollectorRegistry, retry_base_s: float,
                 queue_timeout_s: float, clock: Callable[[], float] = time.time) -> None:
        self._nc = nc
        self._js = js
        self._registry = registry
        self._dispatcher = dispatcher
        self._destinations = destinations
        self._arns = arns
        self._retry_backoff = Backoff.exponential(retry_base_s, MAX_RETRY_DELAY_S, 12)
        self._queue_timeout = queue_timeout_s
        self._clock = clock
        self._watch = KvWatch(js, MAPPINGS_BUCKET, self._on_entry, "event source mappings")
        self._wanted: dict[str, bytes | None] = {}  # uuid -> the mapping as stored (None: deleted)
        self._changed = asyncio.Event()
        self._running: dict[str, EventSourceMapping] = {}
        self._runners: dict[str, list[asyncio.Task[None]]] = {}
        self._pulls: dict[str, Any] = {}  # uuid -> its pull subscription
        self._lag = Gauge("kambda_event_source_lag", "Records of a mapping's source not yet delivered.",
                          ["mapping"], registry=metrics)
        self._tasks: list[asyncio.Task[None]] = []
        self._ddb = StreamBatches(js, self._invoke, destinations, arns, self._retry_backoff, clock)

    async def start(self) -> None:
        await mappings_bucket(self._js)
        await self._watch.start()
        await self._reconcile()
        self._tasks = [asyncio.create_task(self._follow()), asyncio.create_task(self._watch_lag())]

    async def stop(self) -> None:
        await self._watch.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for uid in list(self._runners):
            await self._stop_runner(uid)

    def running(self) -> list[str]:
        """The UUIDs of the mappings this worker runs."""
        return sorted(self._runners)

    def _on_entry(self, key: str, value: bytes | None) -> None:
        self._wanted[key] = value
        self._changed.set()

    async def _follow(self) -> None:
        while True:
            if self._wanted:  # a runner that could not start: try it again shortly
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), RETRY_START_S)
            else:
                await self._changed.wait()
            self._changed.clear()
            await self._reconcile()

    async def _reconcile(self) -> None:
        """Bring the runners in line with the mappings: a changed mapping's runner starts again."""
        changes, self._wanted = self._wanted, {}
        for uid, value in changes.items():
            mapping = EventSourceMapping.FromString(value) if value else None
            current = self._running.get(uid)
            if mapping is not None and current is not None and mapping == current:
                continue  # the same mapping again (a restarted watch replays every value)
            await self._stop_runner(uid)
            self._running.pop(uid, None)
            if mapping is None:
                with contextlib.suppress(KeyError):
                    self._lag.remove(uid)
                continue
            if mapping.enabled:
                try:
                    await self._start_runner(mapping)
                except Exception as exc:
                    log.warning("event source mapping %s cannot start (%s); trying again", uid, exc)
                    await self._stop_runner(uid)
                    self._wanted.setdefault(uid, value)
                    continue
            self._running[uid] = mapping

    async def _start_runner(self, mapping: EventSourceMapping) -> None:
        if ddb_stream(mapping) is not None:
            tasks, subs = await self._ddb.start(mapping)
            self._pulls[mapping.uuid] = subs
        elif mapping.event_source_arn.startswith(STREAM_SOURCE):
            psub = self._pulls[mapping.uuid] = await self._js.pull_subscribe_bind(consumer_name(mapping),
                                                                                  stream_of(mapping))
            tasks = [asyncio.create_task(self._stream_loop(mapping, psub)) for _ in range(mapping.maximum_concurrency)]
        else:
            tasks = [asyncio.create_task(self._subject_loop(mapping))]
        self._runners[mapping.uuid] = tasks

    async def _stop_runner(self, uid: str) -> None:
        tasks = self._runners.pop(uid, [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        psub = self._pulls.pop(uid, None)
        for sub in psub if isinstance(psub, list) else [psub] if psub is not None else []:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _stream_loop(self, mapping: EventSourceMapping, psub: Any) -> None:
        while True:
            try:
                batch = await self._fetch(mapping, psub)
                if batch:
                    await self._run_batch(mapping, batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event source mapping %s failed a batch", mapping.uuid)
                await asyncio.sleep(1)

    async def _fetch(self, mapping: EventSourceMapping, psub: Any) -> list[Msg]:
        """Wait for a first record, then take what else is there, waiting at most the batching window
        (nats-py's fetch of N waits its whole timeout unless N records are there, so it is split)."""
        try:
            batch: list[Msg] = await psub.fetch(1, timeout=5)
        except (NatsTimeoutError, TimeoutError):
            return []
        deadline = time.monotonic() + max(mapping.batching_window, MIN_GATHER_S)
        while len(batch) < mapping.batch_size and (left := deadline - time.monotonic()) > 0:
            try:
                batch += await psub.fetch(mapping.batch_size - len(batch), timeout=left)
            except (NatsTimeoutError, TimeoutError):
                break
        return batch

    def _record(self, mapping: EventSourceMapping, msg: Msg) -> dict[str, Any]:
        meta = msg.metadata
        try:
            body = msg.data.decode("utf-8")
        except UnicodeDecodeError:
            body = base64.b64encode(msg.data).decode()
        return {
            "messageId": f"{meta.stream}:{meta.sequence.stream}",
            "receiptHandle": f"{meta.stream}:{meta.sequence.stream}:{meta.num_delivered}",
            "body": body,
            "attributes": {"ApproximateReceiveCount": str(meta.num_delivered),
                           "SentTimestamp": str(int(meta.timestamp.timestamp() * 1000)) if meta.timestamp else "",
                           "ApproximateFirstReceiveTimestamp": str(int(self._clock() * 1000))},
            "messageAttributes": {k: {"stringValue": v, "dataType": "String"} for k, v in (msg.headers or {}).items()},
            "md5OfBody": hashlib.md5(msg.data).hexdigest(),  # noqa: S324 - SQS's field, not security
            "eventSource": "kambda:nats",
            "eventSourceARN": mapping.event_source_arn,
            "awsRegion": self._arns.region,
        }

    async def _invoke(self, mapping: EventSourceMapping, records: list[dict[str, Any]]) -> InvocationResult | None:
        if mapping.function not in self._registry and not (await self._registry.caught_up()
                                                            and mapping.function in self._registry):
            return None
        config = self._registry.get(mapping.function)
        now_ms = int(self._clock() * 1000)
        inv = Invocation(request_id=str(uuid.uuid4()), function=mapping.function, version=LATEST,
                         invoked_arn=self._arns.function(mapping.function),
                         payload=json.dumps({"Records": records}).encode(),
                         invocation_type="RequestResponse", enqueued_ms=now_ms,
                         start_deadline_ms=now_ms + int(self._queue_timeout * 1000))
        try:
            return await self._dispatcher.invoke(inv, self._queue_timeout + config.timeout + 5)
        except errors.KambdaError as exc:
            return InvocationResult(request_id=inv.request_id, error_code=exc.code, error_message=exc.message)

    async def _run_batch(self, mapping: EventSourceMapping, batch: list[Msg]) -> None:
        records = [self._record(mapping, msg) for msg in batch]
        keepalive = asyncio.create_task(self._in_progress(batch))
        try:
            result = await self._invoke(mapping, records)
        finally:
            keepalive.cancel()
        failed = {r["messageId"] for r in records}
        if result is not None and not result.function_error and not result.error_code:
            failed = self._reported_failures(mapping, result, failed)
        for msg, record in zip(batch, records, strict=True):
            if record["messageId"] not in failed:
                await msg.ack()
                continue
            retries = mapping.maximum_retry_attempts if mapping.HasField("maximum_retry_attempts") else 2
            delivered = msg.metadata.num_delivered
            if delivered <= retries:
                await bus.nak_after(self._nc, msg, self._retry_backoff.delay(delivered - 1))
                continue
            await self._give_up(mapping, record, result, delivered)
            await bus.term(self._nc, msg)

    @staticmethod
    def _reported_failures(mapping: EventSourceMapping, result: InvocationResult, everything: set[str]) -> set[str]:
        """The records a successful batch still failed: none, unless it reports them (partial failure)."""
        if "ReportBatchItemFailures" not in mapping.function_response_types:
            return set()
        try:
            answer = json.loads(result.payload) if result.payload else None
        except ValueError:
            return everything  # a malformed report fails the whole batch, as AWS does
        if not isinstance(answer, dict) or not answer.get("batchItemFailures"):
            return set()
        failures = answer["batchItemFailures"]
        if not isinstance(failures, list):
            return everything
        ids = {str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)}  # no id: no match
        return ids if ids <= everything else everything

    async def _give_up(self, mapping: EventSourceMapping, record: dict[str, Any], result: InvocationResult | None,
                       attempts: int) -> None:
        log.warning("record %s of mapping %s dropped after %d attempts", record["messageId"], mapping.uuid, attempts)
        if not mapping.on_failure:
            return
        failure = {
            "version": "1.0", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock())),
            "requestContext": {"requestId": result.request_id if result else "",
                               "functionArn": self._arns.function(mapping.function),
                               "condition": "RetryAttemptsExhausted", "approximateInvokeCount": attempts},
            "responseContext": {"statusCode": 200, "executedVersion": LATEST,
                                "functionError": (result.function_error or result.error_code) if result else ""},
            "record": record, "eventSourceMappingUUID": mapping.uuid,
        }
        await self._destinations.deliver(mapping.on_failure, json.dumps(failure).encode())

    async def _in_progress(self, batch: list[Msg]) -> None:
        while True:
            await asyncio.sleep(ACK_WAIT_S / 3)
            for msg in batch:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _subject_loop(self, mapping: EventSourceMapping) -> None:
        """At most once: batches of what arrives on a plain subject while this worker listens."""
        queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=mapping.batch_size * 100)

        async def on_msg(msg: Msg) -> None:
            if queue.full():
                log.warning("mapping %s is behind; dropping a message (at most once)", mapping.uuid)
                return
            queue.put_nowait(msg)

        # One queue group per mapping: each message goes to one worker replica.
        sub = await self._nc.subscribe(mapping.event_source_arn[len(SUBJECT_SOURCE):], queue=consumer_name(mapping),
                                       cb=on_msg)
        try:
            while True:
                batch = [await queue.get()]
                deadline = time.monotonic() + mapping.batching_window
                while len(batch) < mapping.batch_size:
                    left = deadline - time.monotonic()
                    if left <= 0 and queue.empty():
                        break
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), max(left, 0.0001)))
                    except TimeoutError:
                        break
                records = [{"messageId": str(uuid.uuid4()), "body": m.data.decode("utf-8", "replace"),
                            "attributes": {"Subject": m.subject}, "messageAttributes": {},
                            "eventSource": "kambda:nats", "eventSourceARN": mapping.event_source_arn,
                            "awsRegion": self._arns.region} for m in batch]
                result = await self._invoke(mapping, records)
                if result is None or result.function_error or result.error_code:
                    log.warning("mapping %s: a batch of %d failed and is dropped (at most once)",
                                mapping.uuid, len(batch))
        finally:
            await sub.unsubscribe()

    async def _watch_lag(self) -> None:
        while True:
            for mapping in list(self._running.values()):
                if mapping.event_source_arn.startswith(STREAM_SOURCE):
                    with contextlib.suppress(Exception):
                        info = await self._js.consumer_info(stream_of(mapping), consumer_name(mapping))
                        self._lag.labels(mapping.uuid).set(info.num_pending or 0)
            await asyncio.sleep(2.0)
