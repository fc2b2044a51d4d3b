"""Who may say what on the bus: one NATS identity per platform component, least privilege each.

nats-server refuses every connection that does not log in as one of these users (there is no
``no_auth_user``), and each user may publish and subscribe only to the subjects listed here. A
function that finds the NATS port can therefore neither read another function's invocations nor
forge results, purge the registry or read code packages.

Each identity has an inbox prefix of its own (``_INBOX.<name>``): its request/reply and JetStream
replies arrive there, and no other identity may subscribe to it. The subjects each component needs
come from its call sites (kambda/bus/__init__.py names them all):

- ``gateway``: publishes invocations (sync and async, PutEvents), JetStream API calls for KV watches
  (registry, aliases, HTTP triggers, event buses), reads code and logs, writes HTTP triggers and Step
  Functions' state machines, executions' first events and callbacks, pulls activity tasks, nudges the
  tables' outbox forwarder (``kambda.tables.outbox``, no payload);
  subscribes to its own inboxes, scale events and invoker stats.
- ``invoker``: pulls its functions' sync consumers (``$JS.API.CONSUMER.MSG.NEXT``) and acks them,
  reads code packages, publishes logs, stats, and results to the gateways' inboxes (and a Step Functions
  task's result to its results stream); answers its
  assignments (``allow_responses``).
- ``controller`` and ``worker``: the leader's work and the stream work (async invokes, event
  routing, event source mappings over any stream or subject a user names), so they may use any
  subject; the worker may not write the registry or the code store, which only the controller does.
- ``admin``: the operator (``kambda`` CLI, tests, the bench): everything.

Adding a component is one entry in :data:`IDENTITIES`. :func:`issue` writes fresh passwords (one
file per identity, mode 0600, in a 0700 directory) at every start: a restart rotates them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kambda.bus import (
    ALIASES_BUCKET,
    ALL_STATS,
    CODE_BUCKET,
    DDB_OUTBOX_SUBJECT,
    FUNCTIONS_BUCKET,
    IMAGE_REPOS_BUCKET,
    IMAGES_BUCKET,
    S3_INBOX_STREAM,
    S3_NOTIFY_PREFIX,
    SFN_ACTIVITIES_STREAM,
    SFN_BUCKET,
    SFN_EXECUTIONS_BUCKET,
    SFN_HISTORY_PREFIX,
    SFN_RESULTS_PREFIX,
    SFN_TOKENS_BUCKET,
    SFN_WORK_PREFIX,
    SYNC_STREAM,
)
from kambda.private import write_private

#: The environment variable naming a component's credentials file.
CREDS_ENV = "KAMBDA_NATS_CREDS"
INBOX_ROOT = "_INBOX"


@dataclass(frozen=True)
class Identity:
    name: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    #: Subjects denied even when an allow above matches (a wildcard).
    deny_publish: tuple[str, ...] = ()
    #: May publish to the reply subject of a message it received (NATS's allow_responses).
    allow_responses: bool = True

    @property
    def inbox_prefix(self) -> str:
        return f"{INBOX_ROOT}.{self.name}"


def inbox(name: str) -> str:
    """The subjects of an identity's inboxes."""
    return f"{INBOX_ROOT}.{name}.>"


#: Reading code packages out of the object store (kambda/bus/chunks.py: direct gets of their meta,
#: an ephemeral pull consumer on their chunks, deleted after the read).
_READ_CODE = (
    f"$JS.API.DIRECT.GET.OBJ_{CODE_BUCKET}.>",
    f"$JS.API.CONSUMER.CREATE.OBJ_{CODE_BUCKET}.>",
    f"$JS.API.CONSUMER.MSG.NEXT.OBJ_{CODE_BUCKET}.>",
    f"$JS.API.CONSUMER.DELETE.OBJ_{CODE_BUCKET}.>",
)
_REGISTRY_WRITES = (f"$KV.{FUNCTIONS_BUCKET}.>", f"$KV.{ALIASES_BUCKET}.>", f"$O.{CODE_BUCKET}.>")

