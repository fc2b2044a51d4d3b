"""DynamoDB's items on the SQL kernel (kambda/sql.py), the same on SQLite and PostgreSQL.

Rows:

- ``ddb_tables``: one row per table, its definition as JSON (tables/schema.py) and a version bumped by each change.
- ``ddb_items``: the items, keyed by (table id, partition hash, partition key bytes, sort key bytes) (``WITHOUT
  ROWID`` on SQLite, so the key is the clustered B-tree and a Query is one range of it), the item as compact
  JSON, its size by DynamoDB's rules and its TTL instant.
- ``ddb_index``: one row per item in each secondary index whose key attributes it has, keyed by (table id, index,
  index partition hash, index partition key, index sort key, table keys); the item itself is read from
  ``ddb_items``, projected as the index declares.
- ``ddb_stream``: the table's stream records (the Streams API reads them, kept 24 hours) and ``ddb_outbox``: the
  sequence numbers the worker tier has not yet forwarded to JetStream (tables/outbox.py).

Every change of an item writes its index rows and its stream record in the caller's transaction: the caller
(tables/items.py) runs read, condition, write and record in one ``Database.write``. Every function here takes
the open :class:`kambda.sql.Tx`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from kambda.bus import DDB_PARTITIONS
from kambda.names import new_request_id
from kambda.sql import Tx
from tables import codec, expressions
from tables.codec import Item
from tables.errors import not_found, validation
from tables.schema import Index, Table

MAX_ITEM = 400 * 1024
PAGE_BYTES = 1024 * 1024
ROWS_PER_FETCH = 256

SCHEMA: dict[str, list[str]] = {
    "sqlite": [
        "CREATE TABLE ddb_tables (name TEXT PRIMARY KEY, tid INTEGER NOT NULL, version INTEGER NOT NULL,"
        " spec BLOB NOT NULL)",
        "CREATE TABLE ddb_items (tid INTEGER NOT NULL, h INTEGER NOT NULL, pk BLOB NOT NULL, sk BLOB NOT NULL,"
        " item BLOB NOT NULL, size INTEGER NOT NULL, ttl REAL, PRIMARY KEY (tid, h, pk, sk)) WITHOUT ROWID",
        "CREATE INDEX ddb_items_ttl ON ddb_items (ttl) WHERE ttl IS NOT NULL",
        "CREATE TABLE ddb_index (tid INTEGER NOT NULL, idx TEXT NOT NULL, h INTEGER NOT NULL, ipk BLOB NOT NULL,"
        " isk BLOB NOT NULL, pk BLOB NOT NULL, sk BLOB NOT NULL, ih INTEGER NOT NULL,"
        " PRIMARY KEY (tid, idx, h, ipk, isk, pk, sk)) WITHOUT ROWID",
        "CREATE TABLE ddb_stream (seq INTEGER PRIMARY KEY AUTOINCREMENT, tid INTEGER NOT NULL,"
        " stream TEXT NOT NULL, part INTEGER NOT NULL, created REAL NOT NULL, record BLOB NOT NULL)",
        "CREATE INDEX ddb_stream_tid ON ddb_stream (tid, seq)",
        "CREATE TABLE ddb_outbox (seq INTEGER PRIMARY KEY)",
        "CREATE TABLE ddb_tokens (token TEXT PRIMARY KEY, digest TEXT NOT NULL, created REAL NOT NULL,"
        " answer BLOB NOT NULL)",
        "CREATE TABLE ddb_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL)",
    ],
    "postgresql": [
        "CREATE TABLE ddb_tables (name TEXT PRIMARY KEY, tid BIGINT NOT NULL, version INTEGER NOT NULL,"
        " spec BYTEA NOT NULL)",
        "CREATE TABLE ddb_items (tid BIGINT NOT NULL, h BIGINT NOT NULL, pk BYTEA NOT NULL, sk BYTEA NOT NULL,"
        " item BYTEA NOT NULL, size INTEGER NOT NULL, ttl DOUBLE PRECISION, PRIMARY KEY (tid, h, pk, sk))",
        "CREATE INDEX ddb_items_ttl ON ddb_items (ttl) WHERE ttl IS NOT NULL",
        "CREATE TABLE ddb_index (tid BIGINT NOT NULL, idx TEXT NOT NULL, h BIGINT NOT NULL, ipk BYTEA NOT NULL,"
        " isk BYTEA NOT NULL, pk BYTEA NOT NULL, sk BYTEA NOT NULL, ih BIGINT NOT NULL,"
        " PRIMARY KEY (tid, idx, h, ipk, isk, pk, sk))",
        "CREATE TABLE ddb_stream (seq BIGSERIAL PRIMARY KEY, tid BIGINT NOT NULL, stream TEXT NOT NULL,"
        " part INTEGER NOT NULL, created DOUBLE PRECISION NOT NULL, record BYTEA NOT NULL)",
        "CREATE INDEX ddb_stream_tid ON ddb_stream (tid, seq)",
        "CREATE TABLE ddb_outbox (seq BIGINT PRIMARY KEY)",
        "CREATE TABLE ddb_tokens (token TEXT PRIMARY KEY, digest TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,"
        " answer BYTEA NOT NULL)",
        "CREATE TABLE ddb_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until DOUBLE PRECISION NOT NULL)",
    ],
}

TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


@dataclass(frozen=True)
class Key:
    """Where an item lies: partition hash, partition key bytes, sort key bytes (b"" without a sort key)."""

    h: int
    pk: bytes
    sk: bytes


class Specs:
    """Table definitions by name, parsed once per version (a row read per call keeps replicas in step)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, int, Table]] = {}
        self._lock = threading.Lock()

    def get(self, tx: Tx, name: str) -> Table:
        table = self.find(tx, name)
        if table is None:
            raise not_found(name)
        return table

    def find(self, tx: Tx, name: str) -> Table | None:
        rows = tx.execute("SELECT tid, version, spec FROM ddb_tables WHERE name = ?", (name,))
        if not rows:
            return None
        tid, version, spec = rows[0]
        cached = self._cache.get(name)
        if cached is not None and cached[0] == tid and cached[1] == version:
            return cached[2]
        table = Table.loads(spec)
        with self._lock:
            self._cache[name] = (tid, version, table)
        return table

    def streams(self, name: str) -> bool:
        """Whether the table, as last read here, has a stream (no database access)."""
        cached = self._cache.get(name)
        return cached is not None and cached[2].stream_view is not None

    def cached(self) -> list[str]:
        return list(self._cache)

    def by_tid(self, tx: Tx, tid: int) -> Table | None:
        rows = tx.execute("SELECT name FROM ddb_tables WHERE tid = ?", (tid,))
        return self.find(tx, rows[0][0]) if rows else None

    def names(self, tx: Tx, start: str, limit: int) -> list[str]:
        return [r[0] for r in tx.execute("SELECT name FROM ddb_tables WHERE name > ? ORDER BY name LIMIT ?",
                                         (start, limit))]


