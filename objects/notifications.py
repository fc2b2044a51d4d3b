"""S3 bucket notifications: functions, the default event bus and NATS subjects triggered by object changes.

Configuration
-------------
PutBucketNotificationConfiguration / GetBucketNotificationConfiguration keep a bucket's document (botocore's
``NotificationConfiguration`` shape, as JSON) as the store's ``notification`` subresource; the store's
``on_commit`` reads it inside the very transaction that commits a change (no cache to go stale, whichever gateway
replica made the change, and it goes with a deleted bucket). Destinations:

* ``LambdaFunctionConfigurations``: a function ARN (qualified or not); the function must exist (a resource-based
  permission for ``s3.amazonaws.com`` is not required: kambda's own triggers invoke through the bus).
* ``EventBridgeConfiguration``: every event goes to the ``default`` event bus as AWS's ``aws.s3`` events
  ("Object Created", "Object Deleted", "Object Tags Added", "Object Tags Deleted").
* ``QueueConfigurations`` / ``TopicConfigurations`` whose ARN is ``arn:kambda:nats:::kambda.s3.notify.<name>``
  (kambda's own): the records are published to that NATS subject, kept by stream KAMBDA_S3_NOTIFY (7 days) for
  any NATS client to consume.
  Other queue and topic ARNs (there is no SQS or SNS here) are refused as AWS refuses a destination it cannot
  validate.

Filters are ``prefix`` / ``suffix`` rules on the key; two configurations sharing an event type with overlapping
filters are refused with AWS's "Configurations overlap" InvalidArgument.

Delivery: no notification is lost
---------------------------------
:meth:`Notifications.on_commit` (the store's hook, inside each change's transaction) matches the change against the
bucket's configuration and inserts one outbox row per destination (``s3_notify_outbox``), tagged with the
request's id. Once the store's write returns (:meth:`Notifications.attach` wraps the store's write methods, so
every caller is covered), :meth:`Notifications.publish` takes that request's rows: they are stored on JetStream
(a Lambda destination as an asynchronous invocation on KAMBDA_ASYNC, through the async path's retries, age limit
and destinations; an EventBridge one on KAMBDA_EVENTS, routed by the worker tier like a PutEvents entry) with the
row's id as ``Nats-Msg-Id`` and then deleted. If that fails, the write is
answered 503 ServiceUnavailable (its change is committed, and its notification still goes: the rows stay) and the
relay (one gateway at a time, by a lease row) publishes rows older than ``grace_s`` again, and at once those of
no request (the lifecycle sweep's); a gateway killed between a commit and its publish leaves rows the relay sends
when it is back. A crash between a publish and the delete republishes with the same id, which JetStream's
duplicate window drops: under normal operation a notification goes exactly once, across crashes at least once.

External object stores
----------------------
``POST /_kambda/v1/s3-events/<bucket>`` accepts S3-shaped records as Ceph RGW's HTTP topics and MinIO's webhook
target push them (``{"Records": [...]}``, MinIO's ``{"EventName", "Key", "Records"}``): each record is matched
against the notification configuration of the kambda bucket of that name (made once for the purpose, it stays
empty) and delivered the same way, the record as the source sent it. MinIO's NATS target publishes the same
payload on ``kambda.s3.inbox.<bucket>`` (stream KAMBDA_S3_INBOX), which the gateways consume (one durable
consumer, ``s3-inbox``) into the same path. The endpoint authenticates like kambda's other ``/_kambda/v1`` routes
(action ``kambda:PutS3Events``), or with the bucket's own events token, which a webhook can carry
(:func:`external_routes`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import orjson
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from kambda import bus
from kambda.aws import auth, model
from kambda.aws import errors as kerrors
from kambda.names import LATEST, Arns, parse_function
from kambda.sql import Database, Tx
from kambda.v1.invocation_pb2 import Invocation
from objects import errors
from objects.store import Actor, Change
from objects.store import Store as ObjectStore

log = logging.getLogger(__name__)

KIND = "notification"
#: The bucket config holding the SHA-256 of its external events token.
TOKEN_KIND = "notification-token"
#: The store's methods that commit changes (and so may make notifications).
WRITES = ("put", "copy", "complete", "delete", "set_tags")
NATS_ARN_PREFIX = "arn:kambda:nats:::"
INBOX_PREFIX = bus.S3_INBOX_PREFIX
INBOX_CONSUMER = "s3-inbox"
BATCH = 256
LEASE_S = 10.0
MAX_FILTER_VALUE = 1024
#: An external record's largest size (an invocation carries it; S3's own are about 1 KB).
MAX_RECORD = 128 * 1024
#: The event types S3 accepts in a configuration (botocore's ``Event`` enum); only some ever fire here.
EVENT_TYPES = frozenset(model.service_model("s3").shape_for("Event").enum)
#: EventBridge's detail-type and ``reason`` of each change.
DETAIL_TYPES = {"ObjectCreated": "Object Created", "ObjectRemoved": "Object Deleted",
                "LifecycleExpiration": "Object Deleted", "ObjectTagging:Put": "Object Tags Added",
                "ObjectTagging:Delete": "Object Tags Deleted"}
REASONS = {"ObjectCreated:Put": "PutObject", "ObjectCreated:Post": "POST Object",
           "ObjectCreated:Copy": "CopyObject", "ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
           "ObjectRemoved:Delete": "DeleteObject", "ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
           "LifecycleExpiration:Delete": "Lifecycle Expiration",
           "LifecycleExpiration:DeleteMarkerCreated": "Lifecycle Expiration"}
S3_SERVICE = "s3.amazonaws.com"

SCHEMA = {
    "sqlite": [
        "CREATE TABLE s3_notify_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL,"
        " request_id TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, body BLOB NOT NULL,"
        " created REAL NOT NULL)",
        "CREATE INDEX s3_notify_outbox_request ON s3_notify_outbox (request_id)",
        "CREATE TABLE s3_notify_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL)",
    ],
    "postgresql": [
        "CREATE TABLE s3_notify_outbox (id BIGSERIAL PRIMARY KEY, msg_id TEXT NOT NULL,"
        " request_id TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, body BYTEA NOT NULL,"
        " created DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX s3_notify_outbox_request ON s3_notify_outbox (request_id)",
        "CREATE TABLE s3_notify_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL,"
        " until DOUBLE PRECISION NOT NULL)",
    ],
}

Doc = dict[str, Any]


# -- configuration --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One destination configuration, compiled."""

    kind: str  # "lambda" | "nats"
    arn: str
    id: str
    events: tuple[str, ...]
    prefix: str
    suffix: str

    def wants(self, event: str, key: str) -> bool:
        return any(covers(e, "s3:" + event) for e in self.events) and key.startswith(self.prefix) \
            and key.endswith(self.suffix)


