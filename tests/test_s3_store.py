"""objects/store.py against a real nats-server and SQLite (and PostgreSQL when one can be started): objects,
ranges across chunk and segment boundaries, versioning and delete markers, multipart ETags and errors, copies,
the five checksums against known vectors, listings against a sorted reference (hypothesis), conditions, and crash
consistency (a pending blob never committed is reclaimed after the grace; a deleted object's blob is purged)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sys
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext

from kambda.aws.chunked import crc32c
from kambda.bus.natsserver import NatsServer
from kambda.sql import Database, Tx
from objects import errors
from objects.store import (
    CHUNK,
    INLINE_MAX,
    MIN_PART,
    STREAM,
    Change,
    Conditions,
    Listing,
    ObjectMeta,
    Store,
    _Lister,
    blob_subject,
    check_read_conditions,
    crc64nvme,
)
from tests.conftest import unique
from tests.postgres import fresh_database, postgres_server


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def js(tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    server = NatsServer(tmp_path / "nats")
    url = await server.start()
    nc = await nats.connect(url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()
        await server.stop()


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> list[Change]:
    return []


async def _store(js: JetStreamContext, db: Database, clock: Clock, changes: list[Change]) -> Store:
    store = Store(js, db, region="us-east-1", clock=clock, on_commit=lambda tx, change: changes.append(change),
                  pending_grace_s=60.0)
    await store.start(background=False)
    return store


@pytest.fixture
async def store(js: JetStreamContext, tmp_path: Path, clock: Clock, changes: list[Change]) -> AsyncIterator[Store]:
    db = Database.open(None, tmp_path / "objects" / "objects.db")
    s = await _store(js, db, clock, changes)
    yield s
    await s.close()
    await db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, js: JetStreamContext, tmp_path: Path, clock: Clock,
                    changes: list[Change]) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        db = Database.open(None, tmp_path / "objects" / "objects.db")
    else:
        db = Database.open(fresh_database(request.getfixturevalue("pg_dsn"), unique("s3")), tmp_path)
    s = await _store(js, db, clock, changes)
    yield s
    await s.close()
    await db.close()


async def body_of(store: Store, meta: ObjectMeta, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([piece async for piece in store.read(meta, start, end)])


async def stream_of(data: bytes, piece: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i:i + piece]


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'  # noqa: S324


async def messages(js: JetStreamContext) -> int:
    return (await js.stream_info(STREAM)).state.messages


# -- objects ------------------------------------------------------------------------------------------------------

async def test_crud_small_and_large(any_store: Store, changes: list[Change]) -> None:
    store = any_store
    await store.create_bucket("bkt", "us-east-1")
    assert [b.name for b in await store.buckets()] == ["bkt"]
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        await store.create_bucket("bkt", "us-east-1")
    small = b"hello world"
    big = os.urandom(3 * CHUNK + 123)
    w1 = await store.put("bkt", "small.txt", small, headers={"Content-Type": "text/plain"}, metadata={"a": "1"})
    w2 = await store.put("bkt", "big.bin", stream_of(big))
    assert w1.meta.etag == md5_etag(small) and w1.meta.version_id == "null"
    assert w2.meta.etag == md5_etag(big) and w2.meta.size == len(big)
    head = await store.head("bkt", "small.txt")
    assert head.headers == {"Content-Type": "text/plain"} and head.metadata == {"a": "1"}
    assert await body_of(store, head) == small
    assert await body_of(store, await store.head("bkt", "big.bin")) == big
    listing = await store.list("bkt")
    assert [o.key for o in listing.objects] == ["big.bin", "small.txt"] and not listing.truncated
    assert await body_of(store, listing.objects[0]) == big  # a listed meta reads too (by its row id)
    assert [c.event for c in changes] == ["ObjectCreated:Put"] * 2
    assert changes[0].meta.sequencer < changes[1].meta.sequencer
    await store.put("bkt", "small.txt", b"again")
    assert await body_of(store, await store.head("bkt", "small.txt")) == b"again"
    gone, marker = await store.delete("bkt", "big.bin")
    assert gone is not None and gone.key == "big.bin" and not marker
    assert changes[-1].event == "ObjectRemoved:Delete"
    with pytest.raises(errors.NoSuchKey):
        await store.head("bkt", "big.bin")
    assert await store.delete("bkt", "big.bin") == (None, False)
    with pytest.raises(errors.BucketNotEmpty):
        await store.delete_bucket("bkt")
    await store.delete("bkt", "small.txt")
    await store.delete_bucket("bkt")
    with pytest.raises(errors.NoSuchBucket):
        await store.head("bkt", "small.txt")
    with pytest.raises(errors.NoSuchBucket):
        await store.put("bkt", "x", b"x")


async def test_names_are_validated(store: Store) -> None:
    for bad in ("ab", "A-bucket", "-abc", "abc-", "a..b", "192.168.1.1", "a" * 64, "under_score"):
        with pytest.raises(errors.InvalidBucketName):
            await store.create_bucket(bad, "us-east-1")
    await store.create_bucket("a.b-c1", "us-east-1")
    with pytest.raises(errors.KeyTooLongError):
        await store.put("a.b-c1", "k" * 1025, b"")
    await store.put("a.b-c1", "é" * 512, b"")  # 1024 bytes of UTF-8
    assert (await store.head("a.b-c1", "é" * 512)).size == 0


async def test_ranges_across_chunks_and_segments(store: Store) -> None:
    await store.create_bucket("rrr", "us-east-1")
    part1, part2 = os.urandom(MIN_PART + 10), os.urandom(CHUNK + 7)
    upload = await store.create_upload("rrr", "mp")
    p1 = await store.put_part(upload, 1, stream_of(part1, 1 << 20))
    p2 = await store.put_part(upload, 2, part2)
    meta = (await store.complete(upload, [(1, p1.etag), (2, p2.etag)])).meta
    whole = part1 + part2
    meta = await store.head("rrr", "mp")
    assert meta.parts == 2 and meta.size == len(whole)
    edges = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, len(part1) - 1, len(part1), len(part1) + 1,
             len(part1) + CHUNK, len(whole) - 1, len(whole)]
    for start in edges:
        for end in edges:
            if start < end and (end - start < 3 * CHUNK or start in (0, len(part1) - 1)):
                assert await body_of(store, meta, start, end) == whole[start:end], (start, end)
    assert await body_of(store, meta) == whole
    assert await body_of(store, meta, 5, 5) == b""
    small = (await store.put("rrr", "s", b"0123456789")).meta
    assert await body_of(store, small, 3, 6) == b"345"


# -- versioning ---------------------------------------------------------------------------------------------------

async def test_versioning_and_delete_markers(any_store: Store, changes: list[Change]) -> None:
    store = any_store
    await store.create_bucket("vvv", "us-east-1")
    before = (await store.put("vvv", "k", b"unversioned")).meta
    await store.set_versioning("vvv", "Enabled")
    v1 = (await store.put("vvv", "k", b"one")).meta
    v2 = (await store.put("vvv", "k", b"two")).meta
    assert len(v1.version_id) == 32 and v1.version_id != v2.version_id
    assert await body_of(store, await store.head("vvv", "k")) == b"two"
    assert await body_of(store, await store.head("vvv", "k", v1.version_id)) == b"one"
    assert await body_of(store, await store.head("vvv", "k", "null")) == b"unversioned"
    marker, made = await store.delete("vvv", "k")
    assert made and marker is not None and marker.delete_marker
    assert changes[-1].event == "ObjectRemoved:DeleteMarkerCreated"
    with pytest.raises(errors.NoSuchKey) as info:
        await store.head("vvv", "k")
    assert info.value.delete_marker is True  # type: ignore[attr-defined]
    with pytest.raises(errors.MethodNotAllowed):
        await store.head("vvv", "k", marker.version_id)
    with pytest.raises(errors.NoSuchVersion):
        await store.head("vvv", "k", "nope")
    assert (await store.list("vvv")).objects == []
    versions = await store.list_versions("vvv")
    assert [(o.version_id, o.is_latest, o.delete_marker) for o in versions.objects] == [
        (marker.version_id, True, True), (v2.version_id, False, False), (v1.version_id, False, False),
        ("null", False, False)]
    # Deleting the marker by version id brings v2 back.
    gone, was_marker = await store.delete("vvv", "k", marker.version_id)
    assert was_marker and gone is not None
    assert (await store.head("vvv", "k")).version_id == v2.version_id
    # Suspended: writes are "null", replacing the earlier null version.
    await store.set_versioning("vvv", "Suspended")
    n = (await store.put("vvv", "k", b"suspended")).meta
    assert n.version_id == "null"
    ids = [o.version_id for o in (await store.list_versions("vvv")).objects]
    assert ids == ["null", v2.version_id, v1.version_id]
    assert before.version_id == "null"
    marker2, made = await store.delete("vvv", "k")
    assert made and marker2 is not None and marker2.version_id == "null"
    flags = [(o.version_id, o.delete_marker) for o in (await store.list_versions("vvv")).objects]
    assert flags == [("null", True), (v2.version_id, False), (v1.version_id, False)]
    # Paging versions with key and version-id markers.
    await store.set_versioning("vvv", "Enabled")
    for i in range(3):
        await store.put("vvv", "a", f"a{i}".encode())
    full = await store.list_versions("vvv")
    seen: list[tuple[str, str]] = []
    key_marker = version_marker = ""
    while True:
        page = await store.list_versions("vvv", key_marker=key_marker, version_id_marker=version_marker, max_keys=2)
        seen += [(o.key, o.version_id) for o in page.objects]
        if not page.truncated:
            break
        key_marker, version_marker = page.next_marker or "", page.next_version_marker or ""
    assert seen == [(o.key, o.version_id) for o in full.objects]
    assert [o.key for o in full.objects] == ["a"] * 3 + ["k"] * 3


# -- multipart ----------------------------------------------------------------------------------------------------

async def test_multipart_etag_and_errors(any_store: Store, changes: list[Change]) -> None:
    store = any_store
    await store.create_bucket("mmm", "us-east-1")
    upload = await store.create_upload("mmm", "big", headers={"Content-Type": "a/b"}, metadata={"x": "y"})
    assert (await store.upload("mmm", "big", upload.upload_id)).upload_id == upload.upload_id
    with pytest.raises(errors.NoSuchUpload):
        await store.upload("mmm", "other", upload.upload_id)
    with pytest.raises(errors.InvalidArgument):
        await store.put_part(upload, 10_001, b"x")
    a, b, c = os.urandom(MIN_PART), os.urandom(MIN_PART), b"tail"
    pa = await store.put_part(upload, 1, stream_of(a, 1 << 20))
    pb_small = await store.put_part(upload, 2, b"too small")
    pc = await store.put_part(upload, 3, c)
    with pytest.raises(errors.EntityTooSmall):
        await store.complete(upload, [(1, pa.etag), (2, pb_small.etag), (3, pc.etag)])
    pb = await store.put_part(upload, 2, b)  # replaces the small one
    with pytest.raises(errors.InvalidPartOrder):
        await store.complete(upload, [(2, pb.etag), (1, pa.etag)])
    with pytest.raises(errors.InvalidPart):
        await store.complete(upload, [(1, pa.etag), (2, pb_small.etag)])
    with pytest.raises(errors.InvalidPart):
        await store.complete(upload, [(1, pa.etag), (4, pc.etag)])
    parts, truncated = await store.parts(upload, max_parts=2)
    assert [p.number for p in parts] == [1, 2] and truncated
    assert [u.upload_id for u in (await store.uploads("mmm"))[0]] == [upload.upload_id]
    done = (await store.complete(upload, [(1, pa.etag), (2, pb.etag), (3, pc.etag)])).meta
    md5s = b"".join(hashlib.md5(x).digest() for x in (a, b, c))  # noqa: S324
    assert done.etag == f'"{hashlib.md5(md5s).hexdigest()}-3"'  # noqa: S324
    assert changes[-1].event == "ObjectCreated:CompleteMultipartUpload"
    meta = await store.head("mmm", "big")
    assert meta.headers == {"Content-Type": "a/b"} and meta.metadata == {"x": "y"} and meta.parts == 3
    assert await body_of(store, meta) == a + b + c
    spans = [await store.part_span(meta, n) for n in (1, 2, 3)]
    assert spans == [(0, len(a)), (len(a), len(a) + len(b)), (len(a) + len(b), len(a) + len(b) + len(c))]
    assert await body_of(store, meta, *spans[2]) == c
    with pytest.raises(errors.InvalidPartNumber):
        await store.part_span(meta, 4)
    copied = (await store.copy(meta, "mmm", "copied")).meta
    assert await store.part_span(await store.head("mmm", "copied"), 2) == spans[1] and copied.parts == 3
    single = (await store.put("mmm", "single", b"abc")).meta
    assert await store.part_span(single, 1) == (0, 3)
    await store.delete("mmm", "copied")
    await store.delete("mmm", "single")
    with pytest.raises(errors.NoSuchUpload):
        await store.upload("mmm", "big", upload.upload_id)
    assert (await store.uploads("mmm"))[0] == []
    # The replaced small part's blob is garbage now.
    assert await store.reclaim() >= 1
    assert await body_of(store, meta) == a + b + c
    aborted = await store.create_upload("mmm", "gone")
    await store.put_part(aborted, 1, b"bytes")
    await store.abort(aborted)
    with pytest.raises(errors.NoSuchUpload):
        await store.abort(aborted)
    assert await store.reclaim() == 1


async def test_copy_shares_bytes_and_copy_part_ranges(store: Store, js: JetStreamContext) -> None:
    await store.create_bucket("ccc", "us-east-1")
    data = os.urandom(MIN_PART + 5)
    src = (await store.put("ccc", "src", data, metadata={"m": "1"})).meta
    stored = await messages(js)
    copy = (await store.copy(src, "ccc", "dst", metadata={"m": "2"})).meta
    assert await messages(js) == stored  # no byte copied
    assert copy.etag == src.etag and copy.metadata == {"m": "2"}
    await store.delete("ccc", "src")
    assert await store.reclaim() == 0  # the copy still points at the blob
    assert await body_of(store, await store.head("ccc", "dst")) == data
    small = (await store.put("ccc", "small", b"tiny")).meta
    assert await body_of(store, (await store.copy(small, "ccc", "small2")).meta) == b"tiny"
    upload = await store.create_upload("ccc", "assembled")
    whole = await store.copy_part(upload, 1, await store.head("ccc", "dst"))
    assert whole.etag == src.etag and await messages(js) == stored
    ranged = await store.copy_part(upload, 2, await store.head("ccc", "dst"), 10, CHUNK + 20)
    assert ranged.etag == md5_etag(data[10:CHUNK + 20])
    done = (await store.complete(upload, [(1, whole.etag), (2, ranged.etag)])).meta
    assert await body_of(store, done) == data + data[10:CHUNK + 20]
    await store.delete("ccc", "dst")
    assert await store.reclaim() == 0
    assert await body_of(store, await store.head("ccc", "assembled")) == data + data[10:CHUNK + 20]


# -- checksums and digests ----------------------------------------------------------------------------------------

def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


VECTOR = b"123456789"
KNOWN = {
    "CRC32": b64((0xCBF43926).to_bytes(4, "big")),
    "CRC32C": b64((0xE3069283).to_bytes(4, "big")),
    "CRC64NVME": b64((0xAE8B14860A799888).to_bytes(8, "big")),
    "SHA1": b64(hashlib.sha1(VECTOR).digest()),  # noqa: S324
    "SHA256": b64(hashlib.sha256(VECTOR).digest()),
}


def test_crc_check_values() -> None:
    assert crc64nvme(VECTOR) == 0xAE8B14860A799888
    assert crc64nvme(VECTOR[5:], crc64nvme(VECTOR[:5])) == 0xAE8B14860A799888
    assert crc32c(VECTOR) == 0xE3069283 and zlib.crc32(VECTOR) == 0xCBF43926


@pytest.mark.parametrize("size", [len(VECTOR), INLINE_MAX + 1])
async def test_checksums_are_computed_and_verified(store: Store, js: JetStreamContext, size: int) -> None:
    await store.create_bucket("sss", "us-east-1")
    if size == len(VECTOR):
        data, known = VECTOR, KNOWN
    else:
        data = os.urandom(size)
        known = {"CRC32": b64(zlib.crc32(data).to_bytes(4, "big")), "CRC32C": b64(crc32c(data).to_bytes(4, "big")),
                 "CRC64NVME": b64(crc64nvme(data).to_bytes(8, "big")),
                 "SHA1": b64(hashlib.sha1(data).digest()), "SHA256": b64(hashlib.sha256(data).digest())}  # noqa: S324
    meta = (await store.put("sss", "k", stream_of(data, 1000), checksum_algorithms=tuple(known))).meta
    assert dict(meta.checksums) == known
    for algorithm, value in known.items():
        await store.put("sss", "k", data, expected_checksums={algorithm: value})
        wrong = b64(bytes(len(base64.b64decode(value))))
        with pytest.raises(errors.BadDigest, match=f"The {algorithm} you specified did not match"):
            await store.put("sss", "k", stream_of(data, 1000), expected_checksums={algorithm: wrong})
        with pytest.raises(errors.InvalidRequest, match=f"x-amz-checksum-{algorithm.lower()} header is invalid"):
            await store.put("sss", "k", data, expected_checksums={algorithm: "AAAA!"})
    md5 = b64(hashlib.md5(data).digest())  # noqa: S324
    await store.put("sss", "k", data, content_md5=md5)
    with pytest.raises(errors.BadDigest, match="The Content-MD5 you specified did not match what we received."):
        await store.put("sss", "k", data, content_md5=b64(bytes(16)))
    with pytest.raises(errors.InvalidDigest):
        await store.put("sss", "k", data, content_md5="nope")
    await store.reclaim()  # the replaced versions' blobs; the failed writes purged their own already
    assert await messages(js) == (0 if size <= INLINE_MAX else 1)
    assert await body_of(store, await store.head("sss", "k")) == data


async def test_multipart_composite_checksum(store: Store) -> None:
    await store.create_bucket("sss", "us-east-1")
    upload = await store.create_upload("sss", "k", checksum_algorithm="SHA256")
    a, b = os.urandom(MIN_PART), b"end"
    pa = await store.put_part(upload, 1, a)
    pb = await store.put_part(upload, 2, b)
    assert pa.checksums == {"SHA256": b64(hashlib.sha256(a).digest())}
    meta = (await store.complete(upload, [(1, pa.etag), (2, pb.etag)])).meta
    combined = hashlib.sha256(hashlib.sha256(a).digest() + hashlib.sha256(b).digest()).digest()
    assert meta.checksums == {"SHA256": b64(combined) + "-2"}


@pytest.mark.parametrize(("algorithm", "kind"), [("CRC32", "FULL_OBJECT"), ("CRC32C", "FULL_OBJECT"),
                                                 ("CRC64NVME", None), ("CRC32", None)])
async def test_multipart_full_object_checksums(store: Store, algorithm: str, kind: str | None) -> None:
    await store.create_bucket("full", "us-east-1")
    upload = await store.create_upload("full", "k", checksum_algorithm=algorithm, checksum_type=kind)
    a, b = os.urandom(MIN_PART), os.urandom(1000)
    pa = await store.put_part(upload, 1, a)
    pb = await store.put_part(upload, 2, b)
    whole = (await store.put("full", "single", a + b, checksum_algorithms=(algorithm,))).meta.checksums[algorithm]
    if kind is None and algorithm == "CRC32":  # COMPOSITE by default
        meta = (await store.complete(upload, [(1, pa.etag), (2, pb.etag)])).meta
        assert meta.checksums[algorithm].endswith("-2")
        return
    with pytest.raises(errors.BadDigest):
        await store.complete(upload, [(1, pa.etag), (2, pb.etag)],
                             expected_checksums={algorithm: pa.checksums[algorithm]})
    meta = (await store.complete(upload, [(1, pa.etag), (2, pb.etag)], expected_checksums={algorithm: whole})).meta
    assert meta.checksums == {algorithm: whole}  # what a single PUT of the same bytes has


async def test_checksum_types_are_validated(store: Store) -> None:
    await store.create_bucket("typ", "us-east-1")
    with pytest.raises(errors.InvalidRequest):
        await store.create_upload("typ", "k", checksum_algorithm="SHA256", checksum_type="FULL_OBJECT")
    with pytest.raises(errors.InvalidRequest):
        await store.create_upload("typ", "k", checksum_algorithm="CRC64NVME", checksum_type="COMPOSITE")
    with pytest.raises(errors.InvalidRequest):
        await store.create_upload("typ", "k", checksum_type="FULL_OBJECT")
    upload = await store.create_upload("typ", "k", checksum_algorithm="crc32c", checksum_type="FULL_OBJECT")
    assert (await store.upload("typ", "k", upload.upload_id)).checksum_type == "FULL_OBJECT"


# -- conditions ---------------------------------------------------------------------------------------------------

async def test_conditional_writes(store: Store) -> None:
    await store.create_bucket("www", "us-east-1")
    first = (await store.put("www", "k", b"1", conditions=Conditions(if_none_match="*"))).meta
    with pytest.raises(errors.PreconditionFailed):
        await store.put("www", "k", b"2", conditions=Conditions(if_none_match="*"))
    with pytest.raises(errors.PreconditionFailed):
        await store.put("www", "k", os.urandom(INLINE_MAX + 1), conditions=Conditions(if_match='"abc"'))
    with pytest.raises(errors.NoSuchKey):
        await store.put("www", "other", b"2", conditions=Conditions(if_match=first.etag))
    await store.put("www", "k", b"2", conditions=Conditions(if_match=first.etag))
    assert await body_of(store, await store.head("www", "k")) == b"2"
    upload = await store.create_upload("www", "k")
    part = await store.put_part(upload, 1, b"3")
    with pytest.raises(errors.PreconditionFailed):
        await store.complete(upload, [(1, part.etag)], conditions=Conditions(if_none_match="*"))
    assert await store.reclaim() == 0


def test_read_conditions() -> None:
    meta = ObjectMeta("b", "k", "null", 1, '"e1"', last_modified=1000.5)
    check_read_conditions(meta, None)
    check_read_conditions(meta, Conditions(if_match='"e1"', if_unmodified_since=10))  # If-Match wins
    with pytest.raises(errors.PreconditionFailed):
        check_read_conditions(meta, Conditions(if_match='"e2"'))
    with pytest.raises(errors.PreconditionFailed):
        check_read_conditions(meta, Conditions(if_unmodified_since=999))
    with pytest.raises(errors.NotModified):
        check_read_conditions(meta, Conditions(if_none_match='"x", "e1"'))
    with pytest.raises(errors.NotModified):
        check_read_conditions(meta, Conditions(if_modified_since=1000))
    check_read_conditions(meta, Conditions(if_none_match='"e2"', if_modified_since=2000))  # If-None-Match wins
    check_read_conditions(meta, Conditions(if_modified_since=999, if_unmodified_since=1000))


# -- tags and configs ---------------------------------------------------------------------------------------------

async def test_tags_and_configs(store: Store, changes: list[Change]) -> None:
    await store.create_bucket("ttt", "us-east-1")
    await store.put("ttt", "k", b"x", tags={"a": "1"})
    assert (await store.head("ttt", "k")).tags == {"a": "1"}
    meta = await store.set_tags("ttt", "k", None, {"b": "2"})
    assert meta.tags == {"b": "2"} and changes[-1].event == "ObjectTagging:Put"
    await store.set_tags("ttt", "k", None, None)
    assert (await store.head("ttt", "k")).tags == {} and changes[-1].event == "ObjectTagging:Delete"
    assert await store.get_config("ttt", "cors") is None
    await store.put_config("ttt", "cors", {"CORSRules": [{"AllowedOrigins": ["*"]}]})
    assert await store.get_config("ttt", "cors") == {"CORSRules": [{"AllowedOrigins": ["*"]}]}
    assert await store.configs("cors") == {"ttt": {"CORSRules": [{"AllowedOrigins": ["*"]}]}}
    await store.put_config("ttt", "cors", None)
    assert await store.get_config("ttt", "cors") is None
    with pytest.raises(errors.NoSuchBucket):
        await store.get_config("nope", "cors")


# -- listings -----------------------------------------------------------------------------------------------------

def reference(keys: set[str], prefix: str, delimiter: str, after: str) -> list[tuple[str, bool]]:
    """(key or common prefix, is_prefix) in UTF-8 byte order, as S3 lists them."""
    out: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for key in sorted(keys, key=lambda k: k.encode()):
        if not key.startswith(prefix) or key.encode() <= after.encode():
            continue
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            common = prefix + rest[:rest.index(delimiter) + len(delimiter)]
            if common not in seen and common.encode() > after.encode():
                seen.add(common)
                out.append((common, True))
            continue
        out.append((key, False))
    return out


KEY = st.text(alphabet=st.sampled_from(["a", "b", "/", "é", "z", "\U0001f600", "-", "~"]), min_size=1, max_size=6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.sets(KEY, max_size=25), prefix=st.sampled_from(["", "a", "a/", "é", "b/"]),
       delimiter=st.sampled_from(["", "/"]), page=st.integers(1, 7))
async def test_listing_pages_equal_a_sorted_reference(any_store: Store, keys: set[str], prefix: str, delimiter: str,
                                                      page: int) -> None:
    store = any_store
    bucket = unique("l").lower().replace("_", "-")[:40]
    await store.create_bucket(bucket, "us-east-1")
    await store.set_versioning(bucket, "Enabled")
    for key in keys:
        await store.put(bucket, key, b"")
    deleted = sorted(keys)[::3]
    for key in deleted:
        await store.delete(bucket, key)  # a marker: not listed, but listed as a version
    live = keys - set(deleted)
    got: list[tuple[str, bool]] = []
    after = ""
    while True:
        listing = await store.list(bucket, prefix=prefix, delimiter=delimiter, start_after=after, max_keys=page)
        assert len(listing.objects) + len(listing.common_prefixes) <= page
        entries = [(o.key, False) for o in listing.objects] + [(p, True) for p in listing.common_prefixes]
        got += sorted(entries, key=lambda e: e[0].encode())
        if not listing.truncated:
            break
        assert listing.next_marker
        after = listing.next_marker
    assert got == reference(live, prefix, delimiter, "")
    versions: list[tuple[str, bool]] = []
    key_marker = version_marker = ""
    while True:
        listing = await store.list_versions(bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
                                            version_id_marker=version_marker, max_keys=page)
        entries = [(o.key, False) for o in listing.objects] + [(p, True) for p in listing.common_prefixes]
        versions += sorted(entries, key=lambda e: e[0].encode())
        if not listing.truncated:
            break
        key_marker, version_marker = listing.next_marker or "", listing.next_version_marker or ""
    expected = []
    for entry, is_prefix in reference(keys, prefix, delimiter, ""):
        expected += [(entry, True)] if is_prefix else [(entry, False)] * (2 if entry in deleted else 1)
    assert versions == expected


# -- crash consistency --------------------------------------------------------------------------------------------

async def test_a_pending_blob_is_reclaimed_after_the_grace_and_never_listed(store: Store, js: JetStreamContext,
                                                                             clock: Clock) -> None:
    await store.create_bucket("xxx", "us-east-1")
    blob = await store._new_blob()  # what a process killed mid-upload leaves: a pending row and some chunks
    await js.publish(blob_subject(blob), os.urandom(CHUNK))
    await js.publish(blob_subject(blob), os.urandom(CHUNK))
    assert (await store.list("xxx")).objects == [] and (await store.list_versions("xxx")).objects == []
    assert await store.reclaim() == 0  # within the grace: maybe still being written
    assert await messages(js) == 2
    clock.now += 61
    assert await store.reclaim() == 1
    assert await messages(js) == 0
    assert await store.reclaim() == 0


async def test_a_deleted_object_has_its_blob_purged(store: Store, js: JetStreamContext) -> None:
    await store.create_bucket("xxx", "us-east-1")
    meta = (await store.put("xxx", "k", os.urandom(CHUNK * 2))).meta
    await store.put("xxx", "inline", b"small")
    assert await messages(js) == 2
    await store.put("xxx", "k", os.urandom(INLINE_MAX + 1))  # replaces the null version: its blob goes
    assert await store.reclaim() == 1
    assert await messages(js) == 1
    await store.delete("xxx", "k")
    assert await store.reclaim() == 1
    assert await messages(js) == 0
    with pytest.raises(errors.S3Error):
        await body_of(store, meta)


async def test_restart_keeps_objects(js: JetStreamContext, tmp_path: Path, clock: Clock) -> None:
    db = Database.open(None, tmp_path / "o.db")
    store = await _store(js, db, clock, [])
    await store.create_bucket("ppp", "us-east-1")
    data = os.urandom(CHUNK + 1)
    await store.put("ppp", "k", data)
    await store.close()
    await db.close()
    db = Database.open(None, tmp_path / "o.db")
    store = await _store(js, db, clock, [])
    assert await body_of(store, await store.head("ppp", "k")) == data
    await store.close()
    await db.close()


CRASHER = """
import asyncio, os, sys
from pathlib import Path
import nats
from kambda.sql import Database, Tx
from objects.store import Store

