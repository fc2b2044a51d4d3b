"""Event source mappings as the controller keeps them: created, validated and stored (KV bucket
``kambda_mappings``, one entry per mapping, keyed by its UUID) through the controller's gRPC
``EventSourceMappings``; the worker tier runs them (events/sources.py).

Creating a mapping over a JetStream stream makes its durable consumer ``esm-<uuid>`` (at the start
of the stream) before the mapping is stored, so the workers find it when they see the mapping;
deleting one stops the mapping and removes its consumer.

A DynamoDB stream (``arn:aws:dynamodb:REGION:ACCOUNT:table/T/stream/LABEL``) is read from KAMBDA_DDB, where the
worker tier forwards the table's records (tables/outbox.py). Its mapping gets ParallelizationFactor consumers
``esm-<uuid>-<i>``, consumer i taking the record partitions p with p % factor == i (a partition is a set of
items' partition keys, so each item's records go to one consumer), each with at most BatchSize records
unacknowledged: one batch at a time, in order. Several mappings on one stream each have their own consumers, so
each sees every record.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from events import patterns
from functions.lookup import FunctionLookup
from kambda import bus
from kambda.aws import errors
from kambda.bus import kvwatch
from kambda.names import Arns, destination_arn_error
from kambda.v1.mapping_pb2 import EventSourceMapping

MAPPINGS_BUCKET = "kambda_mappings"
STREAM_SOURCE = "arn:kambda:nats:::stream/"
SUBJECT_SOURCE = "arn:kambda:nats:::subject/"
ACK_WAIT_S = 30.0
UPDATABLE = ("batch_size", "batching_window", "enabled", "function_response_types", "maximum_retry_attempts",
             "on_failure", "maximum_concurrency", "function", "bisect_batch_on_function_error",
             "maximum_record_age", "filter_criteria")
DDB_SOURCE = re.compile(r"arn:aws:dynamodb:[a-z0-9-]+:\d{12}:table/([a-zA-Z0-9_.-]{3,255})/stream/(.+)")


def ddb_stream(mapping: EventSourceMapping) -> tuple[str, str] | None:
    """(table, label) of a DynamoDB stream mapping, else None."""
    found = DDB_SOURCE.fullmatch(mapping.event_source_arn)
    return (found.group(1), found.group(2)) if found else None


def ddb_consumers(mapping: EventSourceMapping) -> list[tuple[str, list[str]]]:
    """The consumers of a DynamoDB stream mapping and the subjects each takes."""
    source = ddb_stream(mapping)
    assert source is not None
    factor = max(mapping.parallelization_factor, 1)
    return [(f"{consumer_name(mapping)}-{i}", [bus.ddb_subject(*source, p) for p in range(bus.DDB_PARTITIONS)
                                              if p % factor == i]) for i in range(factor)]


def consumer_name(mapping: EventSourceMapping) -> str:
    return f"esm-{mapping.uuid}"


def stream_of(mapping: EventSourceMapping) -> str:
    return mapping.event_source_arn[len(STREAM_SOURCE):]


async def mappings_bucket(js: JetStreamContext) -> KeyValue:
    try:
        return await js.key_value(MAPPINGS_BUCKET)
    except NotFoundError:
        return await js.create_key_value(bucket=MAPPINGS_BUCKET, history=1)


class Mappings:
    """The mappings (in KV), their validation, and their consumers."""

    def __init__(self, js: JetStreamContext, registry: FunctionLookup, arns: Arns,
                 clock: Callable[[], float] = time.time) -> None:
        self._js = js
        self._registry = registry
        self._arns = arns
        self._clock = clock
        self._kv: KeyValue | None = None
        self._mappings: dict[str, EventSourceMapping] = {}

    async def start(self) -> None:
        self._kv = await mappings_bucket(self._js)
        for entry in await kvwatch.entries(self._js, self._kv):
            self._mappings[entry.key] = EventSourceMapping.FromString(entry.value or b"")

    async def stop(self) -> None:
        self._mappings.clear()

    def get(self, uid: str) -> EventSourceMapping:
        mapping = self._mappings.get(uid)
        if mapping is None:
            raise errors.ResourceNotFound(f"The resource you requested does not exist. (Service: Lambda; "
                                          f"Status Code: 404; Error Code: ResourceNotFoundException; UUID: {uid})")
        return mapping

    def list(self, function: str, source: str, marker: str, max_items: int
             ) -> tuple[builtins.list[EventSourceMapping], str]:
        chosen = sorted((m for m in self._mappings.values()
                         if (not function or m.function == function) and
                         (not source or m.event_source_arn == source)), key=lambda m: m.uuid)
        start = next((i for i, m in enumerate(chosen) if m.uuid > marker), len(chosen)) if marker else 0
        page = chosen[start:start + max_items]
        return page, page[-1].uuid if start + max_items < len(chosen) and page else ""

    async def create(self, mapping: EventSourceMapping) -> EventSourceMapping:
        mapping.uuid = str(uuid.uuid4())
        if not mapping.batch_size:
            mapping.batch_size = 100 if ddb_stream(mapping) is not None else 10
        if not mapping.maximum_concurrency:
            mapping.maximum_concurrency = 2
        if ddb_stream(mapping) is not None:
            self._ddb_defaults(mapping)
        await self._validate(mapping)
        if ddb_stream(mapping) is not None:
            await self._ddb_consumers(mapping)
        elif mapping.event_source_arn.startswith(STREAM_SOURCE):
            await self._js.add_consumer(stream_of(mapping), ConsumerConfig(
                durable_name=consumer_name(mapping), ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
                deliver_policy=DeliverPolicy.ALL, max_ack_pending=-1, max_waiting=4096))
        mapping.state = "Enabled" if mapping.enabled else "Disabled"
        mapping.state_transition_reason = "USER_INITIATED"
        await self._put(mapping)
        answer = EventSourceMapping()
        answer.CopyFrom(mapping)
        answer.state = "Creating"
        return answer

    async def update(self, uid: str, changes: EventSourceMapping, fields: builtins.list[str]) -> EventSourceMapping:
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
        if ddb_stream(mapping) is not None and "batch_size" in fields:
            await self._ddb_consumers(mapping)  # one batch unacknowledged: the new size
        mapping.state = "Enabled" if mapping.enabled else "Disabled"
        await self._put(mapping)
        return mapping

    async def _ddb_consumers(self, mapping: EventSourceMapping) -> None:
        """Create (or change) a DynamoDB stream mapping's consumers: at most one batch unacknowledged each."""
        for name, subjects in ddb_consumers(mapping):
            await self._js.add_consumer(bus.DDB_STREAM, ConsumerConfig(
                durable_name=name, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
                deliver_policy=DeliverPolicy.NEW if mapping.starting_position == "LATEST" else DeliverPolicy.ALL,
                filter_subjects=subjects, max_ack_pending=mapping.batch_size, max_waiting=512))

    async def delete(self, uid: str) -> EventSourceMapping:
        mapping = self.get(uid)
        if ddb_stream(mapping) is not None:
            for name, _ in ddb_consumers(mapping):
                with contextlib.suppress(NotFoundError):
                    await self._js.delete_consumer(bus.DDB_STREAM, name)
        elif mapping.event_source_arn.startswith(STREAM_SOURCE):
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(stream_of(mapping), consumer_name(mapping))
        assert self._kv is not None
        await self._kv.purge(uid)
        del self._mappings[uid]
        answer = EventSourceMapping()
        answer.CopyFrom(mapping)
        answer.state = "Deleting"
        return answer

    @staticmethod
    def _ddb_defaults(mapping: EventSourceMapping) -> None:
        """AWS's defaults for a stream: 100 records a batch, one batch per shard, retries until a record is
        too old (-1: until it leaves the stream)."""
        if not mapping.parallelization_factor:
            mapping.parallelization_factor = 1
        if not mapping.HasField("maximum_retry_attempts"):
            mapping.maximum_retry_attempts = -1
        if not mapping.HasField("maximum_record_age"):
            mapping.maximum_record_age = -1

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
        if mapping.HasField("maximum_retry_attempts") and ddb_stream(mapping) is None and \
                not 0 <= mapping.maximum_retry_attempts <= 10000:
            raise errors.InvalidParameterValue("MaximumRetryAttempts must be between 0 and 10000")
        for kind in mapping.function_response_types:
            if kind != "ReportBatchItemFailures":
                raise errors.InvalidParameterValue(f"Unsupported FunctionResponseTypes value {kind}")
        if mapping.on_failure:
            problem = destination_arn_error(mapping.on_failure)
            if problem:
                raise errors.InvalidParameterValue(problem)
        arn = mapping.event_source_arn
        if ddb_stream(mapping) is not None:
            self._validate_ddb(mapping)
        elif mapping.starting_position or mapping.parallelization_factor:
            raise errors.InvalidParameterValue("StartingPosition and ParallelizationFactor are for stream sources "
                                               "(a DynamoDB stream)")
        elif arn.startswith(STREAM_SOURCE):
            try:
                await self._js.stream_info(stream_of(mapping))
            except NotFoundError:
                raise errors.InvalidParameterValue(f"The JetStream stream of {arn} does not exist") from None
        elif not arn.startswith(SUBJECT_SOURCE) or not arn[len(SUBJECT_SOURCE):] or \
                arn[len(SUBJECT_SOURCE):].startswith("kambda."):
            raise errors.InvalidParameterValue(
                f"EventSourceArn {arn!r} is not arn:kambda:nats:::stream/NAME, arn:kambda:nats:::subject/SUBJECT "
                "or a DynamoDB stream's ARN")

    @staticmethod
    def _validate_ddb(mapping: EventSourceMapping) -> None:
        if mapping.starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise errors.InvalidParameterValue("StartingPosition must be TRIM_HORIZON or LATEST for a DynamoDB "
                                               "stream" if mapping.starting_position else
                                               "StartingPosition is required for a DynamoDB stream")
        if not 1 <= mapping.parallelization_factor <= 10:
            raise errors.InvalidParameterValue("ParallelizationFactor must be between 1 and 10")
        if not -1 <= mapping.maximum_retry_attempts <= 10000:
            raise errors.InvalidParameterValue("MaximumRetryAttempts must be between -1 and 10000")
        age = mapping.maximum_record_age
        if age != -1 and not 60 <= age <= 604800:
            raise errors.InvalidParameterValue("MaximumRecordAgeInSeconds must be -1 or between 60 and 604800")
        if mapping.filter_criteria:
            try:
                for entry in json.loads(mapping.filter_criteria).get("Filters") or []:
                    patterns.parse(entry["Pattern"])
            except (ValueError, KeyError, TypeError, AttributeError, errors.KambdaError) as exc:
                raise errors.InvalidParameterValue(f"Invalid FilterCriteria: {exc}") from None