@dataclass(frozen=True)
class Compiled:
    targets: tuple[Target, ...]
    eventbridge: bool


def covers(pattern: str, event: str) -> bool:
    """Whether a configured event type (``s3:ObjectCreated:*``) takes in ``event`` (``s3:ObjectCreated:Put``)."""
    return pattern == event or (pattern.endswith(":*") and event.startswith(pattern[:-1]))


def _share_event(a: Iterable[str], b: Iterable[str]) -> bool:
    return any(covers(x, y) or covers(y, x) for x in a for y in b)


def _invalid(message: str, name: str, value: str | None) -> errors.S3Error:
    return errors.InvalidArgument(message, ArgumentName=name, ArgumentValue=value if value is not None else "null")


def _filter(config: Doc) -> tuple[str, str]:
    rules = ((config.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
    prefix: str | None = None
    suffix: str | None = None
    for rule in rules:
        name, value = str(rule.get("Name") or ""), str(rule.get("Value") or "")
        if len(value) > MAX_FILTER_VALUE:
            raise _invalid("The filter rule value is too long.", "FilterRule", value[:64])
        if name.lower() == "prefix":
            if prefix is not None:
                raise _invalid("Cannot specify more than one prefix rule in a filter.", "FilterRule", name)
            prefix = value
        elif name.lower() == "suffix":
            if suffix is not None:
                raise _invalid("Cannot specify more than one suffix rule in a filter.", "FilterRule", name)
            suffix = value
        else:
            raise _invalid("filter rule name must be either prefix or suffix", "FilterRule", name)
    return prefix or "", suffix or ""


def _overlap(a: Target, b: Target) -> bool:
    return _share_event(a.events, b.events) and (a.prefix.startswith(b.prefix) or b.prefix.startswith(a.prefix)) \
        and (a.suffix.endswith(b.suffix) or b.suffix.endswith(a.suffix))


def compile_config(doc: Doc | None) -> Compiled:
    """The destinations of a stored configuration (one that :func:`validate` accepted)."""
    if not doc:
        return Compiled((), False)
    targets: list[Target] = []
    for section, arn_field in (("LambdaFunctionConfigurations", "LambdaFunctionArn"),
                               ("QueueConfigurations", "QueueArn"), ("TopicConfigurations", "TopicArn")):
        for config in doc.get(section) or []:
            prefix, suffix = _filter(config)
            arn = str(config.get(arn_field) or "")
            kind = "lambda" if section == "LambdaFunctionConfigurations" else "nats"
            targets.append(Target(kind, arn, str(config.get("Id") or ""), tuple(config.get("Events") or ()),
                                  prefix, suffix))
    return Compiled(tuple(targets), "EventBridgeConfiguration" in doc)


def validate(doc: Doc, function_exists: Callable[[str], bool] | None = None) -> Doc:
    """The document to store for a PutBucketNotificationConfiguration: ids given to configurations without
    one; InvalidArgument as S3 words it for an unknown event type, a bad filter, overlapping configurations or a
    destination that cannot be validated (a missing function, an SQS queue or SNS topic)."""
    out: Doc = {}
    unvalidated: list[str] = []
    for section, arn_field in (("LambdaFunctionConfigurations", "LambdaFunctionArn"),
                               ("QueueConfigurations", "QueueArn"), ("TopicConfigurations", "TopicArn")):
        configs = doc.get(section) or []
        if not configs:
            continue
        kept = []
        for config in configs:
            events = list(config.get("Events") or [])
            if not events:
                raise _invalid("The event is not supported for notifications", "Event", None)
            for event in events:
                if event not in EVENT_TYPES:
                    raise _invalid("The event is not supported for notifications", "Event", event)
            _filter(config)
            arn = str(config.get(arn_field) or "")
            if section == "LambdaFunctionConfigurations":
                ok = _function_arn(arn) and (function_exists is None or function_exists(arn))
            else:
                ok = arn.startswith(NATS_ARN_PREFIX) and _subject_ok(arn[len(NATS_ARN_PREFIX):])
            if not ok:
                unvalidated.append(arn)
            kept.append({**config, "Id": str(config.get("Id") or _new_id())})
        out[section] = kept
    if unvalidated:
        raise errors.InvalidArgument("Unable to validate the following destination configurations",
                                     ArgumentName=", ".join(unvalidated),
                                     ArgumentValue="Unable to validate the destination")
    if "EventBridgeConfiguration" in doc and doc["EventBridgeConfiguration"] is not None:
        out["EventBridgeConfiguration"] = {}
    targets = compile_config(out).targets
    for i, a in enumerate(targets):
        for b in targets[i + 1:]:
            if _overlap(a, b):
                raise _invalid("Configurations overlap. Configurations on the same bucket cannot share a common"
                               " event type.", "Event", None)
    return out


def _new_id() -> str:
    return base64.b64encode(str(uuid.uuid4()).encode()).decode().rstrip("=")


def _function_arn(arn: str) -> bool:
    parts = arn.split(":")
    if len(parts) not in (7, 8) or parts[:3] != ["arn", "aws", "lambda"] or parts[5] != "function":
        return False
    try:
        parse_function(arn)
    except kerrors.KambdaError:
        return False
    return True


def _subject_ok(subject: str) -> bool:
    """A subject of the KAMBDA_S3_NOTIFY stream (which keeps what is sent there), without wildcards."""
    return subject.startswith(bus.S3_NOTIFY_PREFIX) and len(subject) > len(bus.S3_NOTIFY_PREFIX) \
        and not any(c in subject for c in " \t\r\n*>") and "" not in subject.split(".")


# -- what is sent ---------------------------------------------------------------------------------------------------

def iso_ms(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def encode_key(key: str) -> str:
    """The key as S3 writes it in an event record (form-urlencoded: "red flower.jpg" is "red+flower.jpg")."""
    return quote_plus(key, safe="/")


def record(change: Change, config_id: str, region: str, account: str) -> Doc:
    """One S3 event record (``Records[i]``) for a destination configuration, in AWS's shape."""
    meta = change.meta
    lifecycle = change.event.startswith("LifecycleExpiration")
    obj: Doc = {"key": encode_key(meta.key)}
    if change.event.startswith(("ObjectCreated", "ObjectTagging")):
        if change.event.startswith("ObjectCreated"):
            obj["size"] = meta.size
        obj["eTag"] = meta.etag.strip('"')
    if meta.version_id and meta.version_id != "null":
        obj["versionId"] = meta.version_id
    if meta.sequencer and not change.event.startswith("ObjectTagging"):
        obj["sequencer"] = meta.sequencer
    actor = change.actor
    principal = S3_SERVICE if lifecycle else (actor.principal if actor else "anonymous")
    ip = S3_SERVICE if lifecycle else (actor.source_ip if actor else "")
    request_id = actor.request_id if actor else ""
    return {
        "eventVersion": "2.3" if lifecycle or change.event.startswith("ObjectTagging") else "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": iso_ms(change.time),
        "eventName": change.event,
        "userIdentity": {"principalId": principal},
        "requestParameters": {"sourceIPAddress": ip},
        "responseElements": {"x-amz-request-id": request_id, "x-amz-id-2": _host_id(request_id)},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": config_id,
            "bucket": {"name": meta.bucket, "ownerIdentity": {"principalId": account},
                       "arn": f"arn:aws:s3:::{meta.bucket}"},
            "object": obj,
        },
    }


def _host_id(request_id: str) -> str:
    return base64.b64encode(request_id.encode()).decode() if request_id else ""


def bridge_event(change: Change, region: str, account: str) -> Doc | None:
    """The ``aws.s3`` EventBridge event of a change, or None for a change EventBridge is not told of."""
    kind = change.event.split(":", 1)[0]
    detail_type = DETAIL_TYPES.get(change.event) or DETAIL_TYPES.get(kind)
    if detail_type is None:
        return None
    meta, actor = change.meta, change.actor
    lifecycle = kind == "LifecycleExpiration"
    obj: Doc = {"key": meta.key}
    if kind == "ObjectCreated":
        obj["size"] = meta.size
    if kind in ("ObjectCreated", "ObjectTagging"):
        obj["etag"] = meta.etag.strip('"')
    if meta.version_id and meta.version_id != "null":
        obj["version-id"] = meta.version_id
    if meta.sequencer and kind != "ObjectTagging":
        obj["sequencer"] = meta.sequencer
    detail: Doc = {"version": "0", "bucket": {"name": meta.bucket}, "object": obj,
                   "request-id": actor.request_id if actor else "",
                   "requester": S3_SERVICE if lifecycle else account}
    if not lifecycle and actor is not None:
        detail["source-ip-address"] = actor.source_ip
    if change.event in REASONS:
        detail["reason"] = REASONS[change.event]
    if detail_type == "Object Deleted":
        detail["deletion-type"] = "Delete Marker Created" if change.event.endswith("DeleteMarkerCreated") \
            else "Permanently Deleted"
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": "aws.s3",
            "account": account, "time": datetime.fromtimestamp(change.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region, "resources": [f"arn:aws:s3:::{meta.bucket}"], "detail": detail}


def external_records(payload: Any) -> list[Doc]:
    """The S3 records of a payload an external store pushed: ``{"Records": [...]}`` (Ceph RGW, AWS) or MinIO's
    ``{"EventName", "Key", "Records": [...]}``; ValueError when it has none."""
    if not isinstance(payload, dict) or not isinstance(payload.get("Records"), list):
        raise ValueError("the body is no {\"Records\": [...]} of S3 event records")
    records = [r for r in payload["Records"] if isinstance(r, dict)]
    for r in records:
        if len(orjson.dumps(r)) > MAX_RECORD:
            raise ValueError(f"an S3 event record is larger than {MAX_RECORD} bytes")
        if not isinstance(r.get("eventName"), str) or not isinstance(((r.get("s3") or {}).get("object") or {})
                                                                         .get("key"), str):
            raise ValueError("an S3 event record has an eventName and s3.object.key")
    return records


def external_event(rec: Doc) -> tuple[str, str]:
    """(event name without ``s3:``, decoded key) of an external record: Ceph and MinIO write ``s3:`` or not."""
    name = str(rec["eventName"])
    return name.removeprefix("s3:"), unquote_plus(str(rec["s3"]["object"]["key"]))


# -- the outbox -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    id: int
    msg_id: str
    kind: str  # "lambda" | "nats" | "events"
    target: str
    body: bytes


Store = Callable[[str, bytes, dict[str, str]], Awaitable[None]]
#: A function ARN to (function, version) to run, None when there is no such function (version, alias).
Resolve = Callable[[str], Awaitable[tuple[str, str] | None]]


class Notifications:
    """The store's ``on_commit`` hook, the outbox's publisher and relay, and the external inbox."""

    def __init__(self, db: Database, nc: NATS, js: JetStreamContext, store_async: Store, resolve: Resolve,
                 arns: Arns, *, grace_s: float = 5.0, poll_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._db, self._nc, self._js = db, nc, js
        self._store_async = store_async
        self._resolve = resolve
        self._arns = arns
        self._grace_s, self._poll_s = grace_s, poll_s
        self._clock = clock
        self._holder = uuid.uuid4().hex
        self._held_until = 0.0
        #: Request ids whose transaction wrote rows (set in the writer thread): a write without one costs nothing.
        self._dirty: set[str] = set()
        self._compiled: dict[str, Compiled] = {}
        self._nudged = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Task[None] | None = None
        #: Set by stop(): nats-py's fetch may swallow a cancellation (it answers a timeout instead), so the loops
        #: also look at this before every round.
        self._stopping = False
        self.published = 0

    async def start(self, relay: bool = True, inbox: bool = True) -> None:
        await self._db.migrate("s3-notifications-1", SCHEMA)
        if relay:
            self._task = asyncio.create_task(self._relay())
        if inbox:
            self._inbox = asyncio.create_task(self._consume_inbox())

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._task, self._inbox):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- configuration ---------------------------------------------------------------------------------------------

    def _compile(self, tx: Tx, bucket: str) -> Compiled:
        """The bucket's configuration as the transaction sees it (objects/store.py's ``s3_configs``)."""
        rows = tx.execute("SELECT doc FROM s3_configs WHERE bucket = ? AND kind = ?", (bucket, KIND))
        if not rows:
            return Compiled((), False)
        raw = str(rows[0][0])
        found = self._compiled.get(raw)
        if found is None:
            if len(self._compiled) > 4096:
                self._compiled.clear()
            found = self._compiled[raw] = compile_config(orjson.loads(raw))
        return found

    # -- the hooks -------------------------------------------------------------------------------------------------

    def attach(self, store: ObjectStore) -> None:
        """Hook into ``store``: :meth:`on_commit` in each change's transaction, and :meth:`publish` once each write
        method returns (before the API layer answers), for every caller of the store (S3's API, POST uploads,
        the lifecycle sweep, whose changes have no request and so go with the relay at once)."""
        store.on_commit = self.on_commit
        for name in WRITES:
            setattr(store, name, self._publishing(getattr(store, name)))

    def _publishing(self, write: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(write)
        async def run(*args: Any, **kwargs: Any) -> Any:
            actor = kwargs.get("actor")
            try:
                result = await write(*args, **kwargs)
            except BaseException:
                # Refused, its rows rolled back; or cut short, maybe committed: then the relay sends them.
                if isinstance(actor, Actor):
                    self._dirty.discard(actor.request_id)
                raise
            if isinstance(actor, Actor):
                await self.publish(actor.request_id)
            else:
                self._nudged.set()
            return result

        return run

    def on_commit(self, tx: Tx, change: Change) -> None:
        """The store's hook: the outbox rows of ``change``, in its transaction."""
        compiled = self._compile(tx, change.meta.bucket)
        if not compiled.targets and not compiled.eventbridge:
            return
        region, account = self._arns.region, self._arns.account
        rows: list[tuple[str, str, bytes]] = []
        for target in compiled.targets:
            if target.wants(change.event, change.meta.key):
                body = {"Records": [record(change, target.id, region, account)]}
                rows.append((target.kind, target.arn, orjson.dumps(body)))
        if compiled.eventbridge:
            event = bridge_event(change, region, account)
            if event is not None:
                rows.append(("events", "default", orjson.dumps(event)))
        self._insert(tx, change.actor.request_id if change.actor else "", rows)

    def _insert(self, tx: Tx, request_id: str, rows: list[tuple[str, str, bytes]], once: bool = False) -> None:
        """``once``: the request is the only one to make these rows (an inbox message, by its stream sequence), so
        their ids derive from it and a redelivered message's notifications are dropped as duplicates."""
        if not rows:
            return
        now = self._clock()
        tx.executemany("INSERT INTO s3_notify_outbox (msg_id, request_id, kind, target, body, created)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       [(f"s3n:{request_id}:{i}" if once else f"s3n:{uuid.uuid4().hex}", request_id, kind, target,
                         body, now) for i, (kind, target, body) in enumerate(rows)])
        if request_id:
            self._dirty.add(request_id)

    # -- publishing ------------------------------------------------------------------------------------------------

    async def publish(self, request_id: str) -> int:
        """Store on JetStream the notifications of the write ``request_id`` made, before it is answered;
        ServiceUnavailable when they could not be (the relay sends them later)."""
        if request_id not in self._dirty:
            return 0
        self._dirty.discard(request_id)
        rows = await self._db.read(lambda tx: _rows(tx, "request_id = ?", (request_id,)))
        try:
            return await self._send(rows)
        except Exception as exc:
            log.warning("S3 notifications of request %s not stored yet (%s): the relay retries", request_id, exc)
            raise errors.ServiceUnavailable("Please reduce your request rate.") from None

    async def publish_all(self) -> int:
        """Every row of no request, and those older than the grace (a write's own publish normally took them)."""
        cutoff = self._clock() - self._grace_s
        total = 0
        while True:
            rows = await self._db.read(lambda tx: _rows(tx, "request_id = '' OR created <= ?", (cutoff,)))
            total += await self._send(rows)
            if len(rows) < BATCH:
                return total

    async def _send(self, rows: list[Row]) -> int:
        done: list[int] = []
        try:
            for row in rows:
                await self._deliver(row)
                done.append(row.id)
        finally:
            if done:
                await self._db.write(lambda tx: tx.executemany("DELETE FROM s3_notify_outbox WHERE id = ?",
                                                               [(i,) for i in done]))
                self.published += len(done)
        return len(done)

    async def _deliver(self, row: Row) -> None:
        headers = {"Nats-Msg-Id": row.msg_id}
        if row.kind == "events":
            await self._js.publish(bus.events_subject(row.target), row.body, stream=bus.EVENTS_STREAM,
                                   headers=headers)
        elif row.kind == "nats":
            await self._js.publish(row.target[len(NATS_ARN_PREFIX):], row.body, stream=bus.S3_NOTIFY_STREAM,
                                   headers=headers)
        else:
            try:
                ref = parse_function(row.target)
                resolved = await self._resolve(row.target)
            except kerrors.ResourceNotFound:
                resolved = None
            except kerrors.KambdaError as exc:  # a user's mistake: it would never go
                log.warning("S3 notification for %s dropped: %s", row.target, exc.message)
                return
            if resolved is None:
                log.warning("S3 notification for %s dropped: no such function", row.target)
                return
            function, version = resolved
            inv = Invocation(request_id=str(uuid.uuid4()), function=function, version=version or LATEST,
                             invoked_arn=self._arns.function(function, ref.qualifier), payload=row.body,
                             invocation_type="Event", enqueued_ms=int(self._clock() * 1000))
            await self._store_async(bus.async_subject(function, version or LATEST), inv.SerializeToString(),
                                    headers)

    async def _relay(self) -> None:
        while not self._stopping:
            try:
                if await self._leased():
                    await self.publish_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the S3 notification relay could not publish (%s); trying again", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), self._poll_s)
            self._nudged.clear()

    async def _leased(self) -> bool:
        now = self._clock()
        if now < self._held_until - LEASE_S / 2:
            return True

        def take(tx: Tx) -> bool:
            rows = tx.execute("SELECT holder, until FROM s3_notify_lease WHERE name = 'relay'")
            if rows and rows[0][0] != self._holder and rows[0][1] > now:
                return False
            tx.execute("DELETE FROM s3_notify_lease WHERE name = 'relay'")
            tx.execute("INSERT INTO s3_notify_lease (name, holder, until) VALUES ('relay', ?, ?)",
                       (self._holder, now + LEASE_S))
            return True

        if await self._db.write(take):
            self._held_until = now + LEASE_S
            return True
        self._held_until = 0.0
        return False

    async def test_event(self, subject: str, bucket: str, request_id: str) -> None:
        """S3's ``s3:TestEvent`` message, which a queue or topic gets when a configuration names it."""
        event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": iso_ms(self._clock()), "Bucket": bucket,
                 "RequestId": request_id, "HostId": _host_id(request_id)}
        await self._js.publish(subject, orjson.dumps(event), stream=bus.S3_NOTIFY_STREAM)

    # -- external object stores ------------------------------------------------------------------------------------

    async def accept_external(self, bucket: str, payload: Any, request_id: str, once: bool = False) -> int:
        """Deliver the records an external store sent for ``bucket`` to the destinations of that bucket's
        configuration; ValueError for a payload with no records. Returns how many notifications went out."""
        records = external_records(payload)

        def match(tx: Tx) -> None:
            compiled = self._compile(tx, bucket)
            rows: list[tuple[str, str, bytes]] = []
            for rec in records:
                event, key = external_event(rec)
                body = orjson.dumps({"Records": [rec]})
                for target in compiled.targets:
                    if target.wants(event, key):
                        rows.append((target.kind, target.arn, body))
            self._insert(tx, request_id, rows, once)

        await self._db.write(match)
        return await self.publish(request_id)

    async def _bind_inbox(self) -> Any:
        """The inbox's durable consumer, once its stream is there (``bus.ensure_platform``, which the controller
        and the worker run, makes it: the gateway may not)."""
        while True:
            try:
                await self._js.add_consumer(bus.S3_INBOX_STREAM, ConsumerConfig(
                    durable_name=INBOX_CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_ack_pending=1024))
                return await self._js.pull_subscribe_bind(INBOX_CONSUMER, bus.S3_INBOX_STREAM)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("the S3 inbox is not there yet (%s); trying again", exc)
                await asyncio.sleep(1.0)

    async def _consume_inbox(self) -> None:
        psub = await self._bind_inbox()
        while not self._stopping:
            try:
                msgs = await psub.fetch(64, timeout=1)
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception as exc:  # NATS reconnecting: try again shortly
                log.warning("S3 inbox fetch failed: %s", exc)
                await asyncio.sleep(1)
                continue
            for msg in msgs:
                await self._inbox_message(msg)

    async def _inbox_message(self, msg: Msg) -> None:
        bucket = msg.subject[len(INBOX_PREFIX):]
        try:
            payload = orjson.loads(msg.data)
            await self.accept_external(bucket, payload, f"inbox-{msg.metadata.sequence.stream}", once=True)
        except ValueError as exc:
            log.warning("dropping an S3 inbox message on %s: %s", msg.subject, exc)
            await msg.term()
            return
        except Exception as exc:
            log.warning("S3 inbox message on %s not delivered yet (%s)", msg.subject, exc)
            await msg.nak(delay=1.0)
            return
        await msg.ack()


