"""DynamoDB Streams' API (JSON 1.0, ``DynamoDBStreams_20120810.<Op>``): ListStreams, DescribeStream,
GetShardIterator and GetRecords, over the stream records every item change writes in its own transaction
(tables/storage.py, ``ddb_stream``, kept 24 hours).

A table's stream has one shard, open while the stream is enabled: the records are in sequence order (the row's
``seq``, which is the SequenceNumber), which keeps every item's changes in order. On SQLite that is commit order;
on PostgreSQL ``seq`` comes from a sequence drawn inside the transaction, so two concurrent writes of different
items may commit in the other order, and an iterator already past the later number does not see the earlier one
(writes of one item never do this: they conflict, and the second draws its number after the first committed).
Event source mappings do not have this gap: they read what the outbox forwards, every row once.

A shard iterator is opaque to clients: here it is the stream ARN, the position to read after and the time it was
issued (it expires after 15 minutes, as AWS's do).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from kambda.aws.front import Context, Front
from kambda.sql import Tx
from tables import codec, storage
from tables.errors import ExpiredIterator, ResourceNotFound, validation
from tables.schema import Table

if TYPE_CHECKING:
    from tables.api import TablesApi

ITERATOR_TTL_S = 15 * 60
RETENTION_S = 24 * 3600
MAX_RECORDS = 1000


def shard_id(table: Table) -> str:
    return f"shardId-{int(table.created * 1000):020d}-{table.tid & 0xFFFFFFFF:08x}"


def table_of_stream(arn: str) -> tuple[str, str]:
    """(table name, stream label) of ``arn:aws:dynamodb:REGION:ACCOUNT:table/T/stream/LABEL``."""
    try:
        rest = arn.split(":table/", 1)[1]
        name, kind, label = rest.split("/", 2)
    except (IndexError, ValueError):
        raise validation(f"Invalid StreamArn: {arn}") from None
    if kind != "stream":
        raise validation(f"Invalid StreamArn: {arn}")
    return name, label


def stream_record(seq: int, data: bytes, outbound: bool = True) -> dict[str, Any]:
    """A stored record in AWS's shape with its SequenceNumber (blobs as bytes for the front door when
    ``outbound``, else as base64 text, as JSON carries them)."""
    record: dict[str, Any] = orjson.loads(data)
    change = record["dynamodb"]
    change["SequenceNumber"] = storage.sequence_number(seq)
    if outbound:
        for part in ("Keys", "NewImage", "OldImage"):
            if part in change:
                change[part] = codec.outbound(change[part])
        change["ApproximateCreationDateTime"] = datetime.fromtimestamp(change["ApproximateCreationDateTime"], UTC)
        identity = record.get("userIdentity")
        if identity:  # Lambda's events spell it {"type", "principalId"}, the Streams API {"Type", "PrincipalId"}
            record["userIdentity"] = {"Type": identity["type"], "PrincipalId": identity["principalId"]}
    return record


class StreamsApi:
    def __init__(self, tables: TablesApi, clock: Callable[[], float] = time.time) -> None:
        self._tables = tables
        self._clock = clock

    def register(self, front: Front) -> None:
        for name, work in {"ListStreams": self._list, "DescribeStream": self._describe,
                           "GetShardIterator": self._iterator, "GetRecords": self._records}.items():
            front.register("dynamodbstreams", name, self._reader(work), self._resources)

    def _reader(self, work: Callable[[Tx, dict[str, Any]], dict[str, Any]]) -> Any:
        async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
            return await self._tables.db.read(lambda tx: work(tx, params))

        return handle

    def _resources(self, ctx: Context, params: dict[str, Any]) -> list[str]:
        arn = params.get("StreamArn")
        if isinstance(arn, str):
            return [arn]
        if isinstance(params.get("ShardIterator"), str):
            try:
                return [self._decode(params["ShardIterator"])[0]]
            except Exception:
                return ["*"]
        return ["*"]

    def _table(self, tx: Tx, arn: str) -> Table:
        name, label = table_of_stream(arn)
        table = self._tables.specs.find(tx, name)
        if table is None or table.stream_label != label:
            raise ResourceNotFound(f"Requested resource not found: Stream: {arn} not found")
        return table

    def _arn(self, table: Table) -> str:
        arn = table.stream_arn(self._tables.region, self._tables.account)
        assert arn is not None
        return arn

    def _list(self, tx: Tx, params: dict[str, Any]) -> dict[str, Any]:
        names = [params["TableName"]] if params.get("TableName") else self._tables.specs.names(tx, "", 10_000)
        streams = []
        for name in names:
            table = self._tables.specs.find(tx, name)
            if table is not None and table.stream_label:
                streams.append({"StreamArn": self._arn(table), "TableName": name, "StreamLabel": table.stream_label})
        start = params.get("ExclusiveStartStreamArn")
        if start:
            streams = [s for s in streams if s["StreamArn"] > start]
        limit = params.get("Limit") or 100
        out: dict[str, Any] = {"Streams": streams[:limit]}
        if len(streams) > limit:
            out["LastEvaluatedStreamArn"] = streams[limit - 1]["StreamArn"]
        return out

    def _describe(self, tx: Tx, params: dict[str, Any]) -> dict[str, Any]:
        table = self._table(tx, params["StreamArn"])
        first = tx.execute("SELECT min(seq) FROM ddb_stream WHERE tid = ?", (table.tid,))[0][0]
        shard: dict[str, Any] = {"ShardId": shard_id(table), "SequenceNumberRange": {
            "StartingSequenceNumber": storage.sequence_number(first or 1)}}
        shards = [shard] if params.get("ExclusiveStartShardId") != shard["ShardId"] else []
        return {"StreamDescription": {
            "StreamArn": params["StreamArn"], "StreamLabel": table.stream_label,
            "StreamStatus": "ENABLED" if table.stream_view else "DISABLED",
            "StreamViewType": table.stream_view or "KEYS_ONLY",
            "CreationRequestDateTime": datetime.fromtimestamp(table.created, UTC),
            "TableName": table.name, "KeySchema": table.key_schema(), "Shards": shards}}

    def _encode(self, arn: str, after: int) -> str:
        return base64.urlsafe_b64encode(orjson.dumps([arn, after, self._clock()])).decode()

    def _decode(self, iterator: str) -> tuple[str, int, float]:
        try:
            arn, after, issued = orjson.loads(base64.urlsafe_b64decode(iterator.encode()))
            return str(arn), int(after), float(issued)
        except (ValueError, TypeError):
            raise validation("Invalid ShardIterator") from None

    def _iterator(self, tx: Tx, params: dict[str, Any]) -> dict[str, Any]:
        table = self._table(tx, params["StreamArn"])
        if params["ShardId"] != shard_id(table):
            raise ResourceNotFound(f"Requested resource not found: Shard does not exist: {params['ShardId']}")
        kind = params["ShardIteratorType"]
        number = params.get("SequenceNumber")
        if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            if not number or not str(number).isdigit():
                raise validation(f"Invalid SequenceNumber for ShardIteratorType {kind}: {number}")
            after = int(number) - (1 if kind == "AT_SEQUENCE_NUMBER" else 0)
        elif kind == "TRIM_HORIZON":
            after = 0
        elif kind == "LATEST":
            after = tx.execute("SELECT max(seq) FROM ddb_stream WHERE tid = ?", (table.tid,))[0][0] or 0
        else:
            raise validation(f"Invalid ShardIteratorType: {kind}")
        return {"ShardIterator": self._encode(params["StreamArn"], after)}

    def _records(self, tx: Tx, params: dict[str, Any]) -> dict[str, Any]:
        arn, after, issued = self._decode(params["ShardIterator"])
        now = self._clock()
        if now - issued > ITERATOR_TTL_S:
            raise ExpiredIterator("Iterator expired. The iterator was created at time "
                                  f"{datetime.fromtimestamp(issued, UTC).isoformat()} while right now it is "
                                  f"{datetime.fromtimestamp(now, UTC).isoformat()} which is further in the future "
                                  "than the tolerated delay of 900000 milliseconds.")
        limit = params.get("Limit") or MAX_RECORDS
        if not 1 <= limit <= MAX_RECORDS:
            raise validation(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy "
                             "constraint: Member must have value less than or equal to 1000")
        table = self._table(tx, arn)
        rows = tx.execute("SELECT seq, record FROM ddb_stream WHERE tid = ? AND seq > ? AND created >= ?"
                          " ORDER BY seq LIMIT ?", (table.tid, after, now - RETENTION_S, limit))
        records = [stream_record(seq, data) for seq, data in rows]
        return {"Records": records, "NextShardIterator": self._encode(arn, rows[-1][0] if rows else after)}
