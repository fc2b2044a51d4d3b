"""Bucket policies: validated as S3 validates them, evaluated with the caller's own permissions.

A bucket policy is IAM's resource policy: ``Statement`` entries with ``Effect``, ``Principal`` (or
``NotPrincipal``), ``Action`` (or ``NotAction``), ``Resource`` (or ``NotResource``, each an ARN of this bucket or
its objects) and an optional ``Condition``. As in IAM for one account: an explicit Deny (in the caller's
permissions or the bucket's policy) refuses; otherwise an Allow in either grants. An anonymous (unsigned) caller
has no permissions of its own, so only a statement for ``"Principal": "*"`` can let it in (the static-site case:
``s3:GetObject`` on ``arn:aws:s3:::bucket/*``). Block Public Access (PutPublicAccessBlock) is honoured for policies:
``BlockPublicPolicy`` refuses putting a public one, ``RestrictPublicBuckets`` makes a public one grant the anonymous
caller nothing; a bucket without the configuration blocks nothing (AWS turns all four on for new buckets).

The front door names its actions after operations (``s3:HeadObject``); :data:`ACTIONS` maps them to the IAM
actions S3 checks (``s3:GetObject``), for both the bucket policy and the caller's own permissions. Actions and
resources match with :mod:`kambda.aws.policy`'s wildcards (reused: actions case-insensitively, resources not).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from kambda.aws import auth, sigv4
from kambda.aws import errors as kerrors
from kambda.aws.policy import Permissions, Policy, PolicyError, Statement
from objects import errors
from objects.errors import MalformedPolicy

#: Operation-named actions to S3's IAM actions (the rest are the same name).
ACTIONS = {
    "HeadObject": "GetObject", "HeadBucket": "ListBucket", "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket", "ListObjectVersions": "ListBucketVersions", "ListBuckets": "ListAllMyBuckets",
    "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject", "UploadPartCopy": "PutObject",
    "CompleteMultipartUpload": "PutObject", "CopyObject": "PutObject", "ListParts": "ListMultipartUploadParts",
    "ListMultipartUploads": "ListBucketMultipartUploads", "DeleteObjects": "DeleteObject",
    "PutBucketCors": "PutBucketCORS", "GetBucketCors": "GetBucketCORS", "DeleteBucketCors": "PutBucketCORS",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "DeleteBucketLifecycle": "PutLifecycleConfiguration",
    "PutBucketNotificationConfiguration": "PutBucketNotification",
    "GetBucketNotificationConfiguration": "GetBucketNotification", "GetObjectAttributes": "GetObject",
    "DeleteBucketWebsite": "DeleteBucketWebsite", "DeleteBucketPolicy": "DeleteBucketPolicy",
}
#: What a bucket's owner may always do, whatever the policy denies (as the account root on AWS).
OWNER_ALWAYS = frozenset(("s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"))
_INVALID_JSON = "This policy contains invalid Json"
#: The anonymous caller: no permissions of its own (a policy with no statement allows nothing).
ANONYMOUS = auth.Credential(access_key="anonymous", permissions=Permissions((Policy(()),)))
_OPERATORS = ("StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
              "StringLike", "StringNotLike", "IpAddress", "NotIpAddress", "Bool", "Null", "ArnLike", "ArnEquals")


def iam_action(action: str) -> str:
    """``s3:HeadObject`` -> ``s3:GetObject``: the IAM action S3 checks for an operation."""
    service, _, name = action.partition(":")
    return f"{service}:{ACTIONS.get(name, name)}" if service == "s3" else action


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matcher(effect: str, actions: list[str], resources: list[str]) -> Statement:
    return Policy.parse({"Statement": [{"Effect": effect, "Action": actions, "Resource": resources}]}).statements[0]


@dataclass(frozen=True)
class BucketStatement:
    allow: bool
    #: Principal patterns ("*" matches anyone, the anonymous caller included); None with NotPrincipal.
    principals: tuple[str, ...]
    not_principal: bool
    actions: Statement  # its resources are "*": matches on the action only
    not_action: bool
    resources: Statement  # its actions are "*": matches on the resource only
    not_resource: bool
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]

    def applies(self, principal: str, account: str, action: str, resource: str, context: Mapping[str, str]) -> bool:
        who = _principal_matches(self.principals, principal, account)
        if who == self.not_principal:
            return False
        if self.actions.matches(action, "*") == self.not_action:
            return False
        if self.resources.matches("*", resource) == self.not_resource:
            return False
        return all(_condition(op, key, values, context) for op, key, values in self.conditions)

    @property
    def public(self) -> bool:
        """Allows anyone with no condition narrowing it (S3's ``IsPublic``)."""
        return self.allow and not self.not_principal and "*" in self.principals and not self.conditions


def _principal_matches(principals: tuple[str, ...], principal: str, account: str) -> bool:
    for pattern in principals:
        if pattern == "*":
            return True
        if principal != "anonymous" and pattern in (account, f"arn:aws:iam::{account}:root", principal):
            return True
    return False


def _condition(op: str, key: str, values: tuple[str, ...], context: Mapping[str, str]) -> bool:
    if_exists = op.endswith("IfExists")
    base = op[: -len("IfExists")] if if_exists else op
    actual = context.get(key.lower())
    if base == "Null":
        return (actual is None) == (values[0].lower() == "true")
    if actual is None:
        return if_exists or base.startswith(("StringNot", "NotIp"))
    if base in ("StringEquals", "ArnEquals"):
        return actual in values
    if base == "StringNotEquals":
        return actual not in values
    if base == "StringEqualsIgnoreCase":
        return actual.lower() in (v.lower() for v in values)
    if base == "StringNotEqualsIgnoreCase":
        return actual.lower() not in (v.lower() for v in values)
    if base in ("StringLike", "ArnLike"):
        return any(_like(v).fullmatch(actual) for v in values)
    if base == "StringNotLike":
        return not any(_like(v).fullmatch(actual) for v in values)
    if base in ("IpAddress", "NotIpAddress"):
        try:
            ip = ipaddress.ip_address(actual)
        except ValueError:
            return False
        inside = any(ip in ipaddress.ip_network(v, strict=False) for v in values)
        return inside if base == "IpAddress" else not inside
    if base == "Bool":
        return actual.lower() in (v.lower() for v in values)
    return False


def _like(text: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text), re.DOTALL)