def _rows(tx: Tx, where: str, params: tuple[Any, ...]) -> list[Row]:
    found = tx.execute(f"SELECT id, msg_id, kind, target, body FROM s3_notify_outbox WHERE {where}"  # noqa: S608
                       f" ORDER BY id LIMIT {BATCH}", params)
    return [Row(int(r[0]), str(r[1]), str(r[2]), str(r[3]), bytes(r[4])) for r in found]


# -- the S3 operations ----------------------------------------------------------------------------------------------

class NotificationsApi:
    """PutBucketNotificationConfiguration and GetBucketNotificationConfiguration on the front door."""

    def __init__(self, store: ObjectStore, function_exists: Callable[[str], Awaitable[bool]] | None = None,
                 notifications: Notifications | None = None) -> None:
        self._store = store
        self._function_exists = function_exists
        self._notifications = notifications

    def register(self, front: Any) -> None:
        front.register("s3", "PutBucketNotificationConfiguration", self.put, self._resources)
        front.register("s3", "GetBucketNotificationConfiguration", self.get, self._resources)

    @staticmethod
    def _resources(ctx: Any, params: dict[str, Any]) -> list[str]:
        return [f"arn:aws:s3:::{params.get('Bucket', '')}"]

    async def put(self, ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        bucket = params["Bucket"]
        await self._store.bucket(bucket)
        doc = params.get("NotificationConfiguration") or {}
        existing: set[str] = set()
        if self._function_exists is not None and not params.get("SkipDestinationValidation"):
            for config in doc.get("LambdaFunctionConfigurations") or []:
                arn = str(config.get("LambdaFunctionArn") or "")
                if _function_arn(arn) and await self._function_exists(arn):
                    existing.add(arn)
            checked = validate(doc, existing.__contains__)
        else:
            checked = validate(doc)
        await self._store.put_config(bucket, KIND, checked or None)
        if self._notifications is not None:
            # As S3 does for a queue or a topic (not for a function): an s3:TestEvent to each, once configured.
            subjects = {t.arn[len(NATS_ARN_PREFIX):] for t in compile_config(checked).targets if t.kind == "nats"}
            for subject in sorted(subjects):
                await self._notifications.test_event(subject, bucket, ctx.request_id)
        return {}

    async def get(self, ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._store.get_config(params["Bucket"], KIND) or {})


def external_routes(notifications: Notifications, store: ObjectStore) -> list[web.RouteDef]:
    """``POST /_kambda/v1/s3-events/{bucket}``: S3 records an external store pushes (Ceph RGW's HTTP topic
    ``push-endpoint``, MinIO's webhook target), delivered by ``bucket``'s notification configuration. Answers 200
    ``{"delivered": n}`` once they are stored on JetStream (503 otherwise, and the sender retries), 400 for a body
    that holds no records.

    Webhooks cannot sign: besides kambda's usual authentication (SigV4, or unsigned from loopback without
    credentials), the endpoint takes the bucket's own token (``Authorization: Bearer <token>``, which MinIO's
    ``auth_token`` sends, or ``?token=<token>`` in a Ceph topic's push-endpoint URL). ``POST .../{bucket}/token``
    makes a new one (answered once; only its SHA-256 is kept, as the bucket's ``notification-token`` config) and
    ``DELETE .../{bucket}/token`` revokes it."""

    @auth.requires(auth.ITSELF)
    async def accept(request: web.Request) -> web.Response:
        bucket = request.match_info["bucket"]
        await _authenticate_external(request, store, bucket)
        body = await request.read()
        try:
            delivered = await notifications.accept_external(bucket, orjson.loads(body), f"ext-{uuid.uuid4().hex}")
        except ValueError as exc:
            raise kerrors.InvalidParameterValue(f"Not S3 event records: {exc}") from None
        return web.json_response({"delivered": delivered})

    @auth.requires("kambda:PutS3EventsToken")
    async def new_token(request: web.Request) -> web.Response:
        token = secrets.token_urlsafe(32)
        await store.put_config(request.match_info["bucket"], TOKEN_KIND, {"sha256": _digest(token)})
        return web.json_response({"token": token})

    @auth.requires("kambda:PutS3EventsToken")
    async def drop_token(request: web.Request) -> web.Response:
        await store.put_config(request.match_info["bucket"], TOKEN_KIND, None)
        return web.Response(status=204)

    path = "/_kambda/v1/s3-events/{bucket}"
    return [web.post(path, accept), web.post(path + "/token", new_token), web.delete(path + "/token", drop_token)]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _authenticate_external(request: web.Request, store: ObjectStore, bucket: str) -> None:
    header = request.headers.get("Authorization", "")
    given = header[len("Bearer "):].strip() if header.startswith("Bearer ") else request.query.get("token", "")
    if given:
        doc = await store.get_config(bucket, TOKEN_KIND)
        if not isinstance(doc, dict) or not hmac.compare_digest(str(doc.get("sha256", "")), _digest(given)):
            raise kerrors.AccessDenied(f"The token is not the S3 events token of bucket {bucket}")
        return
    credential = await auth.authenticate(request)
    if credential is not auth.LOCAL:  # no credentials configured: whoever may call at all acts as admin
        auth.authorize(request, "kambda:PutS3Events", f"arn:aws:s3:::{bucket}")


def function_checker(resolve: Callable[[str, str | None], Awaitable[Any]]) -> Callable[[str], Awaitable[bool]]:
    """``function_exists`` from a registry's ``resolve(name, qualifier)`` (raising ResourceNotFound)."""

    async def exists(arn: str) -> bool:
        ref = parse_function(arn)
        try:
            await resolve(ref.name, ref.qualifier)
        except kerrors.KambdaError:
            return False
        return True

    return exists


def resolver(resolve: Callable[[str, str | None], Awaitable[Any]]) -> Resolve:
    """:data:`Resolve` from a registry's ``resolve(name, qualifier)`` answering ``.version``."""

    async def run(arn: str) -> tuple[str, str] | None:
        ref = parse_function(arn)
        try:
            resolved = await resolve(ref.name, ref.qualifier)
        except kerrors.ResourceNotFound:
            return None
        return ref.name, str(resolved.version)

    return run