# -- keys ---------------------------------------------------------------------------------------------------------

def _key_value(table: Table, item: Item, name: str, what: str) -> bytes:
    value = item.get(name)
    expected = table.types[name]
    if value is None:
        if what == "item":
            raise validation(f"One or more parameter values were invalid: Missing the key {name} in the item")
        raise validation("The provided key element does not match the schema")
    actual = codec.type_of(value)
    if actual != expected:
        if what == "item":
            raise validation(f"One or more parameter values were invalid: Type mismatch for key {name} expected: "
                             f"{expected} actual: {actual}")
        raise validation("The provided key element does not match the schema")
    if expected in ("S", "B") and value[expected] == "":
        raise validation("One or more parameter values are not valid. The AttributeValue for a key attribute "
                         f"cannot contain an empty {'string' if expected == 'S' else 'binary'} value. Key: {name}")
    return codec.key_bytes(value)


def key_of(table: Table, item: Item, what: str = "key") -> Key:
    """The storage key of an item (``what="item"``) or of a request's Key (which must hold the keys only)."""
    if what == "key" and len(item) != len(table.key_names()):
        raise validation("The provided key element does not match the schema")
    pk = _key_value(table, item, table.hash, what)
    sk = _key_value(table, item, table.range, what) if table.range else b""
    return Key(codec.partition_hash(pk), pk, sk)


