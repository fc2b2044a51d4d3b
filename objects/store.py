"""The S3 engine: blobs in JetStream, metadata in SQL, consistent across crashes.

Design
------
* A **blob** is a run of bytes published as messages of at most :data:`CHUNK` bytes on subject
  ``kambda.s3.blob.<blob id>`` of stream ``KAMBDA_S3``; its row in ``s3_blobs`` holds its state (``pending`` while
  being written, ``live`` once an object or a part points to it, ``garbage`` once nothing does), its size and the
  packed sequence numbers of its chunks, so a byte range starts reading at the right chunk
  (:func:`kambda.bus.chunks.read` with ``first_seq``). Chunks are published pipelined: a window of
  :data:`PUBLISH_WINDOW` publishes in flight on one connection (so they stay in order), their acks collected on
  one inbox. Objects of at most :data:`INLINE_MAX` bytes keep their bytes in their metadata row instead: one SQL
  write, no stream round trip.
* An **object version** is a row in ``s3_objects`` (bucket, key, a per-bucket increasing ``seq``, version id,
  latest flag, delete marker, size, ETag, checksums, content headers, user metadata, tags) with its bytes either
  inline or as segments (``s3_segments``: blob id, size, in order, owned by ``o<uid>`` for a version or
  ``p<upload id>.<part number>`` for a part; one for a PUT, one per part for a completed multipart upload,
  shared by copies).
* **Write order**: blob row ``pending`` -> chunks published and acknowledged -> one transaction makes the blob
  ``live`` and inserts the version and its segments (and, through ``on_commit``, the notification outbox rows).
  A crash before the transaction leaves a pending blob that :meth:`Store.reclaim` purges after
  ``pending_grace_s``; a listed object therefore always has its bytes. Deleting a version deletes its rows in one
  transaction and marks the blobs no segment points to any more ``garbage``, purged by :meth:`reclaim` (which
  :meth:`Store.start` runs at once and then periodically).
* Keys are stored as their UTF-8 bytes (BLOB / BYTEA compare bytewise: S3's order). A listing skips each
  rolled-up common prefix with one index seek (``key >= successor(prefix)``), so a page costs O(page) seeks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import hashlib
import logging
import re
import secrets
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from awscrt import checksums as awscrt_checksums
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from kambda.aws.chunked import checksum as kernel_checksum
from kambda.bus import S3_BLOB_PREFIX, S3_STREAM, chunks
from kambda.sql import Database, Tx
from objects import errors

log = logging.getLogger(__name__)

#: Bytes per JetStream message of a blob.
CHUNK = 256 * 1024
#: Objects up to this size keep their bytes in their metadata row.
INLINE_MAX = 64 * 1024
STREAM = S3_STREAM
SUBJECT_PREFIX = S3_BLOB_PREFIX
MIN_PART = 5 * 1024 * 1024
MAX_PARTS = 10_000
MAX_KEY = 1024
#: Chunk publishes awaiting their ack at once (memory: PUBLISH_WINDOW * CHUNK per upload).
PUBLISH_WINDOW = 32
PUBLISH_ACK_TIMEOUT_S = 30.0
#: Messages per pull when reading a blob: 4 MiB held per read at most (8 to 64 read at the same rate here).
READ_BATCH = 16
RECLAIM_INTERVAL_S = 300.0
ALGORITHMS = ("CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME")
_DIGEST_SIZES = {"CRC32": 4, "CRC32C": 4, "SHA1": 20, "SHA256": 32, "CRC64NVME": 8}
Clock = Callable[[], float]


@dataclass(frozen=True)
class Bucket:
    name: str
    created: float
    region: str
    #: "" (never enabled), "Enabled" or "Suspended".
    versioning: str = ""


#: Where a version's bytes are: (blob id, size, packed chunk sequence numbers) per segment.
Segment = tuple[str, int, bytes]


@dataclass(frozen=True)
class ObjectMeta:
    bucket: str
    key: str
    version_id: str  # "null" for an unversioned write
    size: int
    etag: str  # quoted, as S3 sends it: '"<md5 hex>"' or '"<md5 of md5s>-N"'
    last_modified: float
    is_latest: bool = True
    delete_marker: bool = False
    #: Content-Type, Content-Encoding, Content-Disposition, Content-Language, Cache-Control, Expires,
    #: WebsiteRedirectLocation, StorageClass: as the PUT gave them (HTTP header names as keys).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: x-amz-meta-* without the prefix, keys lower case.
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: {"CRC32": base64, ...} for the algorithms the writer asked for.
    checksums: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Part count of a multipart object (0 for a single PUT).
    parts: int = 0
    #: 16 hex digits, increasing per write to a bucket: S3 event records' ``sequencer``.
    sequencer: str = ""
    #: The row's own id (a "null" version id names different rows over time; this does not).
    uid: str = field(default="", compare=False, repr=False)
    #: The bytes (inline) or segments, when the read that made this meta fetched them; else None.
    body: bytes | tuple[Segment, ...] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Written:
    """What a write answers (PutObject, CopyObject, CompleteMultipartUpload, a delete making a marker)."""

    meta: ObjectMeta


@dataclass(frozen=True)
class Listing:
    objects: list[ObjectMeta]
    common_prefixes: list[str]
    truncated: bool
    #: The last key returned or the last common prefix (S3 v1 NextMarker; v2's continuation token encodes it).
    next_marker: str | None = None
    #: ListObjectVersions: the version-id marker to continue from.
    next_version_marker: str | None = None


@dataclass(frozen=True)
class Upload:
    upload_id: str
    bucket: str
    key: str
    initiated: float
    headers: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    checksum_algorithm: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    #: "COMPOSITE" (a checksum of the parts' checksums, "-N") or "FULL_OBJECT" (the whole object's CRC,
    #: combined from the parts'); None when no algorithm was asked.
    checksum_type: str | None = None


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str
    last_modified: float
    checksums: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Conditions:
    """HTTP preconditions (RFC 7232 as S3 applies them); ``None`` fields are absent headers."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: float | None = None
    if_unmodified_since: float | None = None


@dataclass(frozen=True)
class Change:
    """One committed change, for the notification outbox (``on_commit`` runs inside the change's transaction)."""

    #: The S3 event name without ``s3:``: "ObjectCreated:Put", "ObjectCreated:Post", "ObjectCreated:Copy",
    #: "ObjectCreated:CompleteMultipartUpload", "ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated",
    #: "LifecycleExpiration:Delete", "LifecycleExpiration:DeleteMarkerCreated", "ObjectTagging:Put",
    #: "ObjectTagging:Delete".
    event: str
    meta: ObjectMeta
    #: Who asked and from where: the API layer's ``Actor``.
    actor: Actor | None
    time: float


@dataclass(frozen=True)
class Actor:
    principal: str  # the access key or "anonymous"
    source_ip: str
    request_id: str


OnCommit = Callable[[Tx, Change], None]


# -- checksums ----------------------------------------------------------------------------------------------------

def crc64nvme(data: bytes, crc: int = 0) -> int:
    """CRC-64/NVME (S3's CRC64NVME), running from ``crc``: awscrt's, in C."""
    return int(awscrt_checksums.crc64nvme(data, crc))


