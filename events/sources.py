"""Event source mappings: NATS JetStream streams (or plain subjects) feeding functions in batches.

The SQS/Kinesis role of AWS Lambda. For each enabled mapping the active controller runs up to
``maximum_concurrency`` batch loops. A loop fetches up to ``batch_size`` records (waiting up to the
batching window to fill the batch), invokes the function synchronously with
``{"Records": [...]}`` in SQS's shape, and then:

- on success, acknowledges every record, except those the function names in
  ``{"batchItemFailures": [{"itemIdentifier": messageId}]}`` when the mapping has
  ``FunctionResponseTypes: ["ReportBatchItemFailures"]``;
- on failure (function error, timeout, throttle), gives every record back;
- gives a failed record back to be redelivered after a growing delay, until its retries are
  spent; then sends it to the mapping's on-failure destination and drops it (a poison message
  never blocks the rest).

A JetStream source is at least once: the durable consumer ``esm-<uuid>`` keeps the position across
restarts. A plain subject (``arn:kambda:nats:::subject/...``) is at most once: what arrives while
no controller listens, or fails, is gone.
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
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Gauge

from events.async_invoke import MAX_RETRY_DELAY_S, AsyncPoller
from functions.lookup import FunctionLookup
from kambda import bus
from kambda.aws import errors
from kambda.backoff import Backoff
from kambda.bus.dispatch import Dispatcher
from kambda.names import LATEST, Arns, destination_arn_error
from kambda.v1.invocation_pb2 import Invocation, InvocationResult
from kambda.v1.mapping_pb2 import EventSourceMapping

log = logging.getLogger(__name__)

MAPPINGS_BUCKET = "kambda_mappings"
STREAM_SOURCE = "arn:kambda:nats:::stream/"
SUBJECT_SOURCE = "arn:kambda:nats:::subject/"
ACK_WAIT_S = 30.0
#: With no batching window, how long to gather the records already there after the first.
MIN_GATHER_S = 0.01
UPDATABLE = ("batch_size", "batching_window", "enabled", "function_response_types", "maximum_retry_attempts",
             "on_failure", "maximum_concurrency", "function")


def consumer_name(mapping: EventSourceMapping) -> str:
    return f"esm-{mapping.uuid}"


class EventSources:
    """The mappings (in KV) and a runner for each enabled one."""

    def __init__(self, nc: NATS, js: JetStreamContext, registry: FunctionLookup, dispatcher: Dispatcher,
                 poller: AsyncPoller, arns: Arns, metrics: CollectorRegistry, retry_base_s: float,
                 queue_timeout_s: float, clock: Callable[[], float] = time.time) -> None:
        self._nc = nc
        self._js = js
        self._registry = registry
        self._dispatcher = dispatcher
        self._poller = poller
        self._arns = arns
        self._retry_backoff = Backoff.exponential(retry_base_s, MAX_RETRY_DELAY_S, 12)
        self._queue_timeout = queue_timeout_s
        self._clock = clock
        self._kv: KeyValue | None = None
        self._mappings: dict[str, EventSourceMapping] = {}
        self._runners: dict[str, list[asyncio.Task[None]]] = {}
        self._lag = Gauge("kambda_event_source_lag", "Records of a mapping's source not yet delivered.",
                          ["mapping"], registry=metrics)
        self._lag_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            self._kv = await self._js.key_value(MAPPINGS_BUCKET)
        except NotFoundError:
            self._kv = await self._js.create_key_value(bucket=MAPPINGS_BUCKET, history=1)
        try:
            keys = await self._kv.keys()
        except NoKeysError:
            keys = []
        for key in keys:
            with contextlib.suppress(KeyNotFoundError):
                entry = await self._kv.get(key)
                self._mappings[key] = EventSourceMapping.FromString(entry.value or b"")
        for mapping in self._mappings.values():
            if mapping.enabled:
                await self._start_runner(mapping)
        self._lag_task = asyncio.create_task(self._watch_lag())

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
        for uid in list(self._runners):
            await self._stop_runner(uid)

    # -- the API -------------------------------------------------------------------------------

    def get(self, uid: str) -> EventSourceMapping:
        mapping = self._mappings.get(uid)
        if mapping is None:
            raise errors.ResourceNotFound(f"The resource you requested does not exist. (Service: Lambda; "
                                          f"Status Code: 404; Error Code: ResourceNotFoundException; UUID: {uid})")
        return mapping

    def list(self, function: str, source: str, marker: str, max_items: int) -> tuple[list[EventSourceMapping], str]:
        chosen = sorted((m for m in self._mappings.values()
                         if (not function or m.function == function) and
                         (not source or m.event_source_arn == source)), key=lambda m: m.uuid)
        start = next((i for i, m in enumerate(chosen) if m.uuid > marker), len(chosen)) if marker else 0
        page = chosen[start:start + max_items]
        return page, page[-1].uuid if start + max_items < len(chosen) and page else ""

    async def create(self, mapping: EventSourceMapping) -> EventSourceMapping:
        mapping.uuid = str(uuid.uuid4())
        if not mapping.batch_size:
            mapping.batch_size = 10
        if not mapping.maximum_concurrency:
            mapping.maximum_concurrency = 2
        await self._validate(mapping)
        if mapping.event_source_arn.startswith(STREAM_SOURCE):
            await self._js.add_consumer(self._stream_of(mapping), ConsumerConfig(
                durable_name=consumer_name(mapping), ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
                deliver_policy=DeliverPolicy.ALL, max_ack_pending=-1, max_waiting=4096))
        mapping.state = "Enabled" if mapping.enabled else "Disabled"
        mapping.state_transition_reason = "USER_INITIATED"
        await self._put(mapping)
        if mapping.enabled:
            await self._start_runner(mapping)
        answer = EventSourceMapping()
        answer.CopyFrom(mapping)
        answer.state = "Creating"
        return answer

    async def update(self, uid: str, changes: EventSourceMapping, fields: list[str]) -> EventSourceMapping:
        mapping = EventSourceMapping()
        mapping.CopyFrom(self.get(uid))
        for field in fields:
            if field not in UPDATABLE:
                raise errors.InvalidParameterValue(f"{field} cannot be updated")
            if field == "function_response_types":
                del mapping.function_response_types[:]
                mapping.function_response_types.extend(changes.function_response_types)
            else:
                setattr(mapping, field, getattr(changes, field))
        await self._validate(mapping)
        mapping.state = "Enabled" if mapping.enabled else "Disabled"
        await self._stop_runner(uid)
        await self._put(mapping)
        if mapping.enabled:
            await self._start_runner(mapping)
        return mapping

    async def delete(self, uid: str) -> EventSourceMapping:
        mapping = self.get(uid)
        await self._stop_runner(uid)
        if mapping.event_source_arn.startswith(STREAM_SOURCE):
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(self._stream_of(mapping), consumer_name(mapping))
        assert self._kv is not None
        await self._kv.purge(uid)
        del self._mappings[uid]
        with contextlib.suppress(KeyError):
            self._lag.remove(uid)
        answer = EventSourceMapping()
        answer.CopyFrom(mapping)
        answer.state = "Deleting"
        return answer

    async def _put(self, mapping: EventSourceMapping) -> None:
        assert self._kv is not None
        mapping.last_modified = self._clock()
        await self._kv.put(mapping.uuid, mapping.SerializeToString())
        self._mappings[mapping.uuid] = mapping

    async def _validate(self, mapping: EventSourceMapping) -> None:
        if mapping.function not in self._registry:
            raise errors.function_not_found(self._arns.function(mapping.function))
        if not 1 <= mapping.batch_size <= 10000:
            raise errors.InvalidParameterValue("BatchSize must be between 1 and 10000")
        if not 0 <= mapping.batching_window <= 300:
            raise errors.InvalidParameterValue("MaximumBatchingWindowInSeconds must be between 0 and 300")
        if not 1 <= mapping.maximum_concurrency <= 1000:
            raise errors.InvalidParameterValue("ScalingConfig.MaximumConcurrency must be between 2 and 1000")
        if mapping.HasField("maximum_retry_attempts") and not 0 <= mapping.maximum_retry_attempts <= 10000:
            raise errors.InvalidParameterValue("MaximumRetryAttempts must be between 0 and 10000")
        for kind in mapping.function_response_types:
            if kind != "ReportBatchItemFailures":
                raise errors.InvalidParameterValue(f"Unsupported FunctionResponseTypes value {kind}")
        if mapping.on_failure:
            problem = destination_arn_error(mapping.on_failure)
            if problem:
                raise errors.InvalidParameterValue(problem)
        arn = mapping.event_source_arn
        if arn.startswith(STREAM_SOURCE):
            try:
                await self._js.stream_info(self._stream_of(mapping))
            except NotFoundError:
                raise errors.InvalidParameterValue(f"The JetStream stream of {arn} does not exist") from None
        elif not arn.startswith(SUBJECT_SOURCE) or not arn[len(SUBJECT_SOURCE):] or \
                arn[len(SUBJECT_SOURCE):].startswith("kambda."):
            raise errors.InvalidParameterValue(
                f"EventSourceArn {arn!r} is not arn:kambda:nats:::stream/NAME or arn:kambda:nats:::subject/SUBJECT")

    @staticmethod
    def _stream_of(mapping: EventSourceMapping) -> str:
        return mapping.event_source_arn[len(STREAM_SOURCE):]

    # -- running ---------------------------------------------------------------------------------

    async def _start_runner(self, mapping: EventSourceMapping) -> None:
        if mapping.event_source_arn.startswith(STREAM_SOURCE):
            psub = await self._js.pull_subscribe_bind(consumer_name(mapping), self._stream_of(mapping))
            tasks = [asyncio.create_task(self._stream_loop(mapping, psub)) for _ in range(mapping.maximum_concurrency)]
        else:
            tasks = [asyncio.create_task(self._subject_loop(mapping))]
        self._runners[mapping.uuid] = tasks

    async def _stop_runner(self, uid: str) -> None:
        tasks = self._runners.pop(uid, [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
        if mapping.function not in self._registry:
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
        ids = {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}
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
        await self._poller.deliver(mapping.on_failure, json.dumps(failure).encode())

    async def _in_progress(self, batch: list[Msg]) -> None:
        while True:
            await asyncio.sleep(ACK_WAIT_S / 3)
            for msg in batch:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _subject_loop(self, mapping: EventSourceMapping) -> None:
        """At most once: batches of what arrives on a plain subject while this controller listens."""
        queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=mapping.batch_size * 100)

        async def on_msg(msg: Msg) -> None:
            if queue.full():
                log.warning("mapping %s is behind; dropping a message (at most once)", mapping.uuid)
                return
            queue.put_nowait(msg)

        sub = await self._nc.subscribe(mapping.event_source_arn[len(SUBJECT_SOURCE):], cb=on_msg)
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
            for mapping in list(self._mappings.values()):
                if mapping.event_source_arn.startswith(STREAM_SOURCE):
                    with contextlib.suppress(Exception):
                        info = await self._js.consumer_info(self._stream_of(mapping), consumer_name(mapping))
                        self._lag.labels(mapping.uuid).set(info.num_pending or 0)
            await asyncio.sleep(2.0)