def key_attributes(table: Table, item: Item) -> Item:
    return {name: item[name] for name in table.key_names() if name in item}


def index_key(table: Table, index: Index, item: Item) -> tuple[int, bytes, bytes] | None:
    """The index row's (hash, partition, sort) for an item, or None when the item lacks an index key (sparse)."""
    parts = []
    for name in (index.hash, index.range):
        if name is None:
            parts.append(b"")
            continue
        value = item.get(name)
        if value is None:
            return None
        expected = table.types[name]
        actual = codec.type_of(value)
        if actual != expected:
            raise validation(f"One or more parameter values were invalid: Type mismatch for Index Key {name} "
                             f"Expected: {expected} Actual: {actual} IndexName: {index.name}")
        if expected in ("S", "B") and value[expected] == "":
            raise validation(f"One or more parameter values are not valid. A value specified for a secondary "
                             f"index key is not supported. The AttributeValue for a key attribute cannot contain "
                             f"an empty string value. IndexName: {index.name}, IndexKey: {name}")
        parts.append(codec.key_bytes(value))
    return codec.partition_hash(parts[0]), parts[0], parts[1]


def project(table: Table, index: Index, item: Item) -> Item:
    if index.projection == "ALL":
        return item
    keep = set(table.key_names()) | {index.hash} | ({index.range} if index.range else set())
    if index.projection == "INCLUDE":
        keep |= set(index.non_key)
    return {k: v for k, v in item.items() if k in keep}


def ttl_of(table: Table, item: Item) -> float | None:
    if not table.ttl_attribute:
        return None
    value = item.get(table.ttl_attribute)
    if not value or "N" not in value:
        return None
    try:
        return float(Decimal(value["N"]))
    except (InvalidOperation, ValueError):
        return None


# -- reading ------------------------------------------------------------------------------------------------------

def get(tx: Tx, table: Table, key: Key) -> Item | None:
    rows = tx.execute("SELECT item FROM ddb_items WHERE tid = ? AND h = ? AND pk = ? AND sk = ?",
                      (table.tid, key.h, key.pk, key.sk))
    return codec.loads(rows[0][0]) if rows else None


@dataclass
class Range:
    """A Query's rows: one partition, a sort key range (bounds inclusive unless told), a direction, a resume point."""

    h: int
    pk: bytes
    low: bytes | None = None
    low_open: bool = False
    high: bytes | None = None
    high_open: bool = False
    forward: bool = True
    after: tuple[bytes, ...] | None = None  # the last (sk, ...) returned, to resume past