class _Crc64:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = crc64nvme(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(8, "big")


def checksum(algorithm: str) -> Any:
    """A running checksum (``update``, ``digest``) for one of :data:`ALGORITHMS` (upper case, as S3 names them)."""
    if algorithm == "CRC64NVME":
        return _Crc64()
    if algorithm not in ALGORITHMS:
        raise errors.InvalidRequest(f"The checksum algorithm '{algorithm}' is not supported.")
    return kernel_checksum(algorithm.lower())


def _check_expected(algorithm: str, value: str) -> bytes:
    """The raw digest a client's base64 ``x-amz-checksum-*`` value names; InvalidRequest when malformed."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if algorithm not in _DIGEST_SIZES:
        raise errors.InvalidRequest(f"The checksum algorithm '{algorithm}' is not supported.")
    if len(raw) != _DIGEST_SIZES[algorithm]:
        raise errors.InvalidRequest(f"Value for x-amz-checksum-{algorithm.lower()} header is invalid.")
    return raw


def _content_md5(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise errors.InvalidDigest("The Content-MD5 you specified was invalid.", Content_MD5=value)
    return raw


class _Hashes:
    """MD5 (the ETag) and the asked checksums of a body, updated as it streams, checked at its end."""

    def __init__(self, algorithms: Iterable[str], content_md5: str | None,
                 expected: Mapping[str, str] | None) -> None:
        self.expected_md5 = _content_md5(content_md5) if content_md5 is not None else None
        self.expected = {name.upper(): _check_expected(name.upper(), value) for name, value in (expected or {}).items()}
        names = sorted({a.upper() for a in algorithms} | set(self.expected))
        self.md5 = hashlib.md5()  # noqa: S324 - S3's ETag, not security
        self.sums = {name: checksum(name) for name in names}

    def update(self, data: bytes) -> None:
        self.md5.update(data)
        for s in self.sums.values():
            s.update(data)

    def finish(self) -> tuple[bytes, dict[str, str]]:
        md5 = self.md5.digest()
        if self.expected_md5 is not None and md5 != self.expected_md5:
            raise errors.BadDigest("The Content-MD5 you specified did not match what we received.",
                                   ExpectedDigest=self.expected_md5.hex(), CalculatedDigest=md5.hex())
        digests = {name: s.digest() for name, s in self.sums.items()}
        for name, raw in self.expected.items():
            if digests[name] != raw:
                raise errors.BadDigest(f"The {name} you specified did not match the calculated checksum.")
        return md5, {name: base64.b64encode(d).decode() for name, d in digests.items()}


# -- names --------------------------------------------------------------------------------------------------------

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


def validate_bucket_name(name: str) -> None:
    """S3's bucket naming rules; InvalidBucketName otherwise."""
    if (not _BUCKET.fullmatch(name) or ".." in name or _IPV4.fullmatch(name)
            or name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3"))):
        raise errors.invalid_bucket_name(name)


def _key_bytes(key: str) -> bytes:
    try:
        raw = key.encode()
    except UnicodeEncodeError:
        raise errors.InvalidArgument("The key is not valid UTF-8.", ArgumentName="key") from None
    if len(raw) > MAX_KEY:
        raise errors.key_too_long(len(raw))
    return raw


def _successor(prefix: bytes) -> bytes | None:
    """The least byte string greater than every string starting with ``prefix`` (None: no such bound)."""
    raw = prefix.rstrip(b"\xff")
    if not raw:
        return None
    return raw[:-1] + bytes((raw[-1] + 1,))


def _new_version_id() -> str:
    return secrets.token_urlsafe(24)


def _new_id() -> str:
    return secrets.token_hex(16)


def _unquote(etag: str) -> str:
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def _etag_matches(header: str, etag: str) -> bool:
    want = _unquote(etag)
    return any(v.strip() == "*" or _unquote(v) == want for v in header.split(","))


def check_read_conditions(meta: ObjectMeta, conditions: Conditions | None) -> None:
    """GET/HEAD preconditions as S3 applies them: returns None to go on, raises PreconditionFailed (412) or
    :class:`objects.errors.NotModified` (304: answer with no body). If-Match holding overrides a failing
    If-Unmodified-Since; If-None-Match not matching overrides a failing If-Modified-Since. Dates compare at
    whole seconds (HTTP dates have no more)."""
    if conditions is None:
        return
    modified = int(meta.last_modified)
    if conditions.if_match is not None:
        if not _etag_matches(conditions.if_match, meta.etag):
            raise errors.precondition_failed("If-Match")
    elif conditions.if_unmodified_since is not None and modified > conditions.if_unmodified_since:
        raise errors.precondition_failed("If-Unmodified-Since")
    if conditions.if_none_match is not None:
        if _etag_matches(conditions.if_none_match, meta.etag):
            raise errors.NotModified("Not Modified")
    elif conditions.if_modified_since is not None and modified <= conditions.if_modified_since:
        raise errors.NotModified("Not Modified")


# -- schema -------------------------------------------------------------------------------------------------------

def _schema(dialect: str) -> list[str]:
    blob, real = ("BLOB", "REAL") if dialect == "sqlite" else ("BYTEA", "DOUBLE PRECISION")
    text = "TEXT" if dialect == "sqlite" else 'TEXT COLLATE "C"'
    return [
        f"CREATE TABLE s3_buckets (name {text} PRIMARY KEY, created {real} NOT NULL, region TEXT NOT NULL,"
        " versioning TEXT NOT NULL, seq BIGINT NOT NULL)",
        f"CREATE TABLE s3_configs (bucket {text} NOT NULL, kind TEXT NOT NULL, doc TEXT NOT NULL,"
        " PRIMARY KEY (bucket, kind))",
        f"CREATE TABLE s3_objects (bucket {text} NOT NULL, key {blob} NOT NULL, seq BIGINT NOT NULL,"
        " uid TEXT NOT NULL, version_id TEXT NOT NULL, latest INTEGER NOT NULL, marker INTEGER NOT NULL,"
        f" size BIGINT NOT NULL, etag TEXT NOT NULL, mtime {real} NOT NULL, headers TEXT NOT NULL,"
        " metadata TEXT NOT NULL, checksums TEXT NOT NULL, tags TEXT NOT NULL, parts INTEGER NOT NULL,"
        f" inline {blob}, PRIMARY KEY (bucket, key, seq))",
        "CREATE UNIQUE INDEX s3_objects_version ON s3_objects (bucket, key, version_id)",
        "CREATE UNIQUE INDEX s3_objects_uid ON s3_objects (uid)",
        "CREATE INDEX s3_objects_latest ON s3_objects (bucket, key) WHERE latest = 1 AND marker = 0",
        "CREATE INDEX s3_objects_newest ON s3_objects (bucket, key, seq DESC)",
        f"CREATE TABLE s3_blobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, size BIGINT NOT NULL,"
        f" seqs {blob} NOT NULL, created {real} NOT NULL)",
        "CREATE INDEX s3_blobs_state ON s3_blobs (state, created)",
        "CREATE TABLE s3_segments (owner TEXT NOT NULL, idx INTEGER NOT NULL, blob TEXT NOT NULL,"
        " size BIGINT NOT NULL, PRIMARY KEY (owner, idx))",
        "CREATE INDEX s3_segments_blob ON s3_segments (blob)",
        f"CREATE TABLE s3_uploads (upload_id TEXT PRIMARY KEY, bucket {text} NOT NULL, key {blob} NOT NULL,"
        f" initiated {real} NOT NULL, headers TEXT NOT NULL, metadata TEXT NOT NULL, checksum_algorithm TEXT,"
        " tags TEXT NOT NULL)",
        "CREATE INDEX s3_uploads_key ON s3_uploads (bucket, key, initiated, upload_id)",
        "CREATE TABLE s3_parts (upload_id TEXT NOT NULL, number INTEGER NOT NULL, size BIGINT NOT NULL,"
        f" etag TEXT NOT NULL, mtime {real} NOT NULL, checksums TEXT NOT NULL, PRIMARY KEY (upload_id, number))",
    ]


SCHEMA = {"sqlite": _schema("sqlite"), "postgresql": [*_schema("postgresql"), "CREATE SEQUENCE s3_seq"]}

_COLS = ("bucket, key, seq, uid, version_id, latest, marker, size, etag, mtime, headers, metadata, checksums, tags,"
         " parts")
_COLS_INLINE = _COLS + ", inline"


def _meta(row: Sequence[Any], body: bytes | tuple[Segment, ...] | None = None) -> ObjectMeta:
    return ObjectMeta(
        bucket=row[0], key=bytes(row[1]).decode(), version_id=row[4], size=row[7], etag=row[8],
        last_modified=row[9], is_latest=bool(row[5]), delete_marker=bool(row[6]), headers=orjson.loads(row[10]),
        metadata=orjson.loads(row[11]), checksums=orjson.loads(row[12]), tags=orjson.loads(row[13]),
        parts=row[14], sequencer=f"{row[2]:016X}", uid=row[3], body=body)


def _json(value: Mapping[str, str] | None) -> str:
    return orjson.dumps(dict(value or {})).decode()


def _segments(tx: Tx, owner: str) -> tuple[Segment, ...]:
    rows = tx.execute("SELECT s.blob, s.size, b.seqs FROM s3_segments s JOIN s3_blobs b ON b.id = s.blob"
                      " WHERE s.owner = ? ORDER BY s.idx", (owner,))
    return tuple((r[0], r[1], bytes(r[2])) for r in rows)


def _with_body(tx: Tx, row: Sequence[Any]) -> ObjectMeta:
    inline = row[15]
    if inline is not None:
        return _meta(row, bytes(inline))
    return _meta(row, _segments(tx, "o" + row[3]))


def _release(tx: Tx, owner: str) -> None:
    """Drop ``owner``'s segments; a blob no segment points to any more becomes garbage for :meth:`reclaim`."""
    rows = tx.execute("DELETE FROM s3_segments WHERE owner = ? RETURNING blob", (owner,))
    for blob in {r[0] for r in rows}:
        if not tx.execute("SELECT 1 FROM s3_segments WHERE blob = ? LIMIT 1", (blob,)):
            tx.execute("UPDATE s3_blobs SET state = 'garbage' WHERE id = ?", (blob,))


def _link(tx: Tx, owner: str, segments: Iterable[tuple[str, int]]) -> None:
    tx.executemany("INSERT INTO s3_segments (owner, idx, blob, size) VALUES (?, ?, ?, ?)",
                   [(owner, i, blob, size) for i, (blob, size) in enumerate(segments)])


def _bump(tx: Tx, bucket: str) -> tuple[int, str]:
    """The next sequence number of a write to ``bucket`` and the bucket's versioning state; NoSuchBucket.

    SQLite has one writer: a counter in the bucket's row. On PostgreSQL every write would update that one row and
    conflict with every other at SERIALIZABLE, so a sequence (shared by the buckets, increasing) numbers them."""
    if tx.dialect == "postgresql":
        rows = tx.execute("SELECT nextval('s3_seq'), versioning FROM s3_buckets WHERE name = ?", (bucket,))
    else:
        rows = tx.execute("UPDATE s3_buckets SET seq = seq + 1 WHERE name = ? RETURNING seq, versioning", (bucket,))
    if not rows:
        raise errors.no_such_bucket(bucket)
    return rows[0][0], rows[0][1]


def _latest(tx: Tx, bucket: str, key: bytes) -> tuple[Any, ...] | None:
    rows = tx.execute(f"SELECT {_COLS_INLINE} FROM s3_objects WHERE bucket = ? AND key = ? AND latest = 1",
                      (bucket, key))
    return rows[0] if rows else None


def _check_write_conditions(key: str, latest: Sequence[Any] | None, conditions: Conditions | None) -> None:
    if conditions is None:
        return
    live = latest is not None and not latest[6]
    if conditions.if_none_match is not None and conditions.if_none_match.strip() == "*" and live:
        raise errors.precondition_failed("If-None-Match")
    if conditions.if_match is not None:
        if not live or latest is None:
            raise errors.no_such_key(key)
        if not _etag_matches(conditions.if_match, latest[8]):
            raise errors.precondition_failed("If-Match")


def _part_sizes(tx: Tx, uid: str) -> tuple[int, ...]:
    rows = tx.execute("SELECT part_sizes FROM s3_objects WHERE uid = ?", (uid,))
    return tuple(orjson.loads(rows[0][0])) if rows and rows[0][0] else ()


def _drop_version(tx: Tx, row: Sequence[Any]) -> None:
    tx.execute("DELETE FROM s3_objects WHERE uid = ?", (row[3],))
    _release(tx, "o" + row[3])


def _promote(tx: Tx, bucket: str, key: bytes) -> None:
    """After the latest version went: the newest one left becomes the latest."""
    rows = tx.execute("SELECT seq FROM s3_objects WHERE bucket = ? AND key = ? ORDER BY seq DESC LIMIT 1",
                      (bucket, key))
    if rows:
        tx.execute("UPDATE s3_objects SET latest = 1 WHERE bucket = ? AND key = ? AND seq = ?",
                   (bucket, key, rows[0][0]))


@dataclass
class _NewVersion:
    """A version about to be inserted (its bytes already stored)."""

    size: int
    etag: str
    headers: Mapping[str, str]
    metadata: Mapping[str, str]
    checksums: Mapping[str, str]
    tags: Mapping[str, str]
    parts: int = 0
    marker: bool = False
    inline: bytes | None = None
    segments: tuple[tuple[str, int], ...] = ()
    #: The size of each part of a multipart object (GetObject's PartNumber).
    part_sizes: tuple[int, ...] = ()


def _insert_version(tx: Tx, bucket: str, key: bytes, seq: int, versioning: str, new: _NewVersion,
                    now: float, latest: Sequence[Any] | None) -> ObjectMeta:
    """The new latest version of ``key`` (``latest``: the current one, :func:`_latest`, read in this transaction):
    an unversioned or suspended write replaces the "null" version. A key with versions has exactly one latest, so
    a new key costs no more statements than its insert."""
    version_id = _new_version_id() if versioning == "Enabled" else "null"
    if latest is not None:
        if version_id == "null" and latest[4] == "null":
            _drop_version(tx, latest)
        else:
            tx.execute("UPDATE s3_objects SET latest = 0 WHERE uid = ?", (latest[3],))
            if version_id == "null":
                for row in tx.execute(f"SELECT {_COLS} FROM s3_objects WHERE bucket = ? AND key = ?"
                                      " AND version_id = 'null'", (bucket, key)):
                    _drop_version(tx, row)
    uid = _new_id()
    row = (bucket, key, seq, uid, version_id, 1, int(new.marker), new.size, new.etag, now, _json(new.headers),
           _json(new.metadata), _json(new.checksums), _json(new.tags), new.parts, new.inline)
    sizes = orjson.dumps(new.part_sizes).decode() if new.part_sizes else None
    tx.execute(f"INSERT INTO s3_objects ({_COLS_INLINE}, part_sizes)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, sizes))
    if new.segments:
        _link(tx, "o" + uid, new.segments)
    return _meta(row)


# -- blobs --------------------------------------------------------------------------------------------------------

def blob_subject(blob_id: str) -> str:
    return SUBJECT_PREFIX + blob_id


class _Publisher:
    """Publishes one blob's chunks in order on one connection with up to PUBLISH_WINDOW acks outstanding."""

    def __init__(self, js: JetStreamContext, blob_id: str) -> None:
        self.js = js
        self.nc = js._nc
        self.subject = blob_subject(blob_id)
        self.seqs: list[int] = []
        self.outstanding = 0
        self.sub: Any = None
        self.inbox = ""

    async def open(self) -> None:
        self.inbox = self.nc.new_inbox()
        self.sub = await self.nc.subscribe(self.inbox + ".*")

    async def publish(self, data: bytes) -> None:
        index = len(self.seqs)
        self.seqs.append(0)
        await self.nc.publish(self.subject, data, reply=f"{self.inbox}.{index}")
        self.outstanding += 1
        while self.outstanding >= PUBLISH_WINDOW:
            await self._ack()

    async def _ack(self) -> None:
        try:
            msg = await self.sub.next_msg(timeout=PUBLISH_ACK_TIMEOUT_S)
        except NatsTimeout:
            raise errors.ServiceUnavailable("The object store did not acknowledge a write in time.") from None
        self.outstanding -= 1
        if not msg.data:
            raise errors.ServiceUnavailable("The object store refused a write (no JetStream stream answered).")
        answer = orjson.loads(msg.data)
        if "error" in answer or "seq" not in answer:
            raise errors.ServiceUnavailable(f"The object store refused a write: {answer.get('error')}")
        self.seqs[int(msg.subject.rsplit(".", 1)[1])] = answer["seq"]

    async def finish(self) -> bytes:
        while self.outstanding:
            await self._ack()
        if any(b <= a for a, b in zip(self.seqs, self.seqs[1:], strict=False)):
            raise errors.InternalError("The object store stored a blob's chunks out of order.")
        return struct.pack(f">{len(self.seqs)}Q", *self.seqs)

    async def close(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()


async def _pieces(body: AsyncIterator[bytes] | bytes) -> AsyncIterator[bytes]:
    if isinstance(body, (bytes, bytearray, memoryview)):
        yield bytes(body)
        return
    async for piece in body:
        yield piece


#: Pieces at least this large are hashed on a thread (hashlib lets go of the GIL) while the loop publishes.
HASH_OFFLOAD = 256 * 1024
_hashers = ThreadPoolExecutor(4, thread_name_prefix="s3-hash")


async def _hash(previous: asyncio.Future[None] | None, hashes: _Hashes,
                piece: bytes) -> asyncio.Future[None] | None:
    """Hash ``piece`` after ``previous`` (in order): a large one on a thread, the future returned to await."""
    if previous is not None:
        await previous
    if len(piece) < HASH_OFFLOAD:
        hashes.update(piece)
        return None
    return asyncio.get_running_loop().run_in_executor(_hashers, hashes.update, piece)


@dataclass
class _Ingested:
    size: int
    md5: bytes
    checksums: dict[str, str]
    inline: bytes | None = None
    blob: str | None = None


def _mark_live(tx: Tx, blob: str) -> None:
    if not tx.execute("UPDATE s3_blobs SET state = 'live' WHERE id = ? AND state = 'pending' RETURNING id", (blob,)):
        raise errors.InternalError("The upload took longer than the store keeps unfinished writes; try again.")


class Store:
    def __init__(self, js: JetStreamContext, db: Database, *, region: str, clock: Clock = time.time,
                 on_commit: OnCommit | None = None, replicas: int = 1, pending_grace_s: float = 3600.0,
                 reclaim_interval_s: float = RECLAIM_INTERVAL_S) -> None:
        self.js = js
        self.db = db
        self.region = region
        self.clock = clock
        self.on_commit = on_commit
        self.replicas = replicas
        self.pending_grace_s = pending_grace_s
        self.reclaim_interval_s = reclaim_interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, background: bool = True) -> None:
        """Migrate the schema, make the stream, reclaim what a crash left (then every ``reclaim_interval_s``)."""
        await self.db.migrate("s3-1", SCHEMA)
        await self.db.migrate("s3-2", {d: ["ALTER TABLE s3_objects ADD COLUMN part_sizes TEXT"]
                                       for d in ("sqlite", "postgresql")})
        await self.db.migrate("s3-3", {d: ["ALTER TABLE s3_uploads ADD COLUMN checksum_type TEXT"]
                                       for d in ("sqlite", "postgresql")})
        # The latest version of a key in one probe, however many versions it has (head, every write).
        await self.db.migrate("s3-4", {d: ["CREATE UNIQUE INDEX s3_objects_current ON s3_objects (bucket, key)"
                                           " WHERE latest = 1"] for d in ("sqlite", "postgresql")})
        config = StreamConfig(name=STREAM, subjects=[SUBJECT_PREFIX + ">"], storage=StorageType.FILE,
                              num_replicas=self.replicas, allow_rollup_hdrs=True, deny_purge=False,
                              max_msg_size=-1)
        try:
            await self.js.stream_info(STREAM)
        except NotFoundError:
            await self.js.add_stream(config)
        await self.reclaim(sweep=True)
        if background:
            self._task = asyncio.create_task(self._reclaim_loop(), name="s3-reclaim")

    async def _reclaim_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reclaim_interval_s)
            try:
                await self.reclaim()
            except Exception:
                log.exception("s3: reclaim failed; trying again in %ss", self.reclaim_interval_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _notify(self, tx: Tx, event: str, meta: ObjectMeta, actor: Actor | None, now: float) -> None:
        if self.on_commit is not None:
            self.on_commit(tx, Change(event=event, meta=meta, actor=actor, time=now))

    # -- buckets ---------------------------------------------------------------------------------------------------

    async def create_bucket(self, name: str, region: str) -> Bucket:
        """BucketAlreadyOwnedByYou if it exists (one account owns every bucket here)."""
        validate_bucket_name(name)
        now = self.clock()

        def work(tx: Tx) -> Bucket:
            if tx.execute("SELECT 1 FROM s3_buckets WHERE name = ?", (name,)):
                raise errors.BucketAlreadyOwnedByYou(
                    "Your previous request to create the named bucket succeeded and you already own it.",
                    BucketName=name)
            tx.execute("INSERT INTO s3_buckets (name, created, region, versioning, seq) VALUES (?, ?, ?, '', 0)",
                       (name, now, region))
            return Bucket(name, now, region)

        return await self.db.write(work)

    async def delete_bucket(self, name: str) -> None:
        """NoSuchBucket; BucketNotEmpty while any version, delete marker or multipart upload is left."""
        def work(tx: Tx) -> None:
            if not tx.execute("SELECT 1 FROM s3_buckets WHERE name = ?", (name,)):
                raise errors.no_such_bucket(name)
            if (tx.execute("SELECT 1 FROM s3_objects WHERE bucket = ? LIMIT 1", (name,))
                    or tx.execute("SELECT 1 FROM s3_uploads WHERE bucket = ? LIMIT 1", (name,))):
                raise errors.BucketNotEmpty("The bucket you tried to delete is not empty", BucketName=name)
            tx.execute("DELETE FROM s3_configs WHERE bucket = ?", (name,))
            tx.execute("DELETE FROM s3_buckets WHERE name = ?", (name,))

        await self.db.write(work)

    async def bucket(self, name: str) -> Bucket:
        """NoSuchBucket unless it exists."""
        rows = await self.db.read(lambda tx: tx.execute(
            "SELECT name, created, region, versioning FROM s3_buckets WHERE name = ?", (name,)))
        if not rows:
            raise errors.no_such_bucket(name)
        return Bucket(*rows[0])

    async def buckets(self) -> list[Bucket]:
        rows = await self.db.read(lambda tx: tx.execute(
            "SELECT name, created, region, versioning FROM s3_buckets ORDER BY name"))
        return [Bucket(*row) for row in rows]

    async def set_versioning(self, name: str, status: str) -> None:
        if status not in ("Enabled", "Suspended"):
            raise errors.MalformedXML("The XML you provided was not well-formed or did not validate against our "
                                      "published schema")

        def work(tx: Tx) -> None:
            if not tx.execute("UPDATE s3_buckets SET versioning = ? WHERE name = ? RETURNING name", (status, name)):
                raise errors.no_such_bucket(name)

        await self.db.write(work)

    async def get_config(self, name: str, kind: str) -> Any | None:
        """A bucket subresource document (``cors``, ``policy``, ``website``, ``lifecycle``, ``notification``,
        ``tagging``, ``encryption`` ...) as stored JSON, or None. NoSuchBucket."""
        def work(tx: Tx) -> list[tuple[Any, ...]] | None:
            if not tx.execute("SELECT 1 FROM s3_buckets WHERE name = ?", (name,)):
                return None
            return tx.execute("SELECT doc FROM s3_configs WHERE bucket = ? AND kind = ?", (name, kind))

        rows = await self.db.read(work)
        if rows is None:
            raise errors.no_such_bucket(name)
        return orjson.loads(rows[0][0]) if rows else None

    async def put_config(self, name: str, kind: str, doc: Any | None) -> None:
        """Store (or with None delete) a bucket subresource document. NoSuchBucket."""
        text = None if doc is None else orjson.dumps(doc).decode()

        def work(tx: Tx) -> None:
            if not tx.execute("SELECT 1 FROM s3_buckets WHERE name = ?", (name,)):
                raise errors.no_such_bucket(name)
            tx.execute("DELETE FROM s3_configs WHERE bucket = ? AND kind = ?", (name, kind))
            if text is not None:
                tx.execute("INSERT INTO s3_configs (bucket, kind, doc) VALUES (?, ?, ?)", (name, kind, text))

        await self.db.write(work)

    async def configs(self, kind: str) -> dict[str, Any]:
        """Every bucket's document of one kind (lifecycle rules for the expirer, notification configs)."""
        rows = await self.db.read(lambda tx: tx.execute("SELECT bucket, doc FROM s3_configs WHERE kind = ?", (kind,)))
        return {row[0]: orjson.loads(row[1]) for row in rows}

    # -- bytes -----------------------------------------------------------------------------------------------------

    async def _ingest(self, body: AsyncIterator[bytes] | bytes, hashes: _Hashes, max_size: int, *,
                      inline: bool = True) -> _Ingested:
        """Hash ``body``; keep it inline if small (and allowed), else store it in a new pending blob."""
        buffer = bytearray()
        size = 0
        publisher: _Publisher | None = None
        blob: str | None = None
        hashing: asyncio.Future[None] | None = None
        touched = self.clock()
        try:
            async for piece in _pieces(body):
                if not piece:
                    continue
                size += len(piece)
                if size > max_size:
                    raise errors.EntityTooLarge("Your proposed upload exceeds the maximum allowed size",
                                                MaxSizeAllowed=str(max_size))
                hashing = await _hash(hashing, hashes, piece)
                if publisher is None and (len(buffer) + len(piece) > INLINE_MAX or not inline):
                    blob = await self._new_blob()
                    publisher = _Publisher(self.js, blob)
                    await publisher.open()
                if publisher is None:
                    buffer += piece
                    continue
                view, at = memoryview(piece), 0
                if buffer:  # top up the chunk begun by earlier pieces
                    at = min(CHUNK - len(buffer), len(piece))
                    buffer += view[:at]
                    if len(buffer) < CHUNK:
                        continue
                    await publisher.publish(bytes(buffer))
                    buffer.clear()
                while len(piece) - at >= CHUNK:  # whole chunks straight from the piece: one copy each
                    await publisher.publish(piece[at:at + CHUNK])
                    at += CHUNK
                buffer += view[at:]
                if self.clock() - touched > self.pending_grace_s / 4:  # a long upload is not a stale one
                    touched = self.clock()
                    await self._touch(blob, touched)
            if hashing is not None:
                await hashing
            md5, sums = hashes.finish()
            if publisher is None and inline:
                return _Ingested(size, md5, sums, inline=bytes(buffer))
            if publisher is None:
                blob = await self._new_blob()
                publisher = _Publisher(self.js, blob)
                await publisher.open()
            if buffer:
                await publisher.publish(bytes(buffer))
            seqs = await publisher.finish()
            assert blob is not None
            await self.db.write(lambda tx: tx.execute("UPDATE s3_blobs SET size = ?, seqs = ? WHERE id = ?",
                                                      (size, seqs, blob)))
            return _Ingested(size, md5, sums, blob=blob)
        except BaseException:
            if blob is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._purge(blob))
            raise
        finally:
            if publisher is not None:
                await publisher.close()

    async def _new_blob(self) -> str:
        blob = _new_id()
        now = self.clock()
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO s3_blobs (id, state, size, seqs, created) VALUES (?, 'pending', 0, ?, ?)", (blob, b"", now)))
        return blob

    async def _touch(self, blob: str | None, now: float) -> None:
        await self.db.write(lambda tx: tx.execute("UPDATE s3_blobs SET created = ? WHERE id = ?", (now, blob)))

    async def _discard(self, blob: str) -> None:
        """Purge the blob of a commit that refused (an S3Error raised inside it: rolled back). Any other failure
        (a cancelled await, a lost connection) may still have committed: reclaim decides later, by the row."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self._purge(blob))

    async def _purge(self, blob: str) -> None:
        with contextlib.suppress(NotFoundError):
            await self.js.purge_stream(STREAM, subject=blob_subject(blob))
        await self.db.write(lambda tx: tx.execute("DELETE FROM s3_blobs WHERE id = ?", (blob,)))

    # -- objects ---------------------------------------------------------------------------------------------------

    async def put(self, bucket: str, key: str, body: AsyncIterator[bytes] | bytes, *,
                  headers: Mapping[str, str] | None = None, metadata: Mapping[str, str] | None = None,
                  tags: Mapping[str, str] | None = None, content_md5: str | None = None,
                  checksum_algorithms: tuple[str, ...] = (), expected_checksums: Mapping[str, str] | None = None,
                  conditions: Conditions | None = None, event: str = "ObjectCreated:Put",
                  actor: Actor | None = None, max_size: int = 5 * 1024 ** 3) -> Written:
        """Stream ``body`` to a new version. ``content_md5`` (base64, Content-MD5) and ``expected_checksums``
        ({"CRC32": base64, ...}) are verified before the commit (BadDigest / InvalidRequest / InvalidDigest with
        S3's messages); ``checksum_algorithms`` are computed and stored. ``conditions`` (If-Match /
        If-None-Match: *) are checked atomically in the commit: PreconditionFailed (412), NoSuchKey for If-Match
        on no object. EntityTooLarge beyond ``max_size``. Supported checksums: CRC32, CRC32C, SHA1, SHA256,
        CRC64NVME."""
        raw_key = _key_bytes(key)
        hashes = _Hashes(checksum_algorithms, content_md5, expected_checksums)
        if not (isinstance(body, bytes) and len(body) <= INLINE_MAX):
            await self.bucket(bucket)  # before streaming a body to a bucket that is not there
        if conditions is not None and (conditions.if_match is not None or conditions.if_none_match is not None):
            # Fail before reading the body when it would fail anyway; the commit checks again, atomically.
            latest = await self.db.read(lambda tx: _latest(tx, bucket, raw_key))
            _check_write_conditions(key, latest, conditions)
        got = await self._ingest(body, hashes, max_size)
        new = _NewVersion(size=got.size, etag=f'"{got.md5.hex()}"', headers=dict(headers or {}),
                          metadata=dict(metadata or {}), checksums=got.checksums, tags=dict(tags or {}),
                          inline=got.inline, segments=((got.blob, got.size),) if got.blob and got.size else ())

        def commit(tx: Tx) -> ObjectMeta:
            seq, versioning = _bump(tx, bucket)
            latest = _latest(tx, bucket, raw_key)
            _check_write_conditions(key, latest, conditions)
            if got.blob is not None:
                _mark_live(tx, got.blob)
            now = self.clock()
            meta = _insert_version(tx, bucket, raw_key, seq, versioning, new, now, latest)
            self._notify(tx, event, meta, actor, now)
            return meta

        try:
            meta = await self.db.write(commit)
        except errors.S3Error:
            if got.blob is not None:
                await self._discard(got.blob)
            raise
        return Written(meta)

    async def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectMeta:
        """NoSuchBucket / NoSuchKey / NoSuchVersion; a delete marker as latest raises NoSuchKey with
        ``delete_marker`` (and ``version_id``) set on the error (x-amz-delete-marker: true), a delete marker asked
        by version id raises MethodNotAllowed (405) as S3 does. The meta carries its bytes' location for
        :meth:`read`."""
        raw_key = _key_bytes(key)

        def work(tx: Tx) -> ObjectMeta | str:
            if version_id is None:
                rows = tx.execute(f"SELECT {_COLS_INLINE} FROM s3_objects WHERE bucket = ? AND key = ?"
                                  " AND latest = 1", (bucket, raw_key))
            else:
                rows = tx.execute(f"SELECT {_COLS_INLINE} FROM s3_objects WHERE bucket = ? AND key = ?"
                                  " AND version_id = ?", (bucket, raw_key, version_id))
            if not rows:
                return "bucket" if not tx.execute("SELECT 1 FROM s3_buckets WHERE name = ?", (bucket,)) else "key"
            if rows[0][6]:
                return _meta(rows[0])
            return _with_body(tx, rows[0])

        found = await self.db.read(work)
        if found == "bucket":
            raise errors.no_such_bucket(bucket)
        if isinstance(found, str):
            if version_id is None:
                raise errors.no_such_key(key)
            raise errors.no_such_version(key, version_id)
        if found.delete_marker:
            err: errors.S3Error
            if version_id is None:
                err = errors.no_such_key(key)
            else:
                err = errors.MethodNotAllowed("The specified method is not allowed against this resource.",
                                              Method="GET", ResourceType="DeleteMarker")
            err.delete_marker = True  # type: ignore[attr-defined]
            err.version_id = found.version_id  # type: ignore[attr-defined]
            err.last_modified = found.last_modified  # type: ignore[attr-defined]
            raise err
        return found

    async def part_span(self, meta: ObjectMeta, number: int) -> tuple[int, int]:
        """GetObject's PartNumber: the bytes (start, end exclusive) of part ``number`` of that version (a single
        PUT is part 1 of 1); InvalidPartNumber (416) beyond its part count."""
        count = max(meta.parts, 1)
        if not 1 <= number <= count:
            raise errors.InvalidPartNumber("The requested partnumber is not satisfiable",
                                           PartNumberRequested=str(number), ActualPartCount=str(count))
        if meta.parts <= 1:
            return 0, meta.size
        sizes = await self.db.read(lambda tx: _part_sizes(tx, meta.uid))
        if len(sizes) != meta.parts:
            raise errors.no_such_key(meta.key)
        start = sum(sizes[:number - 1])
        return start, start + sizes[number - 1]

    async def _body(self, meta: ObjectMeta) -> bytes | tuple[Segment, ...]:
        if meta.body is not None:
            return meta.body

        def work(tx: Tx) -> bytes | tuple[Segment, ...] | None:
            rows = tx.execute("SELECT inline FROM s3_objects WHERE uid = ?", (meta.uid,))
            if not rows:
                return None
            if rows[0][0] is not None:
                return bytes(rows[0][0])
            return _segments(tx, "o" + meta.uid)

        body = await self.db.read(work)
        if body is None:
            raise errors.no_such_key(meta.key)
        return body

    async def read(self, meta: ObjectMeta, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Bytes ``start`` to ``end`` (exclusive; None: to the end) of that version, streamed chunk by chunk."""
        end = meta.size if end is None else min(end, meta.size)
        if start >= end:
            return
        body = await self._body(meta)
        if isinstance(body, bytes):
            yield body[start:end]
            return
        offset = 0
        for blob, size, seqs in body:
            if offset + size <= start:
                offset += size
                continue
            if offset >= end:
                break
            lo, hi = max(start - offset, 0), min(end - offset, size)
            async with contextlib.aclosing(self._read_blob(meta.key, blob, seqs, lo, hi)) as pieces:
                async for data in pieces:
                    yield data
            offset += size

    async def _read_blob(self, key: str, blob: str, seqs: bytes, lo: int,
                         hi: int) -> AsyncGenerator[bytes, None]:
        index = lo // CHUNK
        first_seq = struct.unpack_from(">Q", seqs, index * 8)[0]
        position = index * CHUNK
        reader = chunks.read(self.js, STREAM, blob_subject(blob), first_seq=first_seq, batch=READ_BATCH)
        async with contextlib.aclosing(reader):
            async for data in reader:
                begin, stop = max(lo - position, 0), min(hi - position, len(data))
                position += len(data)
                if begin > 0 or stop < len(data):
                    yield data[begin:stop]
                else:
                    yield data
                if position >= hi:
                    return
        raise errors.InternalError(f"The bytes of {key} are gone (the version was deleted while being read).")

    async def delete(self, bucket: str, key: str, version_id: str | None = None, *,
                     actor: Actor | None = None, event_prefix: str = "ObjectRemoved") -> tuple[ObjectMeta | None, bool]:
        """S3's DeleteObject: without a version id on a versioned bucket a delete marker is made (returned, True);
        with one that version goes (returned, whether it was a marker); deleting nothing is not an error."""
        raw_key = _key_bytes(key)

        def work(tx: Tx) -> tuple[ObjectMeta | None, bool]:
            seq, versioning = _bump(tx, bucket)
            now = self.clock()
            if version_id is None and versioning in ("Enabled", "Suspended"):
                marker = _NewVersion(size=0, etag="", headers={}, metadata={}, checksums={}, tags={}, marker=True)
                meta = _insert_version(tx, bucket, raw_key, seq, versioning, marker, now,
                                       _latest(tx, bucket, raw_key))
                self._notify(tx, f"{event_prefix}:DeleteMarkerCreated", meta, actor, now)
                return meta, True
            rows = tx.execute(f"SELECT {_COLS} FROM s3_objects WHERE bucket = ? AND key = ? AND version_id = ?",
                              (bucket, raw_key, "null" if version_id is None else version_id))
            if not rows:
                return None, False
            row = rows[0]
            _drop_version(tx, row)
            if row[5]:
                _promote(tx, bucket, raw_key)
            meta = replace(_meta(row), sequencer=f"{seq:016X}")
            self._notify(tx, f"{event_prefix}:Delete", meta, actor, now)
            return meta, meta.delete_marker

        return await self.db.write(work)

    async def list(self, bucket: str, *, prefix: str = "", delimiter: str = "", start_after: str = "",
                   max_keys: int = 1000) -> Listing:
        """Latest, non-marker versions in UTF-8 byte order of key after ``start_after``; keys sharing the part
        of the key after ``prefix`` up to the first ``delimiter`` are rolled into one common prefix, each counting
        once against ``max_keys``. O(page): a rolled-up prefix is skipped with one index seek."""
        return await self.db.read(lambda tx: _Lister(tx, bucket, prefix, delimiter, max_keys, False)
                                  .run(start_after.encode(), ""))

    async def list_versions(self, bucket: str, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
                            version_id_marker: str = "", max_keys: int = 1000) -> Listing:
        """Every version and delete marker, by key then newest first."""
        return await self.db.read(lambda tx: _Lister(tx, bucket, prefix, delimiter, max_keys, True)
                                  .run(key_marker.encode(), version_id_marker))

    async def set_tags(self, bucket: str, key: str, version_id: str | None, tags: Mapping[str, str] | None,
                       actor: Actor | None = None) -> ObjectMeta:
        """Replace (None: delete) a version's tag set: ObjectTagging:Put / ObjectTagging:Delete."""
        raw_key = _key_bytes(key)
        text = _json(tags)

        def work(tx: Tx) -> ObjectMeta:
            seq, _ = _bump(tx, bucket)
            if version_id is None:
                row = _latest(tx, bucket, raw_key)
            else:
                rows = tx.execute(f"SELECT {_COLS_INLINE} FROM s3_objects WHERE bucket = ? AND key = ?"
                                  " AND version_id = ?", (bucket, raw_key, version_id))
                row = rows[0] if rows else None
            if row is None or (row[6] and version_id is None):
                raise errors.no_such_key(key) if version_id is None else errors.no_such_version(key, version_id)
            if row[6]:
                raise errors.MethodNotAllowed("The specified method is not allowed against this resource.",
                                              Method="PUT", ResourceType="DeleteMarker")
            tx.execute("UPDATE s3_objects SET tags = ? WHERE uid = ?", (text, row[3]))
            now = self.clock()
            meta = replace(_meta(row), tags=dict(tags or {}), sequencer=f"{seq:016X}")
            self._notify(tx, "ObjectTagging:Put" if tags is not None else "ObjectTagging:Delete", meta, actor, now)
            return meta

        return await self.db.write(work)

    async def copy(self, source: ObjectMeta, bucket: str, key: str, *, headers: Mapping[str, str] | None = None,
                   metadata: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None,
                   conditions: Conditions | None = None, actor: Actor | None = None) -> Written:
        """A new version of ``bucket/key`` sharing ``source``'s bytes (no byte is copied); ``headers`` and
        ``metadata`` None keep the source's (MetadataDirective COPY), ``tags`` None the source's tags."""
        raw_key = _key_bytes(key)

        def commit(tx: Tx) -> ObjectMeta:
            seq, versioning = _bump(tx, bucket)
            rows = tx.execute(f"SELECT {_COLS_INLINE} FROM s3_objects WHERE uid = ?", (source.uid,))
            if not rows or rows[0][6]:
                raise errors.no_such_key(source.key)
            src = rows[0]
            latest = _latest(tx, bucket, raw_key)
            _check_write_conditions(key, latest, conditions)
            segments = tx.execute("SELECT blob, size FROM s3_segments WHERE owner = ? ORDER BY idx", ("o" + src[3],))
            new = _NewVersion(
                size=src[7], etag=src[8], parts=src[14], checksums=orjson.loads(src[12]),
                headers=orjson.loads(src[10]) if headers is None else dict(headers),
                metadata=orjson.loads(src[11]) if metadata is None else dict(metadata),
                tags=orjson.loads(src[13]) if tags is None else dict(tags),
                inline=None if src[15] is None else bytes(src[15]),
                part_sizes=_part_sizes(tx, src[3]),
                segments=tuple((r[0], r[1]) for r in segments))
            now = self.clock()
            meta = _insert_version(tx, bucket, raw_key, seq, versioning, new, now, latest)
            self._notify(tx, "ObjectCreated:Copy", meta, actor, now)
            return meta

        return Written(await self.db.write(commit))

    # -- multipart -------------------------------------------------------------------------------------------------

    async def create_upload(self, bucket: str, key: str, *, headers: Mapping[str, str] | None = None,
                            metadata: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None,
                            checksum_algorithm: str | None = None, checksum_type: str | None = None) -> Upload:
        """``checksum_type`` (x-amz-checksum-type): COMPOSITE (the default, not for CRC64NVME) or FULL_OBJECT
        (CRC32, CRC32C, CRC64NVME; CRC64NVME's default); InvalidRequest otherwise."""
        raw_key = _key_bytes(key)
        if checksum_algorithm is not None:
            checksum_algorithm = checksum_algorithm.upper()
            checksum(checksum_algorithm)
            checksum_type = _checksum_type(checksum_algorithm, checksum_type)
        elif checksum_type is not None:
            raise errors.InvalidRequest("The x-amz-checksum-type header can only be used with the "
                                        "x-amz-checksum-algorithm header.")
        upload = Upload(upload_id=secrets.token_urlsafe(32), bucket=bucket, key=key, initiated=self.clock(),
                        headers=dict(headers or {}), metadata=dict(metadata or {}),
                        checksum_algorithm=checksum_algorithm, tags=dict(tags or {}), checksum_type=checksum_type)

        def work(tx: Tx) -> None:
            if not tx.execute("SELECT 1 FROM s3_buckets WHERE name = ?", (bucket,)):
                raise errors.no_such_bucket(bucket)
            tx.execute("INSERT INTO s3_uploads (upload_id, bucket, key, initiated, headers, metadata,"
                       " checksum_algorithm, tags, checksum_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (upload.upload_id, bucket, raw_key, upload.initiated, _json(upload.headers),
                        _json(upload.metadata), checksum_algorithm, _json(upload.tags), checksum_type))

        await self.db.write(work)
        return upload

    async def upload(self, bucket: str, key: str, upload_id: str) -> Upload:
        """NoSuchUpload unless that upload is in progress for that key."""
        raw_key = _key_bytes(key)
        rows = await self.db.read(lambda tx: tx.execute(
            "SELECT upload_id, bucket, key, initiated, headers, metadata, checksum_algorithm, tags, checksum_type"
            " FROM s3_uploads WHERE upload_id = ? AND bucket = ? AND key = ?", (upload_id, bucket, raw_key)))
        if not rows:
            raise errors.no_such_upload(upload_id)
        return _upload(rows[0])

    async def put_part(self, upload: Upload, number: int, body: AsyncIterator[bytes] | bytes, *,
                       content_md5: str | None = None, expected_checksums: Mapping[str, str] | None = None,
                       max_size: int = 5 * 1024 ** 3) -> Part:
        """Part numbers 1-10,000 (InvalidArgument otherwise); a part uploaded again replaces the earlier one."""
        _check_part_number(number)
        algorithms = (upload.checksum_algorithm,) if upload.checksum_algorithm else ()
        hashes = _Hashes(algorithms, content_md5, expected_checksums)
        await self.upload(upload.bucket, upload.key, upload.upload_id)
        got = await self._ingest(body, hashes, max_size, inline=False)
        assert got.blob is not None
        blob = got.blob
        part = Part(number=number, size=got.size, etag=f'"{got.md5.hex()}"', last_modified=self.clock(),
                    checksums=got.checksums)

        def commit(tx: Tx) -> None:
            _mark_live(tx, blob)
            self._save_part(tx, upload, part, ((blob, got.size),) if got.size else ())

        try:
            await self.db.write(commit)
        except errors.S3Error:
            await self._discard(blob)
            raise
        if not got.size:
            await self._purge(blob)
        return part

    @staticmethod
    def _save_part(tx: Tx, upload: Upload, part: Part, segments: Iterable[tuple[str, int]]) -> None:
        if not tx.execute("SELECT 1 FROM s3_uploads WHERE upload_id = ?", (upload.upload_id,)):
            raise errors.no_such_upload(upload.upload_id)
        owner = f"p{upload.upload_id}.{part.number}"
        _release(tx, owner)
        tx.execute("DELETE FROM s3_parts WHERE upload_id = ? AND number = ?", (upload.upload_id, part.number))
        tx.execute("INSERT INTO s3_parts (upload_id, number, size, etag, mtime, checksums) VALUES (?, ?, ?, ?, ?, ?)",
                   (upload.upload_id, part.number, part.size, part.etag, part.last_modified, _json(part.checksums)))
        _link(tx, owner, segments)

    async def copy_part(self, upload: Upload, number: int, source: ObjectMeta, start: int = 0,
                        end: int | None = None) -> Part:
        """UploadPartCopy: a whole source shares its bytes; a range is copied into a new blob. The ETag of a
        shared part is the source's single-part ETag, or for a multipart source the MD5 of its ETag (S3's copy
        ETags are opaque; CompleteMultipartUpload checks it as any)."""
        _check_part_number(number)
        end = source.size if end is None else min(end, source.size)
        if start == 0 and end == source.size:
            await self.upload(upload.bucket, upload.key, upload.upload_id)
            etag = source.etag
            if "-" in etag:
                etag = f'"{hashlib.md5(etag.encode()).hexdigest()}"'  # noqa: S324 - an ETag
            part = Part(number=number, size=source.size, etag=etag, last_modified=self.clock(),
                        checksums={})

            def commit(tx: Tx) -> None:
                rows = tx.execute("SELECT inline FROM s3_objects WHERE uid = ?", (source.uid,))
                if not rows:
                    raise errors.no_such_key(source.key)
                if rows[0][0] is not None:
                    raise _Inline(bytes(rows[0][0]))
                segments = tx.execute("SELECT blob, size FROM s3_segments WHERE owner = ? ORDER BY idx",
                                      ("o" + source.uid,))
                self._save_part(tx, upload, part, [(r[0], r[1]) for r in segments])

            try:
                await self.db.write(commit)
                return part
            except _Inline as small:
                return await self.put_part(upload, number, small.data)
        return await self.put_part(upload, number, self.read(source, start, end))

    async def parts(self, upload: Upload, *, marker: int = 0,
                    max_parts: int = 1000) -> tuple[builtins.list[Part], bool]:
        await self.upload(upload.bucket, upload.key, upload.upload_id)
        rows = await self.db.read(lambda tx: tx.execute(
            "SELECT number, size, etag, mtime, checksums FROM s3_parts WHERE upload_id = ? AND number > ?"
            " ORDER BY number LIMIT ?", (upload.upload_id, marker, max_parts + 1)))
        parts = [Part(r[0], r[1], r[2], r[3], orjson.loads(r[4])) for r in rows[:max_parts]]
        return parts, len(rows) > max_parts

    async def uploads(self, bucket: str, *, prefix: str = "", key_marker: str = "", upload_id_marker: str = "",
                      max_uploads: int = 1000) -> tuple[builtins.list[Upload], bool]:
        """Uploads in progress by key (UTF-8 bytes) then initiation; after ``key_marker`` (and, with
        ``upload_id_marker``, after that upload of ``key_marker``)."""
        await self.bucket(bucket)
        raw_prefix, raw_marker = prefix.encode(), key_marker.encode()
        cols = "upload_id, bucket, key, initiated, headers, metadata, checksum_algorithm, tags, checksum_type"

        def work(tx: Tx) -> builtins.list[tuple[Any, ...]]:
            found: builtins.list[tuple[Any, ...]] = []
            if key_marker and upload_id_marker:
                rows = tx.execute("SELECT initiated FROM s3_uploads WHERE upload_id = ?", (upload_id_marker,))
                if rows:
                    found += tx.execute(
                        f"SELECT {cols} FROM s3_uploads WHERE bucket = ? AND key = ? AND (initiated > ? OR"
                        " (initiated = ? AND upload_id > ?)) ORDER BY initiated, upload_id LIMIT ?",
                        (bucket, raw_marker, rows[0][0], rows[0][0], upload_id_marker, max_uploads + 1))
            lo = max(raw_marker, raw_prefix)
            op = ">" if key_marker and lo == raw_marker else ">="
            found += tx.execute(f"SELECT {cols} FROM s3_uploads WHERE bucket = ? AND key {op} ?"
                                " ORDER BY key, initiated, upload_id LIMIT ?", (bucket, lo, max_uploads + 1))
            return [r for r in found if bytes(r[2]).startswith(raw_prefix)][:max_uploads + 1]

        rows = await self.db.read(work)
        return [_upload(r) for r in rows[:max_uploads]], len(rows) > max_uploads

    async def complete(self, upload: Upload, parts: builtins.list[tuple[int, str]], *,
                       conditions: Conditions | None = None, expected_checksums: Mapping[str, str] | None = None,
                       actor: Actor | None = None) -> Written:
        """``parts``: (number, etag) in ascending order (InvalidPartOrder), each uploaded with that ETag
        (InvalidPart), every part but the last at least :data:`MIN_PART` (EntityTooSmall). The ETag is the MD5 of
        the parts' binary MD5s, ``-N``. Parts not listed are dropped; the upload ends."""
        if not parts:
            raise errors.MalformedXML("The XML you provided was not well-formed or did not validate against our "
                                      "published schema")
        numbers = [n for n, _ in parts]
        if any(b <= a for a, b in zip(numbers, numbers[1:], strict=False)):
            raise errors.InvalidPartOrder("The list of parts was not in ascending order. Parts must be ordered by "
                                          "part number.", UploadId=upload.upload_id)
        raw_key = _key_bytes(upload.key)
        uid = upload.upload_id

        def commit(tx: Tx) -> ObjectMeta:
            if not tx.execute("SELECT 1 FROM s3_uploads WHERE upload_id = ?", (uid,)):
                raise errors.no_such_upload(uid)
            stored = {r[0]: r for r in tx.execute(
                "SELECT number, size, etag, checksums FROM s3_parts WHERE upload_id = ?", (uid,))}
            md5s = b""
            size = 0
            sums: builtins.list[bytes] = []
            for i, (number, etag) in enumerate(parts):
                row = stored.get(number)
                if row is None or _unquote(row[2]) != _unquote(etag):
                    raise errors.InvalidPart("One or more of the specified parts could not be found.  The part may "
                                             "not have been uploaded, or the specified entity tag may not match "
                                             "the part's entity tag.", UploadId=uid, PartNumber=str(number),
                                             ETag=etag)
                if i < len(parts) - 1 and row[1] < MIN_PART:
                    raise errors.EntityTooSmall("Your proposed upload is smaller than the minimum allowed size",
                                                ProposedSize=str(row[1]), MinSizeAllowed=str(MIN_PART),
                                                PartNumber=str(number), ETag=etag)
                md5s += bytes.fromhex(_unquote(row[2]))
                size += row[1]
                if upload.checksum_algorithm:
                    value = orjson.loads(row[3]).get(upload.checksum_algorithm)
                    if value:
                        sums.append(base64.b64decode(value))
            checksums: dict[str, str] = {}
            algorithm = upload.checksum_algorithm
            if algorithm and len(sums) == len(parts):
                sizes = [stored[n][1] for n, _ in parts]
                checksums[algorithm] = _multipart_checksum(algorithm, upload.checksum_type, sums, sizes)
                claimed = {k.upper(): v for k, v in (expected_checksums or {}).items()}.get(algorithm)
                if claimed is not None and claimed.split("-")[0] != checksums[algorithm].split("-")[0]:
                    raise errors.BadDigest(f"The {algorithm} you specified did not match the calculated checksum.")
            segments: builtins.list[tuple[str, int]] = []
            for number, _ in parts:
                owner = f"p{uid}.{number}"
                segments += [(r[0], r[1]) for r in tx.execute(
                    "SELECT blob, size FROM s3_segments WHERE owner = ? ORDER BY idx", (owner,))]
            seq, versioning = _bump(tx, upload.bucket)
            latest = _latest(tx, upload.bucket, raw_key)
            _check_write_conditions(upload.key, latest, conditions)
            etag = f'"{hashlib.md5(md5s).hexdigest()}-{len(parts)}"'  # noqa: S324 - S3's ETag
            new = _NewVersion(size=size, etag=etag, headers=upload.headers, metadata=upload.metadata,
                              checksums=checksums, tags=upload.tags, parts=len(parts), segments=tuple(segments),
                              part_sizes=tuple(stored[n][1] for n, _ in parts))
            now = self.clock()
            meta = _insert_version(tx, upload.bucket, raw_key, seq, versioning, new, now, latest)
            _end_upload(tx, uid)
            self._notify(tx, "ObjectCreated:CompleteMultipartUpload", meta, actor, now)
            return meta

        return Written(await self.db.write(commit))

    async def abort(self, upload: Upload) -> None:
        def work(tx: Tx) -> None:
            if not tx.execute("SELECT 1 FROM s3_uploads WHERE upload_id = ?", (upload.upload_id,)):
                raise errors.no_such_upload(upload.upload_id)
            _end_upload(tx, upload.upload_id)

        await self.db.write(work)

    # -- housekeeping ----------------------------------------------------------------------------------------------

    async def reclaim(self, *, sweep: bool = False) -> int:
        """Purge garbage blobs (those the last segment pointing to let go of, marked in that transaction) and
        pending blobs older than the grace; returns how many. ``sweep`` also looks for live blobs nothing points
        to (a safety net, O(blobs): :meth:`start` sweeps once, the periodic reclaim does not)."""
        cutoff = self.clock() - self.pending_grace_s

        def work(tx: Tx) -> builtins.list[str]:
            if sweep:
                tx.execute("UPDATE s3_blobs SET state = 'garbage' WHERE state = 'live' AND NOT EXISTS"
                           " (SELECT 1 FROM s3_segments s WHERE s.blob = s3_blobs.id)")
            rows = tx.execute("SELECT id FROM s3_blobs WHERE state = 'garbage' OR (state = 'pending' AND created < ?)",
                              (cutoff,))
            return [r[0] for r in rows]

        blobs = await self.db.write(work)
        for blob in blobs:
            await self._purge(blob)
        return len(blobs)

    async def expire(self) -> int:
        """Lifecycle expiration belongs to objects/lifecycle.py (which calls :meth:`delete` with
        ``event_prefix="LifecycleExpiration"`` and :meth:`abort`); the store itself expires nothing."""
        return 0


