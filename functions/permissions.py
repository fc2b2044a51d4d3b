"""A function's resource-based policy (AddPermission, RemovePermission, GetPolicy), its tags (TagResource,
UntagResource, ListTags), GetAccountSettings and the runtime management config.

AddPermission's statement is built here as Lambda writes it (``Principal`` as ``{"Service": ...}`` for a
service, ``{"AWS": "arn:aws:iam::ACCOUNT:root"}`` for an account, the ARN or ``*`` otherwise; SourceArn as an
``ArnLike`` condition, SourceAccount, PrincipalOrgID, FunctionUrlAuthType and EventSourceToken as
``StringEquals``) and stored by the controller on the function, by the qualifier it was added with. SAM and
CloudFormation add one for every trigger; kambda's own triggers invoke through the bus and need none, so a
policy is what GetPolicy shows and what other principals' invocations are checked against.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from functions.registry_cache import RegistryCache
from functions.render import check_tags
from kambda import rpc
from kambda.aws import errors
from kambda.aws.front import Context, Front
from kambda.names import Arns, parse_function
from kambda.v1 import controller_pb2 as pb
from kambda.v1.controller_pb2_grpc import ControllerStub
from kambda.v1.function_pb2 import FunctionConfig

_ACTION = re.compile(r"(lambda:[*]|lambda:[a-zA-Z]+|[*])")
_SID = re.compile(r"([a-zA-Z0-9-_]+)")
_ACCOUNT = re.compile(r"\d{12}")
_UPDATE_MODES = ("Auto", "FunctionUpdate", "Manual")
#: What GetAccountSettings reports: AWS's default quotas, which kambda applies.
ACCOUNT_LIMITS = {"TotalCodeSize": 80_530_636_800, "CodeSizeUnzipped": 262_144_000,
                  "CodeSizeZipped": 52_428_800, "ConcurrentExecutions": 1000}


def principal(value: str) -> str | dict[str, str]:
    if value == "*":
        return "*"
    if _ACCOUNT.fullmatch(value):
        return {"AWS": f"arn:aws:iam::{value}:root"}
    if value.startswith("arn:"):
        return {"AWS": value}
    return {"Service": value}


def statement(params: dict[str, Any], resource: str) -> dict[str, Any]:
    """AddPermission's params as the policy statement Lambda stores and returns."""
    sid, action = params["StatementId"], params["Action"]
    if not _SID.fullmatch(sid) or len(sid) > 100:
        raise errors.Validation(f"1 validation error detected: Value '{sid}' at 'statementId' failed to satisfy "
                                "constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)")
    if not _ACTION.fullmatch(action):
        raise errors.Validation(f"1 validation error detected: Value '{action}' at 'action' failed to satisfy "
                                "constraint: Member must satisfy regular expression pattern: "
                                "(lambda:[*]|lambda:[a-zA-Z]+|[*])")
    conditions: dict[str, dict[str, str]] = {}
    for param, key in (("SourceAccount", "AWS:SourceAccount"), ("PrincipalOrgID", "aws:PrincipalOrgID"),
                       ("FunctionUrlAuthType", "lambda:FunctionUrlAuthType"),
                       ("EventSourceToken", "lambda:EventSourceToken")):
        if params.get(param):
            conditions.setdefault("StringEquals", {})[key] = params[param]
    if params.get("SourceArn"):
        conditions["ArnLike"] = {"AWS:SourceArn": params["SourceArn"]}
    if params.get("InvokedViaFunctionUrl"):
        conditions.setdefault("Bool", {})["lambda:InvokedViaFunctionUrl"] = "true"
    body: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Principal": principal(params["Principal"]),
                            "Action": action, "Resource": resource}
    if conditions:
        body["Condition"] = conditions
    return body


