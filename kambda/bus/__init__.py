"""The NATS bus: names of every stream, bucket and subject, and the JetStream helpers the services share.

Layout (ARCHITECTURE.md, "The three services and the bus"):

- ``KAMBDA_SYNC`` stream, subjects ``kambda.sync.<function>.<version-token>``: the work queue of
  synchronous invocations (memory storage). One durable pull consumer per function version.
- ``kambda_functions`` KV bucket: the registry; key ``<function>`` for $LATEST, ``<function>.<N>``
  for published version N.
- ``kambda_aliases`` KV bucket: aliases, key ``<function>.<alias>``.
- ``kambda_http`` KV bucket: HTTP triggers, written by the gateway with revision-checked updates and
  watched by every gateway replica; keys ``route.<route-id>`` (API-Gateway-style routes) and
  ``url.<url-id>`` (function URL configs), values JSON.
- ``kambda_code`` object store: code packages, named by their sha256 hex digest.
- ``KAMBDA_LOGS`` stream, subjects ``kambda.logs.<function>``: function logs (limits retention).
- ``kambda.invoker.<id>.assign``: controller -> invoker assignments (request/reply).
- ``kambda.invokers.stats.<invoker id>[.<assign key>]``: invoker -> controller stats, on a subject
  of the invoker's own (a Kubernetes pod may publish on its own alone: kambda/bus/callout.py).
- ``kambda.scale.<function>``: controller -> gateways scale events.
- ``KAMBDA_EVENTS`` stream, subjects ``kambda.events.<bus>``: events put on an event bus (file
  storage, a work queue the workers' event router consumes).
- ``kambda_events`` KV bucket: event buses, rules with their targets, and the last fired tick of
  each schedule (events/store.py names the keys).
- ``kambda_iam`` KV bucket: IAM roles and their policies (iam/roles.py), key ``role.<name>``.
- ``kambda_async_attempts`` KV bucket: the failed attempts and throttles of each async event
  being retried (by stream sequence), shared by the worker replicas.
- Step Functions (workflows/): ``kambda_sfn`` KV bucket (state machines, versions, aliases, activities),
  ``kambda_sfn_executions`` KV bucket (one record per execution, the index DescribeExecution and
  ListExecutions read), ``kambda_sfn_tokens`` KV bucket (open task tokens); ``KAMBDA_SFN_HISTORY`` stream,
  subjects ``kambda.sfn.history.<execution-id>`` (each execution's history, appended compare-and-set);
  ``KAMBDA_SFN_WORK`` stream, subjects ``kambda.sfn.work.<execution-id>`` (the work queue of executions that
  need a step, and their durable timers), consumed by the workers' ``sfn-executor``;
  ``KAMBDA_SFN_RESULTS`` stream, subjects ``kambda.sfn.results.<execution-id>.<event-id>`` (what a Lambda task
  returned, published there by the invoker, kept so that a resumed execution never runs the task again);
  ``KAMBDA_SFN_ACTIVITIES`` stream, subjects ``kambda.sfn.activity.<activity-id>`` (tasks waiting for an
  activity worker's GetActivityTask).
- S3 (objects/): ``KAMBDA_S3`` stream, subjects ``kambda.s3.blob.<blob id>`` (the bytes of objects and parts, in
  messages of ``objects.store.CHUNK`` bytes; the metadata and the packed sequence numbers are in SQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from kambda.names import LATEST, subject_token
from kambda.v1.invoker_pb2 import InvokerStats

log = logging.getLogger(__name__)

SYNC_STREAM = "KAMBDA_SYNC"
ASYNC_STREAM = "KAMBDA_ASYNC"
#: The one consumer of every function's asynchronous events, shared by every worker replica.
ASYNC_POLLER = "async-poller"
#: The failed attempts and the throttles of each async event being retried, by stream sequence: a
#: delivery is not an attempt (a throttle, or one that reached a worker as it stopped), and the next
#: delivery may reach another worker. Kept longer than any event may live (a day at most).
ASYNC_ATTEMPTS_BUCKET = "kambda_async_attempts"
ASYNC_ATTEMPTS_TTL_S = 2 * 86400
#: Async payloads are at most 256 KB; the envelope comes on top.
MAX_ASYNC_MESSAGE = 512 * 1024
LOGS_STREAM = "KAMBDA_LOGS"
FUNCTIONS_BUCKET = "kambda_functions"
ALIASES_BUCKET = "kambda_aliases"
CODE_BUCKET = "kambda_code"
#: Container images (tasks/registry.py): blobs and manifests by digest in an object store, each repository's
#: tags and manifests in a KV bucket (one key per repository).
IMAGES_BUCKET = "kambda_images"
IMAGE_REPOS_BUCKET = "kambda_image_repos"
HTTP_BUCKET = "kambda_http"
#: IAM roles with their policies (iam/roles.py), written by the gateway, watched by every gateway.
IAM_BUCKET = "kambda_iam"
STATS_SUBJECT = "kambda.invokers.stats"
#: Every invoker's stats subject (what the controller and the gateways subscribe to).
ALL_STATS = f"{STATS_SUBJECT}.>"
EVENTS_STREAM = "KAMBDA_EVENTS"
EVENTS_BUCKET = "kambda_events"
#: The one consumer of every bus's events, shared by every worker replica.
EVENT_ROUTER = "event-router"
EVENTS_PREFIX = "kambda.events."
#: DynamoDB stream records, forwarded from the tables' outbox by the worker tier (tables/outbox.py), kept a day:
#: ``kambda.ddb.<stream token>.<partition>`` (partition: the item's partition hash mod DDB_PARTITIONS, so that a
#: mapping's parallel batches each take whole partitions and every item's changes stay in order).
DDB_STREAM = "KAMBDA_DDB"
DDB_PREFIX = "kambda.ddb."
DDB_PARTITIONS = 16
#: A core-NATS nudge from the gateway after a write that made stream records: the forwarder wakes up.
DDB_OUTBOX_SUBJECT = "kambda.tables.outbox"
#: S3 notifications (objects/notifications.py): S3 records external stores publish (MinIO's NATS target), per
#: bucket, and the records S3 sends to a NATS subject destination (``arn:kambda:nats:::kambda.s3.notify.<name>``).
S3_INBOX_STREAM = "KAMBDA_S3_INBOX"
S3_INBOX_PREFIX = "kambda.s3.inbox."
S3_NOTIFY_STREAM = "KAMBDA_S3_NOTIFY"
S3_NOTIFY_PREFIX = "kambda.s3.notify."
#: S3's object bytes (objects/store.py): subject ``kambda.s3.blob.<blob id>`` per blob, file storage.
S3_STREAM = "KAMBDA_S3"
S3_BLOB_PREFIX = "kambda.s3.blob."
SFN_BUCKET = "kambda_sfn"
SFN_EXECUTIONS_BUCKET = "kambda_sfn_executions"
SFN_TOKENS_BUCKET = "kambda_sfn_tokens"
SFN_HISTORY_STREAM = "KAMBDA_SFN_HISTORY"
SFN_WORK_STREAM = "KAMBDA_SFN_WORK"
SFN_RESULTS_STREAM = "KAMBDA_SFN_RESULTS"
SFN_ACTIVITIES_STREAM = "KAMBDA_SFN_ACTIVITIES"
SFN_HISTORY_PREFIX = "kambda.sfn.history."
SFN_WORK_PREFIX = "kambda.sfn.work."
SFN_RESULTS_PREFIX = "kambda.sfn.results."
SFN_ACTIVITY_PREFIX = "kambda.sfn.activity."
#: The one consumer of every execution's steps, shared by every worker replica.
SFN_EXECUTOR = "sfn-executor"
#: Closed executions' histories are kept 90 days (AWS keeps them 90 days too).
SFN_RETENTION_S = 90 * 86400
#: NATS max_payload the platform configures: a 6 MB payload plus its envelope must fit.
MAX_PAYLOAD = 8 * 1024 * 1024
#: How long one pull request waits on the server before it expires and is renewed.
PULL_EXPIRES_S = 10.0
#: How long a sync message may sit unacknowledged beyond the function's timeout before redelivery.
ACK_WAIT_MARGIN_S = 30.0
#: One durable consumer per function version lives on the sync stream; nats-server caps a stream
#: that does not say otherwise at 1,000 consumers, so the stream says how many functions it serves.
MAX_FUNCTION_VERSIONS = 100_000


def sync_subject(function: str, version: str) -> str:
    return f"kambda.sync.{function}.{subject_token(version)}"


def async_subject(function: str, version: str) -> str:
    return f"kambda.async.{function}.{subject_token(version)}"


def consumer_name(function: str, version: str) -> str:
    return f"{function}__{subject_token(version)}"


def version_key(function: str, version: str) -> str:
    """A function version's key in the functions bucket (names never contain a dot)."""
    return function if version == LATEST else f"{function}.{version}"


