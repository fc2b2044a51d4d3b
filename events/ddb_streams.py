"""Event source mappings over DynamoDB streams at work: batches of a table's stream records, in order, to a
function, as Lambda's stream pollers do.

The records arrive on KAMBDA_DDB (forwarded from the table's outbox, tables/outbox.py); the mapping has one
durable consumer per ParallelizationFactor slot (events/mappings.py), each allowing one batch unacknowledged, so a
slot's records are handed over strictly in order and the next batch waits for this one. One loop runs per slot
in each worker replica; JetStream gives a batch to one of them, and to another if that worker dies.

A batch (BatchSize records, gathered for at most MaximumBatchingWindowInSeconds) goes to the function as
``{"Records": [...]}`` in DynamoDB's shape. Records that FilterCriteria does not match are dropped without an
invocation, and records older than MaximumRecordAgeInSeconds are given up. On a function error the batch is
retried in place (with backoff) until MaximumRetryAttempts (-1: until the record expires): with
BisectBatchOnFunctionError it is split in two first, the halves retried in order; with ReportBatchItemFailures the
function names the first failed record (``{"batchItemFailures": [{"itemIdentifier": SequenceNumber}]}``) and
only it and what follows are retried. A batch given up goes to the OnFailure destination as a
``DDBStreamBatchInfo`` and the shard moves on. Only then are the records acknowledged, so the order per key holds
across retries and crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError

from events import patterns
from events.destinations import Destinations
from events.mappings import ACK_WAIT_S, ddb_consumers
from kambda import bus
from kambda.backoff import Backoff
from kambda.names import LATEST, Arns
from kambda.v1.invocation_pb2 import InvocationResult
from kambda.v1.mapping_pb2 import EventSourceMapping

log = logging.getLogger(__name__)

Invoke = Callable[[EventSourceMapping, list[dict[str, Any]]], Awaitable[InvocationResult | None]]
FETCH_WAIT_S = 5.0
MIN_GATHER_S = 0.005


def _ok(result: InvocationResult | None) -> bool:
    return result is not None and not result.function_error and not result.error_code


class StreamBatches:
    """The loops of DynamoDB stream mappings (started and stopped by events/sources.py)."""

    def __init__(self, js: Any, invoke: Invoke, destinations: Destinations, arns: Arns, retry: Backoff,
                 clock: Callable[[], float] = time.time) -> None:
        self._js = js
        self._invoke = invoke
        self._destinations = destinations
        self._arns = arns
        self._retry = retry
        self._clock = clock

    async def start(self, mapping: EventSourceMapping) -> tuple[list[asyncio.Task[None]], list[Any]]:
        subs = [await self._js.pull_subscribe_bind(name, bus.DDB_STREAM) for name, _ in ddb_consumers(mapping)]
        filters = [patterns.parse(f["Pattern"]) for f in
                   (json.loads(mapping.filter_criteria).get("Filters") or [] if mapping.filter_criteria else [])]
        return [asyncio.create_task(self._loop(mapping, sub, filters)) for sub in subs], subs

    async def _loop(self, mapping: EventSourceMapping, sub: Any, filters: list[patterns.Node]) -> None:
        while True:
            try:
                batch = await self._fetch(mapping, sub)
                if batch:
                    await self._batch(mapping, batch, filters)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("DynamoDB stream mapping %s failed a batch", mapping.uuid)
                await asyncio.sleep(1)

    async def _fetch(self, mapping: EventSourceMapping, sub: Any) -> list[Msg]:
        try:
            batch: list[Msg] = await sub.fetch(1, timeout=FETCH_WAIT_S)
        except (NatsTimeoutError, TimeoutError):
            return []
        deadline = time.monotonic() + max(mapping.batching_window, MIN_GATHER_S)
        while len(batch) < mapping.batch_size and (left := deadline - time.monotonic()) > 0:
            try:
                batch += await sub.fetch(mapping.batch_size - len(batch), timeout=left)
            except (NatsTimeoutError, TimeoutError):
                break
        return batch

    async def _batch(self, mapping: EventSourceMapping, msgs: list[Msg], filters: list[patterns.Node]) -> None:
        keepalive = asyncio.create_task(self._in_progress(msgs))
        try:
            records = [json.loads(m.data) for m in msgs]
            if filters:
                records = [r for r in records if any(patterns.matches(f, r) for f in filters)]
            if mapping.maximum_record_age > 0:
                oldest = self._clock() - mapping.maximum_record_age
                expired = [r for r in records if r["dynamodb"]["ApproximateCreationDateTime"] < oldest]
                if expired:
                    await self._give_up(mapping, expired, None, 0, "RecordAgeExceeded")
                    records = [r for r in records if r not in expired]
            if records:
                await self._deliver(mapping, records)
        finally:
            keepalive.cancel()
        for msg in msgs:
            await msg.ack()

    async def _deliver(self, mapping: EventSourceMapping, records: list[dict[str, Any]]) -> None:
        parts = [records]
        while parts:
            part = parts.pop(0)
            attempts = 0
            while part:
                result = await self._invoke(mapping, part)
                if _ok(result):
                    assert result is not None
                    first = self._first_failure(mapping, result, part)
                    if first is None:
                        break
                    part = part[first:]
                else:
                    if mapping.bisect_batch_on_function_error and len(part) > 1:
                        half = len(part) // 2
                        parts[:0] = [part[:half], part[half:]]
                        part = []
                        break
                attempts += 1
                retries = mapping.maximum_retry_attempts
                if retries != -1 and attempts > retries:
                    await self._give_up(mapping, part, result, attempts, "RetryAttemptsExhausted")
                    break
                await asyncio.sleep(self._retry.delay(attempts - 1))

    @staticmethod
    def _first_failure(mapping: EventSourceMapping, result: InvocationResult,
                       part: list[dict[str, Any]]) -> int | None:
        """The index of the first record the function reports failed (None: none, or not asked to report)."""
        if "ReportBatchItemFailures" not in mapping.function_response_types or not result.payload:
            return None
        try:
            answer = json.loads(result.payload)
        except ValueError:
            return 0
        failures = answer.get("batchItemFailures") if isinstance(answer, dict) else None
        if not failures:
            return None
        numbers = [r["dynamodb"]["SequenceNumber"] for r in part]
        ids = [f.get("itemIdentifier") for f in failures if isinstance(f, dict)]
        found = [numbers.index(i) for i in ids if i in numbers]
        return min(found) if found and len(found) == len(ids) else 0

    async def _give_up(self, mapping: EventSourceMapping, records: list[dict[str, Any]],
                       result: InvocationResult | None, attempts: int, condition: str) -> None:
        log.warning("DynamoDB stream mapping %s gives up %d records (%s)", mapping.uuid, len(records), condition)
        if not mapping.on_failure:
            return
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        failure = {
            "version": "1.0", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock())),
            "requestContext": {"requestId": result.request_id if result else "",
                               "functionArn": self._arns.function(mapping.function), "condition": condition,
                               "approximateInvokeCount": attempts},
            "responseContext": {"statusCode": 200, "executedVersion": LATEST,
                                "functionError": (result.function_error or result.error_code) if result else ""},
            "DDBStreamBatchInfo": {
                "shardId": "shardId-0", "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": first["ApproximateCreationDateTime"],
                "approximateArrivalOfLastRecord": last["ApproximateCreationDateTime"],
                "batchSize": len(records), "streamArn": mapping.event_source_arn},
        }
        await self._destinations.deliver(mapping.on_failure, json.dumps(failure).encode())

    async def _in_progress(self, batch: list[Msg]) -> None:
        while True:
            await asyncio.sleep(ACK_WAIT_S / 3)
            for msg in batch:
                with contextlib.suppress(Exception):
                    await msg.in_progress()