IDENTITIES: dict[str, Identity] = {i.name: i for i in (
    Identity("controller", publish=(">",), subscribe=(">",)),
    Identity("worker", publish=(">",), subscribe=(">",), deny_publish=_REGISTRY_WRITES),
    Identity("gateway", publish=(
        "kambda.sync.>", "kambda.async.>", "kambda.events.>",
        "$JS.API.INFO", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.MSG.GET.>",
        "$JS.API.DIRECT.GET.>", "$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DELETE.>",
        "$JS.API.CONSUMER.INFO.>", "$KV.kambda_http.>", "$KV.kambda_events.>", "$KV.kambda_iam.>", DDB_OUTBOX_SUBJECT,
        f"$JS.API.CONSUMER.MSG.NEXT.OBJ_{CODE_BUCKET}.>",
        # Step Functions (workflows/api.py): state machines and executions, the first event of a history
        # and the step that starts it, callbacks (task tokens), activity workers' long polls.
        f"$KV.{SFN_BUCKET}.>", f"$KV.{SFN_EXECUTIONS_BUCKET}.>", f"$KV.{SFN_TOKENS_BUCKET}.>",
        f"{SFN_HISTORY_PREFIX}>", f"{SFN_WORK_PREFIX}>",
        f"$JS.API.CONSUMER.MSG.NEXT.{SFN_ACTIVITIES_STREAM}.>", f"$JS.ACK.{SFN_ACTIVITIES_STREAM}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{SFN_ACTIVITIES_STREAM}.>",
        # S3 notifications (objects/notifications.py): records to NATS destinations, and the external stores'
        # records (MinIO's NATS target) pulled from their inbox stream.
        f"{S3_NOTIFY_PREFIX}>", f"$JS.API.CONSUMER.MSG.NEXT.{S3_INBOX_STREAM}.>", f"$JS.ACK.{S3_INBOX_STREAM}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{S3_INBOX_STREAM}.>",
        # S3's bytes (objects/store.py): blobs published, read with pulls, purged; the stream made at start.
        "kambda.s3.blob.>", "$JS.API.STREAM.CREATE.KAMBDA_S3", "$JS.API.STREAM.PURGE.KAMBDA_S3",
        "$JS.API.CONSUMER.MSG.NEXT.KAMBDA_S3.>",
        # the image registry (tasks/registry.py): blobs written as they arrive, read back, purged when deleted
        f"$O.{IMAGES_BUCKET}.>", f"$JS.API.CONSUMER.MSG.NEXT.OBJ_{IMAGES_BUCKET}.>",
        f"$JS.API.STREAM.PURGE.OBJ_{IMAGES_BUCKET}", f"$KV.{IMAGE_REPOS_BUCKET}.>",
        # ECS (tasks/api.py): task definitions and clusters, tasks' records, RunTask's work, StopTask's word
        "$KV.kambda_ecs.>", "$KV.kambda_ecs_tasks.>", "kambda.ecs.>",
    ), subscribe=(inbox("gateway"), "kambda.scale.*", ALL_STATS)),
    Identity("invoker", publish=(
        f"$JS.API.CONSUMER.MSG.NEXT.{SYNC_STREAM}.>", f"$JS.ACK.{SYNC_STREAM}.>",
        "kambda.logs.>", ALL_STATS, inbox("gateway"), inbox("controller"), inbox("worker"),
        f"{SFN_RESULTS_PREFIX}>",  # a Step Functions Lambda task's result, kept on its stream
        *_READ_CODE,
    ), subscribe=(inbox("invoker"), "kambda.invoker.*.assign")),
    # A Kubernetes invoker pod before and besides its functions: it hears its assignments and
    # reports its stats; each function version it runs gets a connection with that version's own
    # credential (kambda/bus/callout.py).
    Identity("pod", publish=(ALL_STATS,), subscribe=(inbox("pod"), "kambda.invoker.*.assign")),
    Identity("admin", publish=(">",), subscribe=(">",)),
)}


@dataclass(frozen=True)
class Login:
    """One identity's credentials, as its credentials file holds them."""

    identity: Identity
    password: str = field(repr=False)

    @property
    def user(self) -> str:
        return self.identity.name

    def document(self) -> dict[str, str]:
        return {"user": self.user, "password": self.password, "inbox_prefix": self.identity.inbox_prefix}


def issue(directory: Path, owner: tuple[int, int] | None = None) -> dict[str, Path]:
    """Fresh credentials for every identity, one file each under ``directory`` (0700; files 0600,
    owned by ``owner`` (uid, gid) when given, else by this process); returns the file of each."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    files: dict[str, Path] = {}
    for identity in IDENTITIES.values():
        login = Login(identity, secrets.token_urlsafe(32))
        path = directory / f"{identity.name}.json"
        write_private(path, json.dumps(login.document()), owner)
        files[identity.name] = path
    return files


def read(path: str | Path) -> dict[str, str]:
    """A credentials file's ``user``, ``password`` and ``inbox_prefix``; ValueError names the file."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read NATS credentials {path}: {exc}") from None
    if not isinstance(document, dict) or not all(isinstance(document.get(k), str) for k in ("user", "password")):
        raise ValueError(f"NATS credentials {path} must hold user and password")
    return document


def _quoted(subjects: tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(s) for s in subjects) + "]"


def authorization(logins: Mapping[str, Mapping[str, str]], callout_issuer: str = "") -> str:
    """nats-server's ``authorization`` block for these logins (identity name -> credentials document);
    with ``callout_issuer`` (an account public key), any other login is asked of the auth callout
    (kambda/bus/callout.py), which these users bypass."""
    lines = ["authorization {", "  users = ["]
    for name, document in logins.items():
        identity = IDENTITIES[name]
        publish = f"allow: {_quoted(identity.publish)}"
        if identity.deny_publish:
            publish += f", deny: {_quoted(identity.deny_publish)}"
        lines.append(
            f"    {{user: {json.dumps(document['user'])}, password: {json.dumps(document['password'])}, "
            f"permissions: {{publish: {{{publish}}}, subscribe: {{allow: {_quoted(identity.subscribe)}}}"
            + (", allow_responses: true" if identity.allow_responses else "") + "}}"
        )
    lines.append("  ]")
    if callout_issuer:
        users = _quoted(tuple(document["user"] for document in logins.values()))
        lines.append(f"  auth_callout {{ issuer: {json.dumps(callout_issuer)}, auth_users: {users} }}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def permissions_document() -> dict[str, dict[str, object]]:
    """The identities as the Helm chart reads them (helm/kambda/files/nats-permissions.json, which a
    test keeps equal to this: regenerate it with ``python -m kambda.bus.identities``)."""
    return {name: {"inbox_prefix": i.inbox_prefix, "publish": list(i.publish), "deny_publish": list(i.deny_publish),
                   "subscribe": list(i.subscribe), "allow_responses": i.allow_responses}
            for name, i in IDENTITIES.items()}


if __name__ == "__main__":
    print(json.dumps(permissions_document(), indent=2))