def grants(statements: list[str], principal_arn: str, action: str, resource: str) -> bool:
    """Whether one of a function's statements allows ``principal_arn`` (a role or user of some account) to do
    ``action`` on ``resource``. A statement for a service principal, or with a condition on where the call
    comes from (SourceArn, SourceAccount, an event source token, an organisation), is for triggers and
    never matches a direct call; kambda's own triggers invoke through the bus and need none."""
    account = principal_arn.split(":")[4] if principal_arn.count(":") >= 5 else ""
    for text in statements:
        body = json.loads(text)
        if body.get("Effect") != "Allow" or body.get("Resource") != resource or body.get("Condition"):
            continue
        allowed = body.get("Action")
        if not (allowed == "*" or str(allowed).lower() in (action.lower(), "lambda:*")):
            continue
        who = body.get("Principal")
        if who == "*" or (isinstance(who, dict) and who.get("AWS") in (principal_arn, f"arn:aws:iam::{account}:root")):
            return True
    return False


def policy_document(statements: list[str]) -> str:
    return json.dumps({"Version": "2012-10-17", "Id": "default",
                       "Statement": [json.loads(s) for s in statements]}, separators=(",", ":"))


def resource_policy(cache: RegistryCache, arns: Arns) -> Callable[[str, str, str], bool]:
    """The gateway's check of a function ARN's resource policy (kambda/aws/auth.py asks it), from the
    registry cache: statements are added by qualifier and a qualified ARN is checked on its own."""
    prefix = f"arn:aws:lambda:{arns.region}:{arns.account}:function:"

    def allows(principal_arn: str, action: str, resource: str) -> bool:
        if not resource.startswith(prefix):
            return False
        name, _, qualifier = resource[len(prefix):].partition(":")
        config = cache.cached(name)
        if config is None or qualifier not in config.policies:
            return False
        return grants(list(config.policies[qualifier].statements), principal_arn, action, resource)

    return allows