def alias_key(function: str, alias: str) -> str:
    return f"{function}.{alias}"


def split_key(key: str) -> tuple[str, str]:
    """(function, version or alias) of a registry key; a bare function name is its $LATEST."""
    function, _, rest = key.partition(".")
    return function, rest or LATEST


def sfn_history_subject(execution_id: str) -> str:
    return SFN_HISTORY_PREFIX + execution_id


def sfn_work_subject(execution_id: str) -> str:
    return SFN_WORK_PREFIX + execution_id


def sfn_result_subject(execution_id: str, event_id: int) -> str:
    return f"{SFN_RESULTS_PREFIX}{execution_id}.{event_id}"


def sfn_activity_subject(activity_id: str) -> str:
    return SFN_ACTIVITY_PREFIX + activity_id


def logs_subject(function: str) -> str:
    return f"kambda.logs.{function}"


def events_subject(event_bus: str) -> str:
    return EVENTS_PREFIX + event_bus


def assign_subject(invoker_id: str, key: str = "") -> str:
    """Where an invoker hears its assignments; with ``key`` (its own random one, Kubernetes with
    per-function credentials) a subject no other pod can subscribe to."""
    return f"kambda.invoker.{invoker_id}.{key}.assign" if key else f"kambda.invoker.{invoker_id}.assign"