def _strings(value: Any) -> list[str] | None:
    items = _list(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        return None
    return items


def _principals(value: Any) -> tuple[str, ...]:
    if value == "*":
        return ("*",)
    if isinstance(value, dict) and value:
        found: list[str] = []
        for kind, names in value.items():
            items = _strings(names)
            if kind not in ("AWS", "Service", "CanonicalUser", "Federated") or items is None:
                raise MalformedPolicy("Invalid principal in policy")
            if kind == "AWS":
                found += items
        return tuple(found)
    raise MalformedPolicy("Invalid principal in policy")


def _in_bucket(resource: str, bucket: str) -> bool:
    if not resource.startswith("arn:aws:s3:::"):
        return False
    name = resource[len("arn:aws:s3:::"):].partition("/")[0]
    return bool(re.fullmatch(_like(name).pattern, bucket)) or name == "*"


@dataclass(frozen=True)
class BucketPolicy:
    statements: tuple[BucketStatement, ...]
    #: Block Public Access's RestrictPublicBuckets on a public policy: it grants the anonymous caller nothing.
    restricted: bool = False

    @classmethod
    def parse(cls, text: str, bucket: str) -> BucketPolicy:
        """MalformedPolicy (S3's messages) unless ``text`` is a policy S3 would take for ``bucket``."""
        if not text.lstrip().startswith("{"):
            raise MalformedPolicy("Policies must be valid JSON and the first byte must be '{'")
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise MalformedPolicy(_INVALID_JSON) from None
        if not isinstance(doc, dict):
            raise MalformedPolicy(_INVALID_JSON)
        version = doc.get("Version")
        if version is not None and version not in ("2012-10-17", "2008-10-17"):
            raise MalformedPolicy("The policy must contain a valid version string")
        raw = doc.get("Statement")
        if raw is None:
            raise MalformedPolicy("Missing required field Statement")
        statements = []
        for statement in _list(raw):
            if not isinstance(statement, dict):
                raise MalformedPolicy(_INVALID_JSON)
            statements.append(cls._statement(statement, bucket))
        if not statements:
            raise MalformedPolicy("Missing required field Statement")
        return cls(tuple(statements))

    @staticmethod
    def _statement(statement: dict[str, Any], bucket: str) -> BucketStatement:
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise MalformedPolicy(f"Invalid effect: {effect}" if effect else "Missing required field Effect")
        if ("Principal" in statement) == ("NotPrincipal" in statement):
            raise MalformedPolicy("Missing required field Principal")
        principals = _principals(statement.get("Principal", statement.get("NotPrincipal")))
        if ("Action" in statement) == ("NotAction" in statement):
            raise MalformedPolicy("Missing required field Action")
        actions = _strings(statement.get("Action", statement.get("NotAction")))
        if actions is None or not all(a == "*" or a.lower().startswith("s3:") for a in actions):
            raise MalformedPolicy("Policy has invalid action")
        if ("Resource" in statement) == ("NotResource" in statement):
            raise MalformedPolicy("Missing required field Resource")
        resources = _strings(statement.get("Resource", statement.get("NotResource")))
        if resources is None or not all(_in_bucket(r, bucket) for r in resources):
            raise MalformedPolicy("Policy has invalid resource")
        conditions: list[tuple[str, str, tuple[str, ...]]] = []
        raw = statement.get("Condition") or {}
        if not isinstance(raw, dict):
            raise MalformedPolicy("Invalid Condition")
        for op, block in raw.items():
            base = op[: -len("IfExists")] if op.endswith("IfExists") else op
            if base not in _OPERATORS or not isinstance(block, dict):
                raise MalformedPolicy(f"Invalid Condition type : {op}")
            for key, values in block.items():
                items = [str(v).lower() if isinstance(v, bool) else str(v) for v in _list(values)]
                if not items:
                    raise MalformedPolicy(f"Invalid Condition value for key {key}")
                if base in ("IpAddress", "NotIpAddress"):
                    for item in items:
                        try:
                            ipaddress.ip_network(item, strict=False)
                        except ValueError:
                            raise MalformedPolicy(f"Invalid IP address: {item}") from None
                conditions.append((op, key, tuple(items)))
        try:
            return BucketStatement(
                allow=effect == "Allow", principals=principals, not_principal="NotPrincipal" in statement,
                actions=_matcher(effect, actions, ["*"]), not_action="NotAction" in statement,
                resources=_matcher(effect, ["*"], resources), not_resource="NotResource" in statement,
                conditions=tuple(conditions))
        except PolicyError as exc:
            raise MalformedPolicy(str(exc)) from None

    def decide(self, principal: str, account: str, action: str, resource: str,
               context: Mapping[str, str] | None = None) -> bool | None:
        """False on an explicit Deny, True when allowed, None when no statement speaks."""
        allowed = None
        for statement in self.statements:
            if statement.applies(principal, account, action, resource, context or {}):
                if not statement.allow:
                    return False
                if not (self.restricted and principal == "anonymous"):
                    allowed = True
        return allowed

    @property
    def public(self) -> bool:
        return any(s.public for s in self.statements)


def bucket_of(resource: str) -> str | None:
    if not resource.startswith("arn:aws:s3:::"):
        return None
    return resource[len("arn:aws:s3:::"):].partition("/")[0] or None


def context_of(request: web.Request) -> dict[str, str]:
    """The condition keys a request has (lower case, as IAM compares key names)."""
    found = {"aws:sourceip": request.remote or "", "aws:securetransport": "true" if request.secure else "false"}
    for key, header in (("aws:referer", "Referer"), ("aws:useragent", "User-Agent")):
        value = request.headers.get(header)
        if value is not None:
            found[key] = value
    return found


PolicyOf = Callable[[str], Awaitable[BucketPolicy | None]]
Authorize = Callable[[web.Request, str, Iterable[str]], Awaitable[None]]
Authenticate = Callable[[web.Request], Awaitable[object]]


def denied() -> errors.S3Error:
    return errors.AccessDenied("Access Denied")


#: The bucket policies one request has read (a request may be checked for several actions).
_POLICIES = web.RequestKey("s3-bucket-policies", dict)


async def check(request: web.Request, policy_of: PolicyOf, account: str, action: str, resource: str,
                inner: Authorize | None) -> None:
    """One S3 action on one resource: the bucket policy, then (unless it granted) the caller's own permissions
    through ``inner``; AccessDenied as S3 says it."""
    credential = request.get(auth.PRINCIPAL)
    if credential is auth.LOCAL:
        return  # no credentials configured: the caller acts as admin (kambda/aws/auth.py)
    action = iam_action(action)
    bucket = bucket_of(resource)
    policy = None
    if bucket:
        seen = request.get(_POLICIES)
        if seen is None:
            seen = request[_POLICIES] = {}
        if bucket not in seen:
            seen[bucket] = await policy_of(bucket)
        policy = seen[bucket]
    if credential is None:
        credential = ANONYMOUS
    anonymous = credential is ANONYMOUS
    principal = "anonymous" if anonymous else (
        credential.role or f"arn:aws:iam::{account}:user/{credential.access_key}")
    decision = policy.decide(principal, account, action, resource, context_of(request)) if policy else None
    if decision is False and (anonymous or action not in OWNER_ALWAYS):
        raise denied()
    if decision is True and not credential.permissions.denies(action, resource):
        return
    if anonymous or inner is None:
        raise denied()
    try:
        await inner(request, action, [resource])
    except kerrors.AccessDenied:
        raise denied() from None


async def may(request: web.Request, policy_of: PolicyOf, account: str, action: str, resource: str,
              inner: Authorize | None) -> bool:
    """:func:`check` as a question."""
    try:
        await check(request, policy_of, account, action, resource, inner)
    except errors.S3Error as err:
        if err.code != "AccessDenied":
            raise
        return False
    return True


Exists = Callable[[str, str], Awaitable[bool]]
#: Reads that answer 403 instead of 404 for a missing key unless the caller may list the bucket, as S3 does.
_READS = frozenset(("s3:GetObject", "s3:HeadObject", "s3:GetObjectAttributes"))


def authorizer(inner: Authorize, policy_of: PolicyOf, account: str, exists: Exists | None = None) -> Authorize:
    """The front door's authorize hook with bucket policies: S3 actions go through :func:`check`. With ``exists``
    (whether a key's latest version is an object), a read of a missing key by a caller who may not
    ``s3:ListBucket`` is AccessDenied rather than NoSuchKey: a caller who cannot list cannot probe for keys."""
    async def authorize(request: web.Request, action: str, resources: Iterable[str]) -> None:
        if not action.startswith("s3:"):
            await inner(request, action, resources)
            return
        for resource in resources:
            await check(request, policy_of, account, action, resource, inner)
            if exists is None or action not in _READS or "versionId" in request.query \
                    or request.get(auth.PRINCIPAL) is auth.LOCAL:
                continue
            bucket, _, key = resource[len("arn:aws:s3:::"):].partition("/")
            if key and not await may(request, policy_of, account, "s3:ListBucket", f"arn:aws:s3:::{bucket}",
                                     inner) and not await exists(bucket, key):
                raise denied()

    return authorize


def anonymous(inner: Authenticate, is_s3: Callable[[web.Request], bool]) -> Authenticate:
    """The front door's authenticate hook letting an unsigned S3 request in as :data:`ANONYMOUS` where
    signatures are required (its bucket's policy then decides); a signed request is authenticated as before."""
    async def authenticate(request: web.Request) -> object:
        try:
            return await inner(request)
        except kerrors.MissingAuthenticationToken:
            if sigv4.parse(request.headers, request.query) is not None or not is_s3(request):
                raise
            request[auth.PRINCIPAL] = ANONYMOUS
            return ANONYMOUS

    return authenticate
