"""Read a subject's messages in order, and object-store objects, without leaking consumers.

nats-py's ``ObjectStore.get()`` subscribes an ordered push consumer for every read and never deletes
it: after about 1,000 reads the server refuses new consumers ("maximum consumers limit reached").
It also appends every chunk to one ``bytes`` (quadratic: a 100 MB object reads at ~3 MB/s).

:func:`read` makes one ephemeral pull consumer per read (filtered on the subject, no acks, memory
storage, one replica), pulls ``batch`` messages at a time into one inbox and deletes the consumer
when the read ends or is abandoned (the generator's ``finally``; ``inactive_threshold`` covers a
process that dies mid-read). A consumer the server dropped while a slow reader held the generator
is made again from the next sequence, so a read survives its own inactivity.

The consumer is created with the ``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`` form (the
filter in the subject), so a NATS permission can allow reading one subject of a stream and no
other: give the reader a ``name`` and allow exactly that create, ``MSG.NEXT`` and ``DELETE``
(:func:`read_permissions`).

:func:`object_info`, :func:`object_chunks` and :func:`read_object` read an object-store object:
its meta by direct get on its meta subject, then its chunks, size and digest checked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncGenerator

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ObjectInfo
from nats.js.errors import DigestMismatchError, NotFoundError, ObjectDeletedError, ObjectNotFoundError
from nats.nuid import NUID

#: A consumer nobody pulls from for this long is deleted by the server (a reader that died).
INACTIVE_THRESHOLD_S = 30.0
#: How long one pull request waits for its batch before the server answers 408.
PULL_EXPIRES_S = 5.0
#: Times a read makes its consumer again after the server lost it, before it gives up.
MAX_RECREATES = 3

_nuid = NUID()


class ChunkReadError(Exception):
    """A read that could not go on (its consumer kept vanishing, or the server refused a pull)."""


def consumer_name() -> str:
    """A fresh consumer name for one read."""
    return "rd_" + _nuid.next().decode()


def chunk_subject(bucket: str, nuid: str) -> str:
    return f"$O.{bucket}.C.{nuid}"


def meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def object_stream(bucket: str) -> str:
    return f"OBJ_{bucket}"


def read_permissions(stream: str, subject: str, name: str) -> list[str]:
    """The publish permissions a :func:`read` of ``subject`` with consumer ``name`` needs, and no more."""
    return [
        f"$JS.API.CONSUMER.CREATE.{stream}.{name}.{subject}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}",
        f"$JS.API.CONSUMER.DELETE.{stream}.{name}",
    ]


async def read(js: JetStreamContext, stream: str, subject: str, *, first_seq: int | None = None,
               batch: int = 64, name: str | None = None) -> AsyncGenerator[bytes, None]:
    """Yield the data of every message on ``subject`` in ``stream``, in order, then stop.

    Reads the messages there when the read starts (and any that arrive while it runs). From
    ``first_seq`` (a stream sequence) if given, else from the first. ``name`` names the consumer
    (for a credential allowed only that name); by default a fresh one. Close the generator
    (``contextlib.aclosing``) to delete its consumer at once when breaking off early.
    """
    nc = js._nc
    name = name or consumer_name()
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    next_seq = first_seq
    created = False
    try:
        for _attempt in range(MAX_RECREATES + 1):
            remaining = await _create(js, stream, subject, name, next_seq)
            created = True
            while remaining > 0:
                want = min(batch, remaining)
                await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}", _pull_request(want), reply=inbox)
                lost = False
                for _ in range(want):
                    msg = await _next(sub)
                    if msg is None:
                        lost = True
                        break
                    status = _status(msg)
                    if status == _LOST:
                        lost = True
                    if status:
                        break
                    meta = msg.metadata
                    next_seq = meta.sequence.stream + 1
                    remaining = meta.num_pending
                    yield msg.data
                    if remaining == 0:
                        break
                if lost:
                    break
            else:
                return
            await _delete(js, stream, name)
            created = False
        raise ChunkReadError(f"reading {subject} from {stream}: the consumer {name} was lost {MAX_RECREATES + 1} times")
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if created:
            await _delete(js, stream, name)


async def _create(js: JetStreamContext, stream: str, subject: str, name: str, first_seq: int | None) -> int:
    """Make the read's consumer; the number of messages it has to deliver."""
    config = ConsumerConfig(
        name=name, filter_subject=subject, ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if first_seq else DeliverPolicy.ALL,
        opt_start_seq=first_seq or None, inactive_threshold=INACTIVE_THRESHOLD_S,
        mem_storage=True, num_replicas=1)
    info = await js.add_consumer(stream, config)
    return info.num_pending or 0