def stats_subject(invoker_id: str, key: str = "") -> str:
    """Where an invoker publishes its stats: its own subject (with ``key``, its assignment key)."""
    return f"{STATS_SUBJECT}.{invoker_id}.{key}" if key else f"{STATS_SUBJECT}.{invoker_id}"


def stats_sender(subject: str) -> tuple[str, str] | None:
    """(invoker id, assignment key) a stats subject names; None for any other subject."""
    prefix = STATS_SUBJECT + "."
    if not subject.startswith(prefix):
        return None
    parts = subject[len(prefix):].split(".")
    if len(parts) not in (1, 2) or not all(parts):
        return None
    return parts[0], parts[1] if len(parts) == 2 else ""


def stats_of(msg: Msg) -> InvokerStats | None:
    """The stats a message carries, if they are of the invoker whose subject they came on (NATS
    permissions say who may publish there); None for a malformed report or one about another."""
    sender = stats_sender(msg.subject)
    try:
        stats = InvokerStats.FromString(msg.data)
    except Exception:  # noqa: BLE001 - a malformed report is ignored
        return None
    if sender is None or sender != (stats.invoker_id, stats.assign_key):
        return None
    return stats


def scale_subject(function: str) -> str:
    return f"kambda.scale.{function}"


class ConnectionWatch:
    """What happened to one service's NATS connection: every loss is a WARNING with its reason,
    is counted (``disconnects``, exported as ``kambda_nats_disconnects_total``), and is told to the
    listeners (a dispatcher fails the requests whose results can no longer reach it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.disconnects = 0
        self.last_error = ""
        self.listeners: list[Callable[[str], None]] = []
        self.nc: NATS | None = None
        self.chained: dict[str, Callable[..., Awaitable[None]]] = {}

    async def error(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log.warning("NATS connection of %s: %s", self.name, self.last_error)
        if "error_cb" in self.chained:
            await self.chained["error_cb"](exc)

    async def disconnected(self) -> None:
        if "disconnected_cb" in self.chained:
            await self.chained["disconnected_cb"]()
        if self.nc is not None and (self.nc.is_closed or self.nc.is_draining):
            return  # this service is shutting down: closing is no loss
        self.disconnects += 1
        reason = self.last_error or "closed by the server"
        self.last_error = ""
        log.warning("NATS connection of %s lost (%s); reconnecting", self.name, reason)
        for listener in list(self.listeners):
            try:
                listener(reason)
            except Exception:
                log.exception("a listener of %s's disconnect failed", self.name)

    async def reconnected(self) -> None:
        log.warning("NATS connection of %s is back", self.name)
        if "reconnected_cb" in self.chained:
            await self.chained["reconnected_cb"]()


_watches: weakref.WeakKeyDictionary[NATS, ConnectionWatch] = weakref.WeakKeyDictionary()


def watch_of(nc: NATS) -> ConnectionWatch | None:
    """The watch of a connection made by :func:`connect` (None for one made otherwise)."""
    return _watches.get(nc)


def login_options(creds: str) -> dict[str, object]:
    """How to log in with the credentials file ``creds``: kambda's own JSON login (user, password,
    inbox prefix: kambda/bus/identities.py), or a NATS ``.creds`` file (a user JWT and its nkey seed,
    as an external NATS's operator hands them out), told apart by what the file holds."""
    from kambda.bus import identities

    try:
        head = Path(creds).read_text()[:4096].lstrip()
    except OSError as exc:
        raise ValueError(f"cannot read NATS credentials {creds}: {exc.strerror or exc}") from None
    if not head.startswith("{"):
        if "BEGIN NATS USER JWT" not in head:
            raise ValueError(f"NATS credentials {creds} are neither a JSON login nor a .creds file")
        return {"user_credentials": creds}
    login = identities.read(creds)
    return {"user": login["user"], "password": login["password"],
            **({"inbox_prefix": login["inbox_prefix"]} if login.get("inbox_prefix") else {})}


async def connect(url: str, name: str, creds: str = "", **options: object) -> NATS:
    """Connect with the reconnect behaviour every kambda service wants, logged in with the
    credentials file ``creds`` names (:func:`login_options`; empty: anonymous); losses are logged
    and counted."""
    if creds:
        options = {**login_options(creds), **options}
    watch = ConnectionWatch(name)
    # A caller's own callbacks hear of it too (tests watch for permission violations and reconnects).
    watch.chained = {key: cast(Callable[..., Awaitable[None]], options.pop(key))
                     for key in ("error_cb", "disconnected_cb", "reconnected_cb") if key in options}
    nc = await nats.connect(
        servers=[url],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=watch.error,
        disconnected_cb=watch.disconnected,
        reconnected_cb=watch.reconnected,
        **options,  # type: ignore[arg-type]
    )
    watch.nc = nc
    _watches[nc] = watch
    return nc


async def drain(nc: NATS) -> None:
    """Drain a service's connection on shutdown; one that is down already (the server stopped first,
    or is restarting) is closed instead, with a line in the log rather than a traceback."""
    try:
        await nc.drain()
    except (nats.errors.ConnectionReconnectingError, nats.errors.ConnectionClosedError,
            nats.errors.FlushTimeoutError, TimeoutError) as exc:
        log.info("NATS connection not drained (%s): closed", type(exc).__name__)
        with contextlib.suppress(Exception):
            await nc.close()


def ddb_stream_token(table: str, label: str) -> str:
    """The subject token of one table's stream (a table name may hold dots, which NATS reads as separators)."""
    return hashlib.sha1(f"{table}/{label}".encode()).hexdigest()[:20]  # noqa: S324 - a name, not security


def ddb_subject(table: str, label: str, partition: int | str) -> str:
    return f"{DDB_PREFIX}{ddb_stream_token(table, label)}.{partition}"


async def ensure_platform(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the streams and buckets the platform needs (idempotent).

    ``replicas``: how many servers of a NATS cluster keep each of them (JetStream's Raft
    replication; 3 survives the loss of one server). Streams and buckets made with another count
    are changed to this one, so a platform moved onto a 3-server NATS keeps its data and gains
    the replicas."""
    await _ensure_stream(js, StreamConfig(
        name=SYNC_STREAM,
        num_replicas=replicas,
        subjects=["kambda.sync.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.MEMORY,
        max_msg_size=MAX_PAYLOAD,
        max_bytes=1024 * 1024 * 1024,
        discard=DiscardPolicy.NEW,
        max_consumers=MAX_FUNCTION_VERSIONS,
    ))
    await _ensure_stream(js, StreamConfig(
        name=ASYNC_STREAM,
        num_replicas=replicas,
        subjects=["kambda.async.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,  # an accepted event survives any restart
        max_msg_size=MAX_ASYNC_MESSAGE,
        max_bytes=4 * 1024 * 1024 * 1024,
        discard=DiscardPolicy.NEW,
    ))
    await _ensure_stream(js, StreamConfig(
        name=LOGS_STREAM,
        num_replicas=replicas,
        subjects=["kambda.logs.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * 24 * 3600,
        max_bytes=512 * 1024 * 1024,
        max_msgs_per_subject=10_000,
        discard=DiscardPolicy.OLD,
    ))
    await _ensure_stream(js, StreamConfig(
        name=EVENTS_STREAM,
        num_replicas=replicas,
        subjects=[EVENTS_PREFIX + ">"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_msg_size=MAX_ASYNC_MESSAGE,
        max_bytes=1024 * 1024 * 1024,
        discard=DiscardPolicy.NEW,
    ))
    await _ensure_stream(js, StreamConfig(
        name=DDB_STREAM,
        num_replicas=replicas,
        subjects=[DDB_PREFIX + ">"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,  # a forwarded record is deleted from the outbox: JetStream keeps it now
        max_age=24 * 3600,
        max_msg_size=MAX_ASYNC_MESSAGE * 2,
        max_bytes=4 * 1024 * 1024 * 1024,
        duplicate_window=120,
        discard=DiscardPolicy.OLD,
    ))
    await _ensure_stream(js, StreamConfig(
        name=S3_INBOX_STREAM,
        num_replicas=replicas,
        subjects=[S3_INBOX_PREFIX + ">"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_msg_size=MAX_ASYNC_MESSAGE,
        max_bytes=256 * 1024 * 1024,
        discard=DiscardPolicy.NEW,
    ))
    await _ensure_stream(js, StreamConfig(
        name=S3_NOTIFY_STREAM,
        num_replicas=replicas,
        subjects=[S3_NOTIFY_PREFIX + ">"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * 24 * 3600,
        max_msg_size=MAX_ASYNC_MESSAGE,
        max_bytes=1024 * 1024 * 1024,
        discard=DiscardPolicy.OLD,
    ))
    await _ensure_workflows(js, replicas)
    for bucket in (FUNCTIONS_BUCKET, ALIASES_BUCKET, HTTP_BUCKET, EVENTS_BUCKET, IAM_BUCKET):
        if not await _reconcile(js, f"KV_{bucket}", replicas):
            await js.create_key_value(bucket=bucket, history=1, storage=StorageType.FILE, replicas=replicas)
    if not await _reconcile(js, f"KV_{ASYNC_ATTEMPTS_BUCKET}", replicas):
        await js.create_key_value(bucket=ASYNC_ATTEMPTS_BUCKET, history=1, storage=StorageType.FILE,
                                  replicas=replicas, ttl=ASYNC_ATTEMPTS_TTL_S)
    if not await _reconcile(js, f"OBJ_{CODE_BUCKET}", replicas):
        await js.create_object_store(CODE_BUCKET, config=ObjectStoreConfig(
            bucket=CODE_BUCKET, storage=StorageType.FILE, replicas=replicas))
    if not await _reconcile(js, f"OBJ_{IMAGES_BUCKET}", replicas):
        await js.create_object_store(IMAGES_BUCKET, config=ObjectStoreConfig(
            bucket=IMAGES_BUCKET, storage=StorageType.FILE, replicas=replicas))
    if not await _reconcile(js, f"KV_{IMAGE_REPOS_BUCKET}", replicas):
        await js.create_key_value(bucket=IMAGE_REPOS_BUCKET, history=1, storage=StorageType.FILE, replicas=replicas)


async def _ensure_workflows(js: JetStreamContext, replicas: int) -> None:
    """Step Functions' streams and buckets: everything an execution needs to survive any restart is file-backed."""
    await _ensure_stream(js, StreamConfig(
        name=SFN_HISTORY_STREAM, num_replicas=replicas, subjects=[SFN_HISTORY_PREFIX + ">"],
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, max_age=SFN_RETENTION_S,
        max_msg_size=MAX_ASYNC_MESSAGE * 2, max_msgs_per_subject=-1, discard=DiscardPolicy.NEW,
        duplicate_window=300, allow_direct=True,  # a history is read back in one batched direct get
    ))
    await _ensure_stream(js, StreamConfig(
        name=SFN_WORK_STREAM, num_replicas=replicas, subjects=[SFN_WORK_PREFIX + ">"],
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE, max_msg_size=MAX_ASYNC_MESSAGE * 2,
        discard=DiscardPolicy.NEW, duplicate_window=300,
    ))
    await _ensure_stream(js, StreamConfig(
        name=SFN_RESULTS_STREAM, num_replicas=replicas, subjects=[SFN_RESULTS_PREFIX + ">"],
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, max_age=7 * 86400,
        max_msg_size=MAX_PAYLOAD, discard=DiscardPolicy.OLD, allow_direct=True,
    ))
    await _ensure_stream(js, StreamConfig(
        name=SFN_ACTIVITIES_STREAM, num_replicas=replicas, subjects=[SFN_ACTIVITY_PREFIX + ">"],
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE, max_msg_size=MAX_ASYNC_MESSAGE * 2,
        discard=DiscardPolicy.NEW, max_consumers=MAX_FUNCTION_VERSIONS,
    ))
    for bucket in (SFN_BUCKET, SFN_EXECUTIONS_BUCKET, SFN_TOKENS_BUCKET):
        if not await _reconcile(js, f"KV_{bucket}", replicas):
            await js.create_key_value(bucket=bucket, history=1, storage=StorageType.FILE, replicas=replicas)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    if not await _reconcile(js, config.name or "", config.num_replicas or 1, config.max_consumers):
        await js.add_stream(config)


async def _reconcile(js: JetStreamContext, stream: str, replicas: int, max_consumers: int | None = None) -> bool:
    """Bring an existing stream (a bucket's too: ``KV_<bucket>``, ``OBJ_<bucket>``) to these settings;
    False when there is no such stream."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return False
    changes: dict[str, object] = {}
    if max_consumers and info.config.max_consumers != max_consumers:
        changes["max_consumers"] = max_consumers
    if (info.config.num_replicas or 1) != replicas:
        changes["num_replicas"] = replicas
    if changes:
        await js.update_stream(info.config.evolve(**changes))
    return True


async def ensure_consumer(js: JetStreamContext, function: str, version: str, timeout_s: int) -> None:
    """Create or update the pull consumer of a function version's sync queue.

    The ack wait is above the function's timeout, so a long run is never redelivered while it
    runs (a message that is redelivered anyway is dropped once its start deadline has passed).
    """
    await js.add_consumer(SYNC_STREAM, ConsumerConfig(
        durable_name=consumer_name(function, version),
        filter_subject=sync_subject(function, version),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=timeout_s + ACK_WAIT_MARGIN_S,
        max_ack_pending=-1,
        max_waiting=4096,
    ))


async def delete_consumer(js: JetStreamContext, function: str, version: str) -> None:
    try:
        await js.delete_consumer(SYNC_STREAM, consumer_name(function, version))
    except NotFoundError:
        pass


class Puller:
    """Pulls a function's sync queue one message per free execution environment.

    Hand-rolled rather than nats-py's ``fetch`` (ARCHITECTURE.md measures why): each free slot
    holds one ``$JS.API.CONSUMER.MSG.NEXT`` request with this puller's inbox as reply, and when a
    slot finishes, its ack and its next pull go out as one ``+NXT`` message. ``free`` counts the
    slots ready for work; the puller keeps that many pull requests outstanding (kambda/bus/flow.py):
    a pull asks for one message of at most ``SMALL_MESSAGE_BYTES``; after the server said the next
    one is larger, one pull asks for at most ``MAX_PAYLOAD``, without waiting on the server, and
    only while the connection's byte budget has room for it. Each kind of pull has its own reply
    subject, so an answer tells which kind it ends.
    """

    def __init__(
        self,
        nc: NATS,
        stream: str,
        consumer: str,
        on_message: Callable[[Msg], Awaitable[None]],
        expires_s: float = PULL_EXPIRES_S,
    ) -> None:
        from kambda.bus import flow  # flow needs this module's constants

        self._nc = nc
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        #: What each kind of pull reserves from the connection's budget: a small pull is bounded by
        #: its max_bytes alone (one per free slot, thousands on an invoker of many functions).
        self._sizes = {"s": 0, "b": MAX_PAYLOAD}
        # A large pull does not wait on the server: holding its bytes for a message that may never
        # come would starve the small pulls of every other function on this connection.
        self._requests = {kind: json.dumps(request).encode() for kind, request in (
            ("s", {"batch": 1, "expires": int(expires_s * 1e9), "max_bytes": flow.SMALL_MESSAGE_BYTES}),
            ("b", {"batch": 1, "max_bytes": MAX_PAYLOAD, "no_wait": True}))}
        self._budget = flow.budget_of(nc)
        self._on_message = on_message
        self._inbox = nc.new_inbox()
        self._sub: object | None = None
        self._stopped = False
        self._expires_s = expires_s
        self.free = 0
        self.outstanding = 0
        #: Large messages the server said are next: that many pulls ask for MAX_PAYLOAD.
        self._large = 0
        #: When each outstanding pull went out, by kind, oldest first (answers come in that order).
        self._issued: dict[str, deque[float]] = {"s": deque(), "b": deque()}
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._receive)
        self._sweeper = asyncio.get_running_loop().call_later(self._expires_s, self._sweep)

    def _sweep(self) -> None:
        """A pull the server never answered, not even with its expiry (it lost the pull request in a
        restart, say), is written off: it no longer counts as outstanding nor holds bytes."""
        lost_before = time.monotonic() - 2 * self._expires_s - 1.0
        for kind, issued in self._issued.items():
            while issued and issued[0] < lost_before:
                issued.popleft()
                self._ended(kind)
        if not self._stopped:
            self._sweeper = asyncio.get_running_loop().call_later(self._expires_s, self._sweep)
            asyncio.ensure_future(self._top_up())

    def _ended(self, kind: str) -> None:
        self.outstanding = max(0, self.outstanding - 1)
        if kind == "b":
            self._large = max(0, self._large - 1)
        if self._sizes.get(kind):
            self._budget.give(self._sizes[kind])

    async def stop(self) -> None:
        """Stop pulling. Pull requests already sent stay valid on the server until they expire, and
        a message delivered to one must not sit unacknowledged until its ack wait runs out: the
        inbox stays subscribed that long and gives every such message straight back."""
        if self._stopped:
            return
        self._stopped = True
        self.free = 0
        self._budget.forget(self)
        if self._sweeper is not None:
            self._sweeper.cancel()
        sub = self._sub
        if sub is not None and self.outstanding:
            asyncio.get_running_loop().call_later(self._expires_s + 1.0,
                                                  lambda: asyncio.ensure_future(self._unsubscribe(sub)))
        elif sub is not None:
            await self._unsubscribe(sub)

    async def _unsubscribe(self, sub: object) -> None:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()  # type: ignore[attr-defined]

    async def add_free(self, n: int = 1) -> None:
        """``n`` slots became free (or, negative, stopped being free)."""
        self.free += n
        await self._top_up()

    def _reserve(self) -> str | None:
        """Reserve the next pull's bytes: its kind ("s" or "b"), or None (woken when bytes come back)."""
        kind = "b" if self._large > 0 else "s"
        if not self._sizes[kind] or self._budget.try_take(self._sizes[kind]):
            return kind
        self._budget.wait(self, self._wake)
        return None

    def _wake(self) -> None:
        asyncio.ensure_future(self._top_up())

    async def _top_up(self) -> None:
        while not self._stopped and self._sub is not None and self.outstanding < self.free:
            kind = self._reserve()
            if kind is None:
                return
            self.outstanding += 1
            self._issued[kind].append(time.monotonic())
            await self._nc.publish(self._next_subject, self._requests[kind], reply=f"{self._inbox}.{kind}")

    async def _receive(self, msg: Msg) -> None:
        kind = msg.subject.rsplit(".", 1)[1]
        status = msg.headers.get("Status") if msg.headers else None
        if status == "100":
            return  # a heartbeat: the pull is still outstanding
        # Any other answer ends one pull request: its reservation goes back (a message that came
        # is in this process now, no longer queued for it on the server).
        issued = self._issued.get(kind)
        if issued:  # else written off by the sweep already (or not one of this puller's subjects)
            issued.popleft()
            self._ended(kind)
        if status is not None:
            # 404/408: the pull request ended without a message; 409: the server refused it
            # (the next message is larger than it asked for; consumer deleted, too many waiting).
            description = msg.headers.get("Description", "") if msg.headers else ""
            if status == "409" and "MaxBytes" in description:
                self._large += 1
                await self._top_up()
            elif status in ("404", "408") or (status == "409" and "Batch Completed" in description):
                await self._top_up()  # the pull ended (nothing came, or its byte budget was filled): pull again
            else:
                log.warning("pull on %s refused: %s %s", self._next_subject, status, description)
            return
        if self._stopped or self.free <= 0:
            await nak(self._nc, msg)
            return
        self.free -= 1
        await self._on_message(msg)

    async def done(self, msg: Msg, free_again: bool) -> None:
        """Acknowledge a finished message; if its slot is free again, pull the next in the same write."""
        if free_again:
            self.free += 1
        kind = None
        if free_again and not self._stopped and self._sub is not None and self.outstanding < self.free:
            kind = self._reserve()
        if kind is not None:
            self.outstanding += 1
            self._issued[kind].append(time.monotonic())
            await self._nc.publish(msg.reply, b"+NXT " + self._requests[kind], reply=f"{self._inbox}.{kind}")
        else:
            await self._nc.publish(msg.reply, b"+ACK")
        await self._top_up()


async def nak(nc: NATS, msg: Msg) -> None:
    """Give a message back for immediate redelivery (it was never started)."""
    await nc.publish(msg.reply, b"-NAK")


async def term(nc: NATS, msg: Msg) -> None:
    """Drop a message for good (its deadline passed, or it cannot be decoded)."""
    await nc.publish(msg.reply, b"+TERM")


async def nak_after(nc: NATS, msg: Msg, delay_s: float) -> None:
    """Give a message back, to be redelivered no sooner than ``delay_s`` from now (a retry)."""
    await nc.publish(msg.reply, b"-NAK " + json.dumps({"delay": int(delay_s * 1e9)}).encode())