class PermissionsApi:
    def __init__(self, controller: ControllerStub, cache: RegistryCache, arns: Arns) -> None:
        self._controller = controller
        self._cache = cache
        self._arns = arns

    def register(self, front: Front) -> None:
        def function(ctx: Context, params: dict[str, Any]) -> list[str]:
            ref = parse_function(params["FunctionName"], params.get("Qualifier"))
            return [self._arns.function(ref.name, ref.qualifier)]

        def tagged(ctx: Context, params: dict[str, Any]) -> list[str]:
            return [params["Resource"]]

        for name, handler in {"AddPermission": self.add_permission, "RemovePermission": self.remove_permission,
                              "GetPolicy": self.get_policy,
                              "GetRuntimeManagementConfig": self.get_runtime_management,
                              "PutRuntimeManagementConfig": self.put_runtime_management}.items():
            front.register("lambda", name, handler, function)
        for name, handler in {"TagResource": self.tag, "UntagResource": self.untag,
                              "ListTags": self.list_tags}.items():
            front.register("lambda", name, handler, tagged)
        front.register("lambda", "GetAccountSettings", self.account_settings)

    async def _change(self, request: pb.ChangeFunctionRequest) -> FunctionConfig:
        config: FunctionConfig = await rpc.call(self._controller.ChangeFunction, request)
        self._cache.put(config)  # this gateway checks the new policy at once; the others when their watch has it
        return config

    # -- the resource-based policy ----------------------------------------------------------------

    async def add_permission(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        body = statement(params, self._arns.function(ref.name, ref.qualifier))
        text = json.dumps(body, separators=(",", ":"))
        await self._change(pb.ChangeFunctionRequest(name=ref.name, qualifier=ref.qualifier or "",
                                                    revision_id=params.get("RevisionId", ""), add_statement=text))
        return {"Statement": text}

    async def remove_permission(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        await self._change(pb.ChangeFunctionRequest(name=ref.name, qualifier=ref.qualifier or "",
                                                    revision_id=params.get("RevisionId", ""),
                                                    remove_statement=params["StatementId"]))
        return {}

    async def get_policy(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        config = await self._latest(ref.name)
        if ref.qualifier:
            await rpc.call(self._controller.GetFunction, pb.GetFunctionRequest(name=ref.name, qualifier=ref.qualifier))
        statements = list(config.policies[ref.qualifier or ""].statements) \
            if (ref.qualifier or "") in config.policies else []
        if not statements:
            raise errors.ResourceNotFound("The resource you requested does not exist.")
        return {"Policy": policy_document(statements), "RevisionId": config.revision_id}

    # -- tags -------------------------------------------------------------------------------------

    def _tagged_function(self, resource: str) -> str:
        """The function a tag operation's ARN names; tags belong to the function, never to a qualifier."""
        prefix = f"arn:aws:lambda:{self._arns.region}:{self._arns.account}:function:"
        if not resource.startswith(prefix):
            raise errors.InvalidParameterValue(f"Invalid resource ARN for tagging: {resource}: kambda tags "
                                               "functions (arn:aws:lambda:REGION:ACCOUNT:function:NAME)")
        name = resource[len(prefix):]
        if ":" in name:
            raise errors.InvalidParameterValue("Tags are not supported on qualified function ARNs; tag the "
                                               f"function: {prefix}{name.split(':', 1)[0]}")
        return name

    async def tag(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = self._tagged_function(params["Resource"])
        await self._change(pb.ChangeFunctionRequest(name=name, tag=check_tags(params["Tags"])))
        return {}

    async def untag(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = self._tagged_function(params["Resource"])
        await self._change(pb.ChangeFunctionRequest(name=name, untag=params["TagKeys"]))
        return {}

    async def list_tags(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        config = await self._latest(self._tagged_function(params["Resource"]))
        return {"Tags": dict(config.tags)}

    async def _latest(self, name: str) -> FunctionConfig:
        config: FunctionConfig = await rpc.call(self._controller.GetFunction, pb.GetFunctionRequest(name=name))
        return config

    # -- account settings and runtime management ----------------------------------------------------

    async def account_settings(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        functions: list[FunctionConfig] = []
        marker = ""
        while True:
            page = await rpc.call(self._controller.ListFunctions,
                                  pb.ListFunctionsRequest(marker=marker, max_items=10_000, all_versions=True))
            functions.extend(page.functions)
            marker = page.next_marker
            if not marker:
                break
        reserved = sum(c.reserved_concurrency for c in functions if c.version == "$LATEST"
                       and c.HasField("reserved_concurrency"))
        limits = {**ACCOUNT_LIMITS,
                  "UnreservedConcurrentExecutions": max(0, ACCOUNT_LIMITS["ConcurrentExecutions"] - reserved)}
        return {"AccountLimit": limits,
                "AccountUsage": {"TotalCodeSize": sum(c.code_size for c in functions),
                                 "FunctionCount": sum(1 for c in functions if c.version == "$LATEST")}}

    async def get_runtime_management(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        config = await self._latest(ref.name)
        return self._runtime_management(config, ref.qualifier)

    async def put_runtime_management(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        mode, version_arn = params["UpdateRuntimeOn"], params.get("RuntimeVersionArn", "")
        if mode not in _UPDATE_MODES:
            raise errors.Validation(f"1 validation error detected: Value '{mode}' at 'updateRuntimeOn' failed to "
                                    "satisfy constraint: Member must satisfy enum value set: "
                                    f"[{', '.join(_UPDATE_MODES)}]")
        if (mode == "Manual") != bool(version_arn):
            raise errors.InvalidParameterValue(
                "RuntimeVersionArn is required with UpdateRuntimeOn Manual, and only with it")
        config = await self._change(pb.ChangeFunctionRequest(name=ref.name, runtime_update_mode=mode,
                                                             runtime_version_arn=version_arn))
        return self._runtime_management(config, ref.qualifier)

    def _runtime_management(self, config: FunctionConfig, qualifier: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"UpdateRuntimeOn": config.runtime_update_mode or "Auto",
                                "FunctionArn": self._arns.function(config.name, qualifier)}
        if config.runtime_version_arn:
            body["RuntimeVersionArn"] = config.runtime_version_arn
        return body

