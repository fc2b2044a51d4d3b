"""IAM's role operations, served through the front door (Query protocol, ``boto3.client("iam")``).

CreateRole, GetRole, ListRoles, DeleteRole; inline policies (PutRolePolicy, GetRolePolicy,
ListRolePolicies, DeleteRolePolicy); managed policies (AttachRolePolicy, DetachRolePolicy,
ListAttachedRolePolicies: the AWS-managed ones of iam/roles.py MANAGED, kambda has no customer
managed policies). A policy document is checked when it is stored: one kambda cannot evaluate (a
Condition, a NotAction) is MalformedPolicyDocument, not silently widened or narrowed. As on AWS, a
role with policies cannot be deleted (DeleteConflict), and policy documents come back URL-encoded
(boto3 decodes them). Each operation is authorized as ``iam:<Operation>`` on the role's ARN.
"""

from __future__ import annotations

import secrets
import string
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from iam.roles import MANAGED, Record, RoleStore, check_document
from kambda.aws import errors
from kambda.aws.front import Context, Front
from kambda.aws.policy import PolicyError

MAX_ROLE_NAME = 64
MAX_POLICY_NAME = 128
_NAME_CHARS = set(string.ascii_letters + string.digits + "+=,.@_-")


class NoSuchEntity(errors.KambdaError):
    code = "NoSuchEntity"
    status = 404
    error_type = "Sender"


class EntityAlreadyExists(errors.KambdaError):
    code = "EntityAlreadyExists"
    status = 409
    error_type = "Sender"


class MalformedPolicyDocument(errors.KambdaError):
    code = "MalformedPolicyDocument"
    status = 400
    error_type = "Sender"


class DeleteConflict(errors.KambdaError):
    code = "DeleteConflict"
    status = 409
    error_type = "Sender"


class InvalidInput(errors.KambdaError):
    code = "InvalidInput"
    status = 400
    error_type = "Sender"


