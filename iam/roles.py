"""Execution roles: their records in the ``kambda_iam`` KV bucket, and what their credentials may do.

A function's environment holds short-lived credentials of its execution role (kambda/aws/roles.py);
the gateway asks :meth:`RolePermissions.permissions_of` what the role's policies allow. A role's
policies are its inline policies (PutRolePolicy) and the managed ones attached to it
(AttachRolePolicy; kambda knows the AWS-managed policies of :data:`MANAGED`), evaluated together as
IAM does: an explicit Deny in any wins, else any Allow allows, else it is denied
(kambda/aws/policy.py). A role that does not exist, or has no policy, grants nothing.

Records are JSON under ``role.<base64url(name)>`` (IAM names allow ``+,@``, which KV keys do not),
written with compare-and-set (:class:`RoleStore`); every gateway keeps a copy that a KV watch
follows (kambda/bus/kvwatch.py), so a policy change reaches every replica within moments.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from kambda import bus
from kambda.aws.policy import Permissions, Policy, PolicyError
from kambda.aws.roles import NOTHING
from kambda.bus import kvwatch
from kambda.bus.kvwatch import KvWatch

Record = dict[str, Any]
KEY_PREFIX = "role."
CAS_RETRIES = 10


def _allow(*actions: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}


#: The AWS-managed policies kambda knows, by ARN, as far as kambda's services go.
MANAGED: dict[str, dict[str, Any]] = {
    "arn:aws:iam::aws:policy/AdministratorAccess": _allow("*"),
    "arn:aws:iam::aws:policy/AWSLambda_FullAccess": _allow("lambda:*", "events:*"),
    "arn:aws:iam::aws:policy/AWSLambda_ReadOnlyAccess": _allow("lambda:Get*", "lambda:List*"),
    "arn:aws:iam::aws:policy/service-role/AWSLambdaRole": _allow("lambda:InvokeFunction"),
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": _allow(
        "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"),
    "arn:aws:iam::aws:policy/AmazonEventBridgeFullAccess": _allow("events:*"),
}


def role_key(name: str) -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _name_of_key(key: str) -> str:
    encoded = key[len(KEY_PREFIX):]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


def name_of_arn(arn: str, account: str) -> str | None:
    """The role name of ``arn:aws:iam::<account>:role/<path>/<name>``; None for another account or kind."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[:3] != ["arn", "aws", "iam"] or parts[4] != account or \
            not parts[5].startswith("role/"):
        return None
    return parts[5].rsplit("/", 1)[-1] or None


def permissions(record: Record) -> Permissions:
    """What a role's policies allow together (documents were checked when they were stored)."""
    documents = [json.loads(text) for text in (record.get("inline") or {}).values()]
    documents += [MANAGED[arn] for arn in record.get("attached") or [] if arn in MANAGED]
    statements = tuple(s for document in documents for s in Policy.parse(document).statements)
    return Permissions((Policy(statements),)) if statements else NOTHING


def check_document(text: str) -> dict[str, Any]:
    """A policy document kambda can evaluate, parsed; PolicyError says what is wrong with it."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise PolicyError(f"the policy is not JSON: {exc}") from None
    Policy.parse(document)
    return document  # type: ignore[no-any-return]


class RoleStore:
    """Role records in the bucket, changed with compare-and-set."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None

    async def kv(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._js.key_value(bus.IAM_BUCKET)
        return self._kv

    async def get(self, name: str) -> Record | None:
        try:
            entry = await (await self.kv()).get(role_key(name))
        except KeyNotFoundError:
            return None
        return json.loads(entry.value) if entry.value else None

    async def create(self, record: Record) -> bool:
        """Store a new role; False when one of that name exists."""
        try:
            await (await self.kv()).create(role_key(record["name"]), json.dumps(record).encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def update(self, name: str, change: Callable[[Record], Record]) -> Record | None:
        """Apply ``change`` to the role's record and store it (retried on a concurrent write); None: no role."""
        kv = await self.kv()
        for _ in range(CAS_RETRIES):
            try:
                entry = await kv.get(role_key(name))
            except KeyNotFoundError:
                return None
            if not entry.value:
                return None
            record = change(json.loads(entry.value))
            try:
                await kv.update(role_key(name), json.dumps(record).encode(), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            return record
        raise RuntimeError(f"role {name} kept changing under {CAS_RETRIES} writes")

    async def delete(self, name: str) -> None:
        await (await self.kv()).delete(role_key(name))

    async def names(self) -> list[str]:
        keys = await kvwatch.keys(self._js, await self.kv())
        return sorted(_name_of_key(k) for k in keys if k.startswith(KEY_PREFIX))


class RolePermissions:
    """Every role's permissions, kept current by a watch of the bucket (one per gateway)."""

    def __init__(self, js: JetStreamContext, account: str) -> None:
        self._account = account
        self._by_key: dict[str, Permissions] = {}
        self._watch = KvWatch(js, bus.IAM_BUCKET, self._apply, "IAM roles")

    async def start(self) -> None:
        await self._watch.start()

    async def stop(self) -> None:
        await self._watch.stop()

    def _apply(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._by_key.pop(key, None)
            return
        try:
            self._by_key[key] = permissions(json.loads(value))
        except (ValueError, PolicyError):
            self._by_key[key] = NOTHING  # not written by kambda: it grants nothing

    def permissions_of(self, role_arn: str) -> Permissions:
        name = name_of_arn(role_arn, self._account)
        return self._by_key.get(role_key(name), NOTHING) if name else NOTHING