def _pull_request(batch: int) -> bytes:
    return json.dumps({"batch": batch, "expires": int(PULL_EXPIRES_S * 1e9)}).encode()


async def _next(sub: object) -> Msg | None:
    """The next message on the read's inbox, or None when none came (the consumer is gone)."""
    try:
        return await sub.next_msg(timeout=PULL_EXPIRES_S + 2.0)  # type: ignore[attr-defined, no-any-return]
    except NatsTimeout:
        return None


_AGAIN = "again"
_LOST = "lost"


def _status(msg: Msg) -> str:
    """What a status message means: "" for data, _AGAIN (the pull expired: pull again), _LOST (the
    consumer is gone: make it again); raises on a refusal (a permission, a bad request)."""
    if msg.data or not msg.headers or "Status" not in msg.headers:
        return ""
    code = msg.headers["Status"]
    description = msg.headers.get("Description", "")
    if code in ("404", "408", "100"):
        return _AGAIN
    if code == "503" or (code == "409" and ("deleted" in description.lower() or "leadership" in description.lower())):
        return _LOST
    raise ChunkReadError(f"pull refused: {code} {description}".strip())


async def _delete(js: JetStreamContext, stream: str, name: str) -> None:
    with contextlib.suppress(Exception):
        await js.delete_consumer(stream, name)


async def object_info(js: JetStreamContext, bucket: str, name: str) -> ObjectInfo:
    """The meta of object ``name`` (a direct get of its meta subject); ObjectNotFoundError if none."""
    try:
        raw = await js.get_last_msg(object_stream(bucket), meta_subject(bucket, name), direct=True)
    except NotFoundError:
        raise ObjectNotFoundError from None
    info = ObjectInfo.from_response(json.loads(raw.data or b"{}"))
    if info.deleted:
        raise ObjectDeletedError
    return info


async def object_chunks(js: JetStreamContext, bucket: str, info: ObjectInfo, *, batch: int = 64,
                        consumer: str | None = None) -> AsyncGenerator[bytes, None]:
    """Yield the chunks of the object ``info`` describes (through the consumer ``consumer``, by
    default a fresh name); raises DigestMismatchError at the end if the bytes are not the ones its
    meta names (and the caller must discard what it got)."""
    if not info.nuid:
        raise ObjectNotFoundError
    digest = hashlib.sha256()
    size = 0
    if info.size:
        reader = read(js, object_stream(bucket), chunk_subject(bucket, info.nuid), batch=batch,
                      name=consumer)
        async with contextlib.aclosing(reader):
            async for chunk in reader:
                digest.update(chunk)
                size += len(chunk)
                yield chunk
    want = (info.digest or "").split("=", 1)[-1]
    if size != (info.size or 0) or digest.digest() != base64.urlsafe_b64decode(want + "=" * (-len(want) % 4)):
        raise DigestMismatchError


async def read_object(js: JetStreamContext, bucket: str, name: str, *, batch: int = 64,
                      consumer: str | None = None) -> bytes:
    """The bytes of object ``name``, digest checked (``consumer``: as for :func:`object_chunks`)."""
    info = await object_info(js, bucket, name)
    if info.options and info.options.link and info.options.link.name:
        return await read_object(js, info.options.link.bucket or bucket, info.options.link.name, batch=batch,
                                 consumer=consumer)
    parts = [chunk async for chunk in object_chunks(js, bucket, info, batch=batch, consumer=consumer)]
    return b"".join(parts)