_COMBINE: dict[str, tuple[Callable[[int, int, int], int], int]] = {
    "CRC32": (awscrt_checksums.combine_crc32, 4), "CRC32C": (awscrt_checksums.combine_crc32c, 4),
    "CRC64NVME": (awscrt_checksums.combine_crc64nvme, 8)}


def _checksum_type(algorithm: str, kind: str | None) -> str:
    kind = (kind or ("FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE")).upper()
    if kind not in ("COMPOSITE", "FULL_OBJECT"):
        raise errors.InvalidRequest(f"Value for x-amz-checksum-type header is invalid: {kind}.")
    if (kind == "FULL_OBJECT" and algorithm not in _COMBINE) or (kind == "COMPOSITE" and algorithm == "CRC64NVME"):
        raise errors.InvalidRequest(f"The {kind} checksum type cannot be used with the {algorithm.lower()} "
                                    "checksum algorithm.")
    return kind


def _multipart_checksum(algorithm: str, kind: str | None, sums: Sequence[bytes], sizes: Sequence[int]) -> str:
    """A completed upload's checksum: FULL_OBJECT combines the parts' CRCs into the whole object's (what a single
    PUT of the same bytes would have); COMPOSITE is the checksum of the parts' binary checksums, ``-N``."""
    if (kind or _checksum_type(algorithm, None)) == "FULL_OBJECT":
        combine, width = _COMBINE[algorithm]
        crc = int.from_bytes(sums[0], "big")
        for raw, size in zip(sums[1:], sizes[1:], strict=True):
            crc = combine(crc, int.from_bytes(raw, "big"), size)
        return base64.b64encode(crc.to_bytes(width, "big")).decode()
    combined = checksum(algorithm)
    combined.update(b"".join(sums))
    return f"{base64.b64encode(combined.digest()).decode()}-{len(sums)}"