def _name(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not set(value) <= _NAME_CHARS:
        raise errors.Validation(f"1 validation error detected: Value {value!r} at '{what}' failed to satisfy "
                                f"constraint: Member must have length 1..{limit} and match [\\w+=,.@-]+")
    return value


def _document(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedPolicyDocument(f"{what} is not a policy document")
    try:
        check_document(value)
    except PolicyError as exc:
        raise MalformedPolicyDocument(f"{what}: {exc}") from None
    return value


class IamApi:
    def __init__(self, store: RoleStore, account: str, clock: Any = None) -> None:
        self._store = store
        self._account = account
        self._now = clock or (lambda: datetime.now(UTC))

    def arn(self, name: str, path: str = "/") -> str:
        return f"arn:aws:iam::{self._account}:role{path}{name}"

    def register(self, front: Front) -> None:
        def on_role(ctx: Context, params: dict[str, Any]) -> list[str]:
            return [self.arn(str(params.get("RoleName", "")), str(params.get("Path") or "/"))]

        for operation, handler in (
                ("CreateRole", self.create_role), ("GetRole", self.get_role), ("DeleteRole", self.delete_role),
                ("PutRolePolicy", self.put_role_policy), ("GetRolePolicy", self.get_role_policy),
                ("DeleteRolePolicy", self.delete_role_policy), ("ListRolePolicies", self.list_role_policies),
                ("AttachRolePolicy", self.attach_role_policy), ("DetachRolePolicy", self.detach_role_policy),
                ("ListAttachedRolePolicies", self.list_attached_role_policies)):
            front.register("iam", operation, handler, resources=on_role)
        front.register("iam", "ListRoles", self.list_roles,
                       resources=lambda ctx, params: [self.arn("*")])

    def _shape(self, record: Record) -> dict[str, Any]:
        role = {"Path": record["path"], "RoleName": record["name"], "RoleId": record["id"], "Arn": record["arn"],
                "CreateDate": datetime.fromisoformat(record["created"]),
                "AssumeRolePolicyDocument": urllib.parse.quote(record["trust"]),
                "MaxSessionDuration": record.get("max_session", 3600)}
        if record.get("description"):
            role["Description"] = record["description"]
        return role

    async def _role(self, params: dict[str, Any]) -> Record:
        name = _name(params.get("RoleName"), "roleName", MAX_ROLE_NAME)
        record = await self._store.get(name)
        if record is None:
            raise NoSuchEntity(f"The role with name {name} cannot be found.")
        return record

    async def _change(self, params: dict[str, Any], change: Any) -> Record:
        name = _name(params.get("RoleName"), "roleName", MAX_ROLE_NAME)
        record = await self._store.update(name, change)
        if record is None:
            raise NoSuchEntity(f"The role with name {name} cannot be found.")
        return record

    async def create_role(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params.get("RoleName"), "roleName", MAX_ROLE_NAME)
        path = str(params.get("Path") or "/")
        if not (path.startswith("/") and path.endswith("/")):
            raise errors.Validation("The specified value for path is invalid. It must begin and end with / "
                                    "and contain only alphanumeric characters and/or / characters.")
        trust = params.get("AssumeRolePolicyDocument")
        if not isinstance(trust, str):
            raise MalformedPolicyDocument("AssumeRolePolicyDocument is not a policy document")
        record: Record = {
            "name": name, "path": path, "arn": self.arn(name, path),
            "id": "AROA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(17)),
            "created": self._now().isoformat(), "trust": trust, "description": params.get("Description") or "",
            "max_session": int(params.get("MaxSessionDuration") or 3600), "inline": {}, "attached": []}
        if not await self._store.create(record):
            raise EntityAlreadyExists(f"Role with name {name} already exists.")
        return {"Role": self._shape(record)}

    async def get_role(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {"Role": self._shape(await self._role(params))}

    async def list_roles(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        prefix = str(params.get("PathPrefix") or "/")
        found = [await self._store.get(name) for name in await self._store.names()]
        return {"Roles": [self._shape(r) for r in found if r is not None and r["path"].startswith(prefix)],
                "IsTruncated": False}

    async def delete_role(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._role(params)
        if record["inline"] or record["attached"]:
            raise DeleteConflict("Cannot delete entity, must delete policies first."
                                 if record["inline"] else "Cannot delete entity, must detach all policies first.")
        await self._store.delete(record["name"])
        return {}

    async def put_role_policy(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        policy = _name(params.get("PolicyName"), "policyName", MAX_POLICY_NAME)
        document = _document(params.get("PolicyDocument"), "PolicyDocument")

        def put(record: Record) -> Record:
            record["inline"][policy] = document
            return record

        await self._change(params, put)
        return {}

    async def get_role_policy(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._role(params)
        policy = _name(params.get("PolicyName"), "policyName", MAX_POLICY_NAME)
        if policy not in record["inline"]:
            raise NoSuchEntity(f"The role policy with name {policy} cannot be found.")
        return {"RoleName": record["name"], "PolicyName": policy,
                "PolicyDocument": urllib.parse.quote(record["inline"][policy])}

    async def delete_role_policy(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        policy = _name(params.get("PolicyName"), "policyName", MAX_POLICY_NAME)
        await self._role(params)
        missing: list[bool] = []

        def drop(record: Record) -> Record:
            missing[:] = [record["inline"].pop(policy, None) is None]
            return record

        await self._change(params, drop)
        if missing and missing[0]:
            raise NoSuchEntity(f"The role policy with name {policy} cannot be found.")
        return {}

    async def list_role_policies(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {"PolicyNames": sorted((await self._role(params))["inline"]), "IsTruncated": False}

    async def attach_role_policy(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("PolicyArn")
        if not isinstance(arn, str) or not arn.startswith("arn:aws:iam::"):
            raise InvalidInput(f"ARN {arn} is not valid.")
        if arn not in MANAGED:
            raise NoSuchEntity(f"Policy {arn} does not exist or is not attachable.")

        def attach(record: Record) -> Record:
            if arn not in record["attached"]:
                record["attached"].append(arn)
            return record

        await self._change(params, attach)
        return {}

    async def detach_role_policy(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("PolicyArn")
        if arn not in (await self._role(params))["attached"]:
            raise NoSuchEntity(f"Policy {arn} was not found.")

        def detach(record: Record) -> Record:
            record["attached"] = [a for a in record["attached"] if a != arn]
            return record

        await self._change(params, detach)
        return {}

    async def list_attached_role_policies(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        attached = (await self._role(params))["attached"]
        return {"AttachedPolicies": [{"PolicyName": arn.rsplit("/", 1)[-1], "PolicyArn": arn} for arn in attached],
                "IsTruncated": False}