def query(tx: Tx, table: Table, index: Index | None, rng: Range) -> Iterator[tuple[tuple[bytes, ...], int, Item]]:
    """(resume point, size, item) of the rows in order, fetched a chunk at a time."""
    if index is None:
        base = "SELECT sk, size, item FROM ddb_items WHERE tid = ? AND h = ? AND pk = ?"
        cols: tuple[str, ...] = ("sk",)
        params: list[Any] = [table.tid, rng.h, rng.pk]
    else:
        base = ("SELECT x.isk, x.pk, x.sk, i.size, i.item FROM ddb_index x JOIN ddb_items i ON i.tid = x.tid AND"
                " i.h = x.ih AND i.pk = x.pk AND i.sk = x.sk WHERE x.tid = ? AND x.idx = ? AND x.h = ? AND x.ipk = ?")
        cols = ("x.isk", "x.pk", "x.sk")
        params = [table.tid, index.name, rng.h, rng.pk]
    first = cols[0]
    if rng.low is not None:
        base += f" AND {first} {'>' if rng.low_open else '>='} ?"
        params.append(rng.low)
    if rng.high is not None:
        base += f" AND {first} {'<' if rng.high_open else '<='} ?"
        params.append(rng.high)
    order = " ASC" if rng.forward else " DESC"
    after = rng.after
    while True:
        sql, args = base, list(params)
        if after is not None:
            sql += f" AND ({', '.join(cols)}) {'>' if rng.forward else '<'} ({', '.join('?' * len(cols))})"
            args += list(after)
        sql += " ORDER BY " + ", ".join(c + order for c in cols) + f" LIMIT {ROWS_PER_FETCH}"
        rows = tx.execute(sql, args)
        for row in rows:
            after = tuple(row[:len(cols)])
            yield after, row[-2], codec.loads(row[-1])
        if len(rows) < ROWS_PER_FETCH:
            return


def scan(tx: Tx, table: Table, index: Index | None, low: int, high: int, after: tuple[Any, ...] | None
         ) -> Iterator[tuple[tuple[Any, ...], int, Item]]:
    """Every row whose partition hash is in [low, high), in (hash, partition, sort) order."""
    if index is None:
        base = "SELECT h, pk, sk, size, item FROM ddb_items WHERE tid = ? AND h >= ? AND h < ?"
        cols: tuple[str, ...] = ("h", "pk", "sk")
    else:
        base = ("SELECT x.h, x.ipk, x.isk, x.pk, x.sk, i.size, i.item FROM ddb_index x JOIN ddb_items i ON"
                " i.tid = x.tid AND i.h = x.ih AND i.pk = x.pk AND i.sk = x.sk WHERE x.tid = ? AND x.idx = ? AND"
                " x.h >= ? AND x.h < ?")
        cols = ("x.h", "x.ipk", "x.isk", "x.pk", "x.sk")
    fixed: list[Any] = [table.tid, low, high] if index is None else [table.tid, index.name, low, high]
    while True:
        sql, args = base, list(fixed)
        if after is not None:
            sql += f" AND ({', '.join(cols)}) > ({', '.join('?' * len(cols))})"
            args += list(after)
        sql += " ORDER BY " + ", ".join(cols) + f" LIMIT {ROWS_PER_FETCH}"
        rows = tx.execute(sql, args)
        for row in rows:
            after = tuple(row[:len(cols)])
            yield after, row[-2], codec.loads(row[-1])
        if len(rows) < ROWS_PER_FETCH:
            return


# -- writing ------------------------------------------------------------------------------------------------------