class _Inline(Exception):
    def __init__(self, data: bytes) -> None:
        super().__init__("inline")
        self.data = data


def _check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PARTS:
        raise errors.InvalidArgument("Part number must be an integer between 1 and 10000, inclusive",
                                     ArgumentName="partNumber", ArgumentValue=str(number))


def _upload(row: Sequence[Any]) -> Upload:
    return Upload(upload_id=row[0], bucket=row[1], key=bytes(row[2]).decode(), initiated=row[3],
                  headers=orjson.loads(row[4]), metadata=orjson.loads(row[5]), checksum_algorithm=row[6],
                  tags=orjson.loads(row[7]), checksum_type=row[8])


def _end_upload(tx: Tx, upload_id: str) -> None:
    """The upload's rows go; its parts' segments not re-owned by a completed object release their blobs."""
    for (number,) in tx.execute("SELECT number FROM s3_parts WHERE upload_id = ?", (upload_id,)):
        _release(tx, f"p{upload_id}.{number}")
    tx.execute("DELETE FROM s3_parts WHERE upload_id = ?", (upload_id,))
    tx.execute("DELETE FROM s3_uploads WHERE upload_id = ?", (upload_id,))


class _Lister:
    """One page of ListObjects(V2) or ListObjectVersions in one snapshot: a scan of the key index from a lower
    bound, each rolled-up common prefix skipped with one seek past it."""

    def __init__(self, tx: Tx, bucket: str, prefix: str, delimiter: str, max_keys: int, versions: bool) -> None:
        self.tx, self.bucket, self.versions = tx, bucket, versions
        self.prefix, self.delimiter = prefix.encode(), delimiter.encode()
        self.max_keys = max_keys
        self.hi = _successor(self.prefix) if self.prefix else None
        self.objects: list[ObjectMeta] = []
        self.prefixes: list[str] = []
        self.last_version: str | None = None
        self.last: bytes | None = None

    def _common(self, key: bytes) -> bytes | None:
        if not self.delimiter or not key.startswith(self.prefix):
            return None
        at = key.find(self.delimiter, len(self.prefix))
        return None if at < 0 else key[:at + len(self.delimiter)]

    def _rows(self, lo: bytes, inclusive: bool, limit: int) -> list[tuple[Any, ...]]:
        op = ">=" if inclusive else ">"
        where = "bucket = ? AND latest = 1 AND marker = 0" if not self.versions else "bucket = ?"
        params: list[Any] = [self.bucket, lo]
        upper = ""
        if self.hi is not None:
            upper = " AND key < ?"
            params.append(self.hi)
        order = "key" if not self.versions else "key, seq DESC"
        params.append(limit)
        table = "s3_objects"
        if not self.versions and self.tx.dialect == "sqlite":
            table += " INDEXED BY s3_objects_latest"  # not _current: delete markers would be read and dropped
        return self.tx.execute(f"SELECT {_COLS} FROM {table} WHERE {where} AND key {op} ?{upper}"
                               f" ORDER BY {order} LIMIT ?", params)

    def run(self, marker: bytes, version_marker: str) -> Listing:
        if self.max_keys <= 0:
            return Listing([], [], False)
        if self.versions and self._preflight(marker, version_marker):
            return self._page(True)
        lo, inclusive = self.prefix, True
        if marker and marker >= self.prefix:
            lo, inclusive = marker, False
            common = self._common(marker)
            if common is not None and common == marker:
                bound = _successor(common)
                if bound is None:
                    return self._page(False)
                lo, inclusive = bound, True
        while True:
            room = self.max_keys - len(self.objects) - len(self.prefixes)
            rows = self._rows(lo, inclusive, room + 1)
            for row in rows:
                if len(self.objects) + len(self.prefixes) >= self.max_keys:
                    return self._page(True)
                key = bytes(row[1])
                common = self._common(key)
                if common is None:
                    self._take(row)
                    lo, inclusive = key, False
                    continue
                self.prefixes.append(common.decode())
                self.last, self.last_version = common, None
                bound = _successor(common)
                if bound is None:
                    return self._page(False)
                lo, inclusive = bound, True
                break
            else:
                return self._page(False)

    def _take(self, row: Sequence[Any]) -> None:
        self.objects.append(_meta(row))
        self.last, self.last_version = bytes(row[1]), row[4]

    def _preflight(self, marker: bytes, version_marker: str) -> bool:
        """ListObjectVersions from a version marker: the rest of that key's versions come first. True when the
        page filled up (and more follow)."""
        if not marker or not version_marker:
            return False
        rows = self.tx.execute("SELECT seq FROM s3_objects WHERE bucket = ? AND key = ? AND version_id = ?",
                               (self.bucket, marker, version_marker))
        if not rows or not marker.startswith(self.prefix) or self._common(marker) is not None:
            return False
        rest = self.tx.execute(f"SELECT {_COLS} FROM s3_objects WHERE bucket = ? AND key = ? AND seq < ?"
                               " ORDER BY seq DESC LIMIT ?", (self.bucket, marker, rows[0][0], self.max_keys + 1))
        for row in rest:
            if len(self.objects) >= self.max_keys:
                return True
            self._take(row)
        return False

    def _page(self, truncated: bool) -> Listing:
        if not truncated:
            return Listing(self.objects, self.prefixes, False)
        marker = None if self.last is None else self.last.decode()
        return Listing(self.objects, self.prefixes, True, next_marker=marker,
                       next_version_marker=self.last_version if self.versions else None)