async def main():
    url, path, now = sys.argv[1], sys.argv[2], float(sys.argv[3])
    nc = await nats.connect(url)
    db = Database.open(None, Path(path))
    store = Store(nc.jetstream(), db, region="us-east-1", clock=lambda: now)
    await store.start(background=False)
    await store.put("kkk", "done", os.urandom(300_000))

    async def endless():
        while True:
            yield os.urandom(64 * 1024)
            await asyncio.sleep(0.001)

    await store.put("kkk", "never", endless())

asyncio.run(main())
"""


async def test_kill_9_mid_upload_lists_nothing_without_bytes(store: Store, js: JetStreamContext, tmp_path: Path,
                                                             clock: Clock) -> None:
    await store.create_bucket("kkk", "us-east-1")
    url = js._nc.connected_url
    assert url is not None
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHER, f"nats://{url.hostname}:{url.port}", str(tmp_path / "objects" / "objects.db"),
        str(clock.now))
    try:
        await eventually(lambda: messages(js), lambda n: n > 10, deadline_s=60)  # "done" committed, "never" streaming
    finally:
        process.kill()  # SIGKILL: no finally, no cleanup in the writer
        await process.wait()
    listed = await store.list("kkk")
    assert [o.key for o in listed.objects] == ["done"]
    for meta in listed.objects + (await store.list_versions("kkk")).objects:
        assert len(await body_of(store, meta)) == meta.size
    left = await messages(js)
    assert await store.reclaim() == 0  # the pending blob is within its grace
    clock.now += 61
    assert await store.reclaim() == 1
    assert 0 < await messages(js) < left
    assert len(await body_of(store, await store.head("kkk", "done"))) == 300_000


async def eventually(probe: Callable[[], Awaitable[int]], ok: Callable[[int], bool], deadline_s: float) -> int:
    deadline = time.monotonic() + deadline_s
    while True:
        value = await probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value} after {deadline_s}s")
        await asyncio.sleep(0.05)


async def test_large_bodies_stream_in_bounded_memory(store: Store) -> None:
    await store.create_bucket("mem", "us-east-1")
    size, piece = 96 * 1024 * 1024, 1024 * 1024
    digest = hashlib.md5()  # noqa: S324

    async def generated() -> AsyncIterator[bytes]:
        for _ in range(size // piece):
            data = os.urandom(piece)
            digest.update(data)
            yield data

    tracemalloc.start()
    try:
        meta = (await store.put("mem", "big", generated())).meta
        put_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        read = hashlib.md5()  # noqa: S324
        async for data in store.read(await store.head("mem", "big")):
            read.update(data)
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert meta.etag == f'"{digest.hexdigest()}"' and read.hexdigest() == digest.hexdigest()
    assert put_peak < 16 * 1024 * 1024 and read_peak < 16 * 1024 * 1024, (put_peak, read_peak)  # of 96 MB


class CountingTx:
    """A transaction that counts its statements (to show a listing page costs O(page) index seeks)."""

    def __init__(self, tx: Tx) -> None:
        self.tx, self.dialect, self.statements = tx, tx.dialect, 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.statements += 1
        return self.tx.execute(sql, params)


async def test_a_listing_page_skips_each_common_prefix_with_one_seek(store: Store) -> None:
    await store.create_bucket("seek", "us-east-1")
    await asyncio.gather(*(store.put("seek", f"p{d:02}/{i:03}", b"") for d in range(40) for i in range(50)))

    def page(tx: Tx) -> tuple[Listing, int]:
        counting = CountingTx(tx)
        listing = _Lister(counting, "seek", "", "/", 5, False).run(b"p07/", "")  # type: ignore[arg-type]
        return listing, counting.statements

    listing, statements = await store.db.read(page)
    assert listing.common_prefixes == [f"p{d:02}/" for d in range(8, 13)] and listing.truncated
    assert listing.next_marker == "p12/"
    assert statements <= 6  # one seek per common prefix and one to see that more follow, not 250 rows read


async def test_concurrent_writes_to_one_bucket_all_land(any_store: Store) -> None:
    store = any_store
    await store.create_bucket("busy", "us-east-1")
    await store.set_versioning("busy", "Enabled")
    written = await asyncio.gather(*(store.put("busy", f"k{i % 4}", f"{i}".encode()) for i in range(48)))
    versions = (await store.list_versions("busy")).objects
    assert sorted(v.version_id for v in versions) == sorted(w.meta.version_id for w in written)
    latest = {v.key: v for v in versions if v.is_latest}
    assert len(latest) == 4
    for key, meta in latest.items():
        newest = max((w.meta for w in written if w.meta.key == key), key=lambda m: m.sequencer)
        assert meta.version_id == newest.version_id


async def test_a_long_upload_outlives_the_grace(store: Store, clock: Clock) -> None:
    await store.create_bucket("long", "us-east-1")
    reclaimed: list[int] = []

    async def slow() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield os.urandom(CHUNK)
            clock.now += 20  # 160 s in all, the grace is 60 s
            reclaimed.append(await store.reclaim())

    meta = (await store.put("long", "k", slow())).meta
    assert reclaimed == [0] * 8 and meta.size == 8 * CHUNK
    assert len(await body_of(store, await store.head("long", "k"))) == 8 * CHUNK


async def test_the_sweep_finds_a_live_blob_nothing_points_to(store: Store, js: JetStreamContext) -> None:
    blob = await store._new_blob()
    await js.publish(blob_subject(blob), b"orphan")
    await store.db.write(lambda tx: tx.execute("UPDATE s3_blobs SET state = 'live' WHERE id = ?", (blob,)))
    assert await store.reclaim() == 0  # the periodic reclaim trusts the garbage marks
    assert await store.reclaim(sweep=True) == 1
    assert await messages(js) == 0


async def test_the_background_reclaim_purges_a_deleted_objects_blob(js: JetStreamContext, tmp_path: Path,
                                                                    clock: Clock) -> None:
    db = Database.open(None, tmp_path / "bg.db")
    store = Store(js, db, region="us-east-1", clock=clock, reclaim_interval_s=0.05)
    await store.start()
    try:
        await store.create_bucket("bgr", "us-east-1")
        await store.put("bgr", "k", os.urandom(CHUNK + 1))
        assert await messages(js) == 2
        await store.delete("bgr", "k")
        await eventually(lambda: messages(js), lambda n: n == 0, deadline_s=30)
    finally:
        await store.close()
        await db.close()


async def test_a_read_broken_off_leaves_no_consumer(store: Store, js: JetStreamContext) -> None:
    await store.create_bucket("brk", "us-east-1")
    meta = (await store.put("brk", "k", os.urandom(40 * CHUNK))).meta
    reader = store.read(await store.head("brk", "k"))
    assert len(await reader.__anext__()) == CHUNK
    assert (await js.stream_info(STREAM)).state.consumer_count == 1
    await reader.aclose()  # what the API layer does when the client goes away
    assert (await js.stream_info(STREAM)).state.consumer_count == 0
    assert len(await body_of(store, meta)) == 40 * CHUNK