def write(tx: Tx, table: Table, key: Key, old: Item | None, new: Item | None, region: str, now: float,
          identity: dict[str, str] | None = None) -> None:
    """Replace ``old`` by ``new`` at ``key`` (None: absent), with its index rows and its stream record."""
    if new is not None:
        size = expressions.item_size(new)
        if size > MAX_ITEM:
            raise validation("Item size has exceeded the maximum allowed size")
        data = codec.dumps(new)
        if old is None:
            tx.execute("INSERT INTO ddb_items (tid, h, pk, sk, item, size, ttl) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (table.tid, key.h, key.pk, key.sk, data, size, ttl_of(table, new)))
        else:
            tx.execute("UPDATE ddb_items SET item = ?, size = ?, ttl = ? WHERE tid = ? AND h = ? AND pk = ? AND"
                       " sk = ?", (data, size, ttl_of(table, new), table.tid, key.h, key.pk, key.sk))
    elif old is not None:
        tx.execute("DELETE FROM ddb_items WHERE tid = ? AND h = ? AND pk = ? AND sk = ?",
                   (table.tid, key.h, key.pk, key.sk))
    for index in table.indexes:
        before = index_key(table, index, old) if old is not None else None
        after = index_key(table, index, new) if new is not None else None
        if before == after:
            continue
        if before is not None:
            tx.execute("DELETE FROM ddb_index WHERE tid = ? AND idx = ? AND h = ? AND ipk = ? AND isk = ? AND"
                       " pk = ? AND sk = ?", (table.tid, index.name, *before, key.pk, key.sk))
        if after is not None:
            tx.execute("INSERT INTO ddb_index (tid, idx, h, ipk, isk, pk, sk, ih) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (table.tid, index.name, *after, key.pk, key.sk, key.h))
    if table.stream_view and old != new:
        record(tx, table, key, old, new, region, now, identity)


def record(tx: Tx, table: Table, key: Key, old: Item | None, new: Item | None, region: str, now: float,
           identity: dict[str, str] | None = None) -> None:
    """The change's stream record, in AWS's shape without its SequenceNumber (the row's ``seq`` is that)."""
    view = table.stream_view
    source = new if new is not None else old
    assert source is not None and view is not None
    change: dict[str, Any] = {"ApproximateCreationDateTime": int(now), "Keys": key_attributes(table, source),
                              "StreamViewType": view}
    if new is not None and view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        change["NewImage"] = new
    if old is not None and view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
        change["OldImage"] = old
    change["SizeBytes"] = sum(expressions.item_size(part) for part in
                              (change["Keys"], change.get("NewImage") or {}, change.get("OldImage") or {}))
    body: dict[str, Any] = {"eventID": new_request_id().replace("-", ""), "eventName": "INSERT" if old is None else
                            "REMOVE" if new is None else "MODIFY", "eventVersion": "1.1",
                            "eventSource": "aws:dynamodb", "awsRegion": region, "dynamodb": change}
    if identity is not None:
        body["userIdentity"] = identity
    rows = tx.execute("INSERT INTO ddb_stream (tid, stream, part, created, record) VALUES (?, ?, ?, ?, ?)"
                      " RETURNING seq", (table.tid, f"{table.name}/{table.stream_label}", key.h % DDB_PARTITIONS,
                                         now, codec.dumps(body)))
    tx.execute("INSERT INTO ddb_outbox (seq) VALUES (?)", (rows[0][0],))


def lease(tx: Tx, name: str, holder: str, now: float, hold_s: float) -> bool:
    """Take or keep the lease ``name`` (one actor at a time across replicas) until ``now + hold_s``."""
    rows = tx.execute("SELECT holder, until FROM ddb_leases WHERE name = ?", (name,))
    if rows and rows[0][0] != holder and rows[0][1] > now:
        return False
    if rows:
        tx.execute("UPDATE ddb_leases SET holder = ?, until = ? WHERE name = ?", (holder, now + hold_s, name))
    else:
        tx.execute("INSERT INTO ddb_leases (name, holder, until) VALUES (?, ?, ?)", (name, holder, now + hold_s))
    return True


def sequence_number(seq: int) -> str:
    return f"{seq:021d}"


def drop_rows(tx: Tx, tid: int) -> None:
    """A deleted table's items and index rows (its stream records age out with the retention)."""
    tx.execute("DELETE FROM ddb_items WHERE tid = ?", (tid,))
    tx.execute("DELETE FROM ddb_index WHERE tid = ?", (tid,))


def collection_size(tx: Tx, table: Table, key: Key) -> int:
    """The bytes of one partition's items (an item collection, which local secondary indexes bound)."""
    rows = tx.execute("SELECT coalesce(sum(size), 0) FROM ddb_items WHERE tid = ? AND h = ? AND pk = ?",
                      (table.tid, key.h, key.pk))
    return int(rows[0][0])


def counts(tx: Tx, tid: int) -> tuple[int, int]:
    rows = tx.execute("SELECT count(*), coalesce(sum(size), 0) FROM ddb_items WHERE tid = ?", (tid,))
    return int(rows[0][0]), int(rows[0][1])
