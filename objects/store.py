"""The S3 engine: blobs in JetStream, metadata in SQL, consistent across crashes.

INTERFACE STUB (the implementer replaces every ``NotImplementedError`` and this line; signatures may grow
keyword arguments, but the API layer codes against them as written here).

Design
------
* A **blob** is a run of bytes published as messages of at most :data:`CHUNK` bytes on subject
  ``kambda.s3.blob.<blob id>`` of stream ``KAMBDA_S3``; its row in ``s3_blobs`` holds its state (``pending`` while
  being written, ``live`` once an object or a part points to it), its size and the packed sequence numbers of its
  chunks, so a byte range starts reading at the right chunk (:func:`kambda.bus.chunks.read` with ``first_seq``).
  Objects of at most :data:`INLINE_MAX` bytes keep their bytes in their metadata row instead: one SQL write,
  no stream round trip.
* An **object version** is a row in ``s3_objects`` (bucket, key, a per-bucket increasing ``seq``, version id,
  latest flag, delete marker, size, ETag, checksums, content headers, user metadata, tags) with its bytes either
  inline or as segments (``s3_segments``: blob id, size, in order; one for a PUT, one per part for a completed
  multipart upload, shared by copies).
* **Write order**: blob row ``pending`` -> chunks published and acknowledged -> one transaction makes the blob
  ``live`` and inserts the version and its segments (and, through ``on_commit``, the notification outbox rows).
  A crash before the transaction leaves a pending blob that :meth:`Store.reclaim` purges after
  ``pending_grace_s``; a listed object therefore always has its bytes. Deleting a version deletes its rows in one
  transaction and the blobs no segment or part points to any more become garbage, purged by :meth:`reclaim`
  (which the owner runs at start and periodically).
* Keys compare as UTF-8 bytes (S3's order): SQLite's BINARY collation, PostgreSQL ``COLLATE "C"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext

from kambda.sql import Database, Tx

#: Bytes per JetStream message of a blob.
CHUNK = 256 * 1024
#: Objects up to this size keep their bytes in their metadata row.
INLINE_MAX = 64 * 1024
STREAM = "KAMBDA_S3"
MIN_PART = 5 * 1024 * 1024
MAX_PARTS = 10_000
Clock = Callable[[], float]


@dataclass(frozen=True)
class Bucket:
    name: str
    created: float
    region: str
    #: "" (never enabled), "Enabled" or "Suspended".
    versioning: str = ""


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


class Store:
    def __init__(self, js: JetStreamContext, db: Database, *, region: str, clock: Clock,
                 on_commit: OnCommit | None = None, replicas: int = 1, pending_grace_s: float = 3600.0) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Migrate the schema, make the stream, reclaim what a crash left."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    # -- buckets ---------------------------------------------------------------------------------------------------

    async def create_bucket(self, name: str, region: str) -> Bucket:
        """BucketAlreadyOwnedByYou if it exists (one account owns every bucket here)."""
        raise NotImplementedError

    async def delete_bucket(self, name: str) -> None:
        """NoSuchBucket; BucketNotEmpty while any version, delete marker or multipart upload is left."""
        raise NotImplementedError

    async def bucket(self, name: str) -> Bucket:
        """NoSuchBucket unless it exists."""
        raise NotImplementedError

    async def buckets(self) -> list[Bucket]:
        raise NotImplementedError

    async def set_versioning(self, name: str, status: str) -> None:
        raise NotImplementedError

    async def get_config(self, name: str, kind: str) -> Any | None:
        """A bucket subresource document (``cors``, ``policy``, ``website``, ``lifecycle``, ``notification``,
        ``tagging``, ``encryption`` ...) as stored JSON, or None."""
        raise NotImplementedError

    async def put_config(self, name: str, kind: str, doc: Any | None) -> None:
        """Store (or with None delete) a bucket subresource document."""
        raise NotImplementedError

    # -- objects ---------------------------------------------------------------------------------------------------

    async def put(self, bucket: str, key: str, body: AsyncIterator[bytes] | bytes, *,
                  headers: Mapping[str, str] | None = None, metadata: Mapping[str, str] | None = None,
                  tags: Mapping[str, str] | None = None, content_md5: str | None = None,
                  checksum_algorithms: tuple[str, ...] = (), expected_checksums: Mapping[str, str] | None = None,
                  conditions: Conditions | None = None, event: str = "ObjectCreated:Put",
                  actor: Actor | None = None, max_size: int = 5 * 1024 ** 3) -> Written:
        """Stream ``body`` to a new version. ``content_md5`` (base64, Content-MD5) and ``expected_checksums``
        ({"CRC32": base64, ...}) are verified before the commit (BadDigest / InvalidRequest with S3's messages);
        ``checksum_algorithms`` are computed and stored. ``conditions`` (If-Match / If-None-Match: *) are checked
        atomically in the commit: PreconditionFailed (412), ConditionalRequestConflict (409) as S3 answers.
        EntityTooLarge beyond ``max_size``. Supported checksums: CRC32, CRC32C, SHA1, SHA256, CRC64NVME."""
        raise NotImplementedError

    async def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectMeta:
        """NoSuchBucket / NoSuchKey / NoSuchVersion; a delete marker as latest raises NoSuchKey with
        ``delete_marker`` set on the error (x-amz-delete-marker: true), a delete marker asked by version id
        raises MethodNotAllowed (405) as S3 does."""
        raise NotImplementedError

    def read(self, meta: ObjectMeta, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive; None: to the end) of that version, streamed chunk by chunk."""
        raise NotImplementedError

    async def delete(self, bucket: str, key: str, version_id: str | None = None, *,
                     actor: Actor | None = None, event_prefix: str = "ObjectRemoved") -> tuple[ObjectMeta | None, bool]:
        """S3's DeleteObject: without a version id on a versioned bucket a delete marker is made (returned, True);
        with one that version goes (returned, whether it was a marker); deleting nothing is not an error."""
        raise NotImplementedError

    async def list(self, bucket: str, *, prefix: str = "", delimiter: str = "", start_after: str = "",
                   max_keys: int = 1000) -> Listing:
        """Latest, non-marker versions in UTF-8 byte order of key after ``start_after``; keys sharing the part
        of the key after ``prefix`` up to the first ``delimiter`` are rolled into one common prefix, each counting
        once against ``max_keys``. O(page): a rolled-up prefix is skipped with one index seek."""
        raise NotImplementedError

    async def list_versions(self, bucket: str, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
                            version_id_marker: str = "", max_keys: int = 1000) -> Listing:
        """Every version and delete marker, by key then newest first."""
        raise NotImplementedError

    async def set_tags(self, bucket: str, key: str, version_id: str | None, tags: Mapping[str, str] | None,
                       actor: Actor | None = None) -> ObjectMeta:
        raise NotImplementedError

    async def copy(self, source: ObjectMeta, bucket: str, key: str, *, headers: Mapping[str, str] | None = None,
                   metadata: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None,
                   conditions: Conditions | None = None, actor: Actor | None = None) -> Written:
        """A new version of ``bucket/key`` sharing ``source``'s bytes (no byte is copied); ``headers`` and
        ``metadata`` None keep the source's (MetadataDirective COPY)."""
        raise NotImplementedError

    # -- multipart -------------------------------------------------------------------------------------------------

    async def create_upload(self, bucket: str, key: str, *, headers: Mapping[str, str] | None = None,
                            metadata: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None,
                            checksum_algorithm: str | None = None) -> Upload:
        raise NotImplementedError

    async def upload(self, bucket: str, key: str, upload_id: str) -> Upload:
        """NoSuchUpload unless that upload is in progress for that key."""
        raise NotImplementedError

    async def put_part(self, upload: Upload, number: int, body: AsyncIterator[bytes] | bytes, *,
                       content_md5: str | None = None, expected_checksums: Mapping[str, str] | None = None,
                       max_size: int = 5 * 1024 ** 3) -> Part:
        """Part numbers 1-10,000 (InvalidArgument otherwise); a part uploaded again replaces the earlier one."""
        raise NotImplementedError

    async def copy_part(self, upload: Upload, number: int, source: ObjectMeta, start: int = 0,
                        end: int | None = None) -> Part:
        """UploadPartCopy: a whole source shares its bytes; a range is copied into a new blob."""
        raise NotImplementedError

    async def parts(self, upload: Upload, *, marker: int = 0, max_parts: int = 1000) -> tuple[list[Part], bool]:
        raise NotImplementedError

    async def uploads(self, bucket: str, *, prefix: str = "", key_marker: str = "", upload_id_marker: str = "",
                      max_uploads: int = 1000) -> tuple[list[Upload], bool]:
        raise NotImplementedError

    async def complete(self, upload: Upload, parts: list[tuple[int, str]], *, conditions: Conditions | None = None,
                       actor: Actor | None = None) -> Written:
        """``parts``: (number, etag) in ascending order (InvalidPartOrder), each uploaded with that ETag
        (InvalidPart), every part but the last at least :data:`MIN_PART` (EntityTooSmall). The ETag is the MD5 of
        the parts' binary MD5s, ``-N``. Parts not listed are dropped; the upload ends."""
        raise NotImplementedError

    async def abort(self, upload: Upload) -> None:
        raise NotImplementedError

    # -- housekeeping ----------------------------------------------------------------------------------------------

    async def reclaim(self) -> int:
        """Purge blobs no version or part points to, and pending blobs older than the grace; returns how many."""
        raise NotImplementedError

    async def expire(self) -> int:
        """Apply the buckets' lifecycle expiration rules (Expiration Days/Date, NoncurrentVersionExpiration,
        AbortIncompleteMultipartUpload, ExpiredObjectDeleteMarker) as of the clock; returns how many went."""
        raise NotImplementedError
