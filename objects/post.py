"""Browser uploads: an HTML form POSTed to a bucket (``multipart/form-data``), authorized by a signed policy.

The form's fields come first (``key``, ``policy``: base64 JSON ``{"expiration", "conditions"}``, ``x-amz-algorithm``,
``x-amz-credential``, ``x-amz-date``, ``x-amz-signature`` (``x-amz-security-token`` for a session), or version 2's
``AWSAccessKeyId`` and ``signature``, which boto3 signs with unless told ``s3v4``; ``Content-Type``,
``x-amz-meta-*``, ``tagging``, ``success_action_status`` / ``success_action_redirect`` ...), then the ``file``
part, which is streamed to the store as it arrives (never held whole); fields after it are ignored, as S3 ignores
them. The signature is over the base64 policy text; each condition (``{"field": value}`` / ``["eq", "$field",
value]``, ``["starts-with", "$field", prefix]``, ``["content-length-range", min, max]``) must hold and every field
the form sends must be named by one (bar ``policy``, ``x-amz-signature``, ``file`` and ``x-ignore-*``). A form
without ``policy`` is anonymous: the bucket's policy then decides. ``${filename}`` in the key is the file part's
name. Field names are case-insensitive, as on S3.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import orjson
from aiohttp import BodyPartReader, MultipartReader, web

from kambda.aws import auth, model, roles, sigv4
from kambda.aws.errors import KambdaError
from kambda.aws.protocol import xmlbody
from kambda.aws.protocol.faults import Malformed
from kambda.aws.router import Route
from kambda.settings import is_loopback
from objects import errors
from objects.api import DEFAULT_TYPE, check_tags
from objects.policy import ANONYMOUS
from objects.store import Actor, Store

#: The form's fields before the file, together (S3: 20 KB).
MAX_FIELDS = 20 * 1024
READ = 256 * 1024
MAX_OBJECT = 5 * 1024 ** 3
#: Fields no condition needs to name.
EXEMPT = frozenset(("policy", "x-amz-signature", "file", "awsaccesskeyid", "signature"))
#: Form fields stored as the object's headers (the store's names).
STORED = {"content-type": "Content-Type", "cache-control": "Cache-Control",
          "content-disposition": "Content-Disposition", "content-encoding": "Content-Encoding",
          "content-language": "Content-Language", "expires": "Expires",
          "x-amz-website-redirect-location": "WebsiteRedirectLocation", "x-amz-storage-class": "StorageClass"}


class InvalidPolicyDocument(errors.S3Error):
    code = "InvalidPolicyDocument"
    status = 400


class InvalidAccessKeyId(errors.S3Error):
    code = "InvalidAccessKeyId"
    status = 403


class MaxPostPreDataLengthExceeded(errors.S3Error):
    code = "MaxPostPreDataLengthExceededError"
    status = 400


class MalformedPOSTRequest(errors.S3Error):
    code = "MalformedPOSTRequest"
    status = 400


#: What aiohttp's multipart reader raises for a body that is not a form.
_BROKEN = (ValueError, AssertionError, LookupError, RuntimeError)


def _malformed() -> errors.S3Error:
    return MalformedPOSTRequest("The body of your POST request is not well-formed multipart/form-data.")


def _policy_failed(detail: str) -> errors.S3Error:
    return errors.AccessDenied(f"Invalid according to Policy: {detail}")


@dataclass(frozen=True)
class PostPolicy:
    expiration: datetime
    conditions: tuple[Any, ...]

    @classmethod
    def parse(cls, encoded: str) -> PostPolicy:
        """The base64 ``policy`` field; InvalidPolicyDocument with S3's messages when it is not one."""
        try:
            doc = orjson.loads(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidPolicyDocument("Invalid Policy: Invalid JSON.") from None
        if not isinstance(doc, dict):
            raise InvalidPolicyDocument("Invalid Policy: Invalid JSON.")
        text = doc.get("expiration")
        if not isinstance(text, str):
            raise InvalidPolicyDocument("Invalid Policy: Policy missing expiration.")
        try:
            expiration = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidPolicyDocument(f"Invalid Policy: Invalid 'expiration' value: '{text}'") from None
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        conditions = doc.get("conditions")
        if not isinstance(conditions, list):
            raise InvalidPolicyDocument("Invalid Policy: Policy missing conditions.")
        for condition in conditions:
            _check_shape(condition)
        return cls(expiration, tuple(conditions))

    def length_range(self) -> tuple[int, int]:
        low, high = 0, MAX_OBJECT
        for condition in self.conditions:
            if isinstance(condition, list) and str(condition[0]).lower() == "content-length-range":
                low, high = max(low, int(condition[1])), min(high, int(condition[2]))
        return low, high

    def check(self, fields: Mapping[str, str], now: datetime) -> None:
        """Expiry, every condition against the form (``fields``: lower-case names, ``bucket`` included), and no
        field the conditions do not name; AccessDenied as S3 words it."""
        if now >= self.expiration:
            raise _policy_failed("Policy expired.")
        named: set[str] = set()
        for condition in self.conditions:
            if isinstance(condition, dict):
                for name, value in condition.items():
                    named.add(name.lower())
                    if fields.get(name.lower()) != str(value):
                        raise _policy_failed(f"Policy Condition failed: [\"eq\", \"${name}\", \"{value}\"]")
                continue
            op = str(condition[0]).lower()
            if op == "content-length-range":
                continue
            name = str(condition[1]).lstrip("$").lower()
            named.add(name)
            actual, value = fields.get(name), str(condition[2])
            ok = actual is not None and (actual == value if op == "eq" else actual.startswith(value))
            if not ok:
                raise _policy_failed(f"Policy Condition failed: [\"{condition[0]}\", \"{condition[1]}\", "
                                     f"\"{value}\"]")
        extra = [n for n in fields if n not in named and n not in EXEMPT and n != "bucket"
                 and not n.startswith("x-ignore-")]
        if extra:
            raise _policy_failed(f"Extra input fields: {', '.join(extra)}")


def _check_shape(condition: Any) -> None:
    if isinstance(condition, dict):
        if len(condition) != 1:
            raise InvalidPolicyDocument("Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have "
                                        "exactly one property specified.")
        return
    if not isinstance(condition, list) or len(condition) != 3:
        raise InvalidPolicyDocument("Invalid Policy: Invalid Condition: conditions must be objects or arrays of "
                                    "three elements.")
    op = str(condition[0]).lower()
    if op == "content-length-range":
        if not all(isinstance(v, int) and v >= 0 for v in condition[1:]):
            raise InvalidPolicyDocument("Invalid Policy: Invalid content-length-range: the bounds must be "
                                        "non-negative integers.")
        return
    if op not in ("eq", "starts-with"):
        raise InvalidPolicyDocument(f"Invalid Policy: Invalid Condition: unknown operation {condition[0]}.")
    if not isinstance(condition[1], str) or not condition[1].startswith("$"):
        raise InvalidPolicyDocument(f"Invalid Policy: Invalid Condition: field {condition[1]} must start with $.")


def verify(fields: Mapping[str, str], secret: str) -> None:
    """SigV4 over the base64 policy: SignatureDoesNotMatch unless ``x-amz-signature`` is its HMAC."""
    scope = fields.get("x-amz-credential", "").split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise errors.InvalidArgument("Invalid argument.", ArgumentName="x-amz-credential",
                                     ArgumentValue=fields.get("x-amz-credential", ""))
    key = sigv4.signing_key(secret, scope[1], scope[2], scope[3])
    expected = hmac.new(key, fields["policy"].encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields.get("x-amz-signature", "")):
        raise errors.SignatureDoesNotMatch("The request signature we calculated does not match the signature you "
                                           "provided. Check your key and signing method.")


def verify_v2(fields: Mapping[str, str], secret: str) -> None:
    """Signature version 2 (boto3's default for ``generate_presigned_post``): base64 HMAC-SHA1 of the policy."""
    expected = base64.b64encode(hmac.new(secret.encode(), fields["policy"].encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected, fields.get("signature", "")):
        raise errors.SignatureDoesNotMatch("The request signature we calculated does not match the signature you "
                                           "provided. Check your key and signing method.")


Authorize = Callable[[web.Request, str, Iterable[str]], Awaitable[None]]


def _xml(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


class PostUploads:
    """``POST /<bucket>`` with a form: :meth:`handle` is a front-door intercept for ``s3``."""

    def __init__(self, store: Store, authorize: Authorize,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store, self.authorize, self.now = store, authorize, now

    @staticmethod
    def bucket_of(request: web.Request, route: Route) -> str | None:
        """The bucket a form POST targets, or None when the request is not one."""
        if request.method != "POST" or not request.content_type.startswith("multipart/form-data") \
                or request.query_string:
            return None
        path = request.raw_path.partition("?")[0]
        if route.bucket is not None:
            return route.bucket if path in ("", "/") else None
        name = path.strip("/")
        return name if name and "/" not in name else None

    async def handle(self, request: web.Request, route: Route, request_id: str) -> web.StreamResponse | None:
        bucket = self.bucket_of(request, route)
        if bucket is None:
            return None
        await self.store.bucket(bucket)
        try:
            fields, file = await _fields(await request.multipart())
        except _BROKEN:
            raise _malformed() from None
        if "key" not in fields:
            raise errors.InvalidArgument("Bucket POST must contain a field named 'key'.  If it is specified, please "
                                         "check the order of the fields.", ArgumentName="key", ArgumentValue="")
        if file is None:
            raise errors.InvalidArgument("POST requires exactly one file upload per request.",
                                         ArgumentName="file", ArgumentValue="0")
        fields["bucket"] = bucket
        low, high = 0, MAX_OBJECT
        if "policy" in fields:
            credential = self._credential(request, fields)
            policy = PostPolicy.parse(fields["policy"])
            policy.check(fields, self.now())
            low, high = policy.length_range()
        else:
            credential = ANONYMOUS
        request[auth.PRINCIPAL] = credential
        key = fields["key"].replace("${filename}", file.filename or "")
        await self.authorize(request, "s3:PutObject", [f"arn:aws:s3:::{bucket}/{key}"])
        headers = {STORED[name]: value for name, value in fields.items() if name in STORED}
        headers.setdefault("Content-Type", file.headers.get("Content-Type") or DEFAULT_TYPE)
        metadata = {name[len("x-amz-meta-"):]: value for name, value in fields.items()
                    if name.startswith("x-amz-meta-")}
        tags = tagging(fields["tagging"]) if "tagging" in fields else None
        actor = Actor(credential.access_key or "anonymous", request.remote or "", request_id)
        written = await self.store.put(bucket, key, _body(file, low, high), headers=headers, metadata=metadata,
                                       tags=tags, event="ObjectCreated:Post", actor=actor, max_size=high)
        return _answer(request, fields, bucket, key, written.meta.etag, written.meta.version_id, request_id)

    def _credential(self, request: web.Request, fields: Mapping[str, str]) -> auth.Credential:
        if "awsaccesskeyid" in fields and "x-amz-algorithm" not in fields:
            return self._known(request, fields["awsaccesskeyid"], fields, verify_v2)
        if fields.get("x-amz-algorithm") != sigv4.ALGORITHM:
            raise errors.InvalidArgument("Only AWS4-HMAC-SHA256 is supported for POST policies.",
                                         ArgumentName="x-amz-algorithm",
                                         ArgumentValue=fields.get("x-amz-algorithm", ""))
        for name in ("x-amz-credential", "x-amz-date", "x-amz-signature"):
            if name not in fields:
                raise errors.InvalidArgument(f"Bucket POST must contain a field named '{name}'.  If it is "
                                             "specified, please check the order of the fields.",
                                             ArgumentName=name, ArgumentValue="")
        return self._known(request, fields["x-amz-credential"].partition("/")[0], fields, verify)

    @staticmethod
    def _known(request: web.Request, access_key: str, fields: Mapping[str, str],
               check: Callable[[Mapping[str, str], str], None]) -> auth.Credential:
        """The credential that signed the form: a function's execution-role session (its token proves it), one
        of the credentials file's (with its session token, if it has one), or LOCAL where nothing is checked."""
        authenticator = request.app[auth.AUTHENTICATOR]
        token = fields.get("x-amz-security-token")
        if authenticator.role_key and roles.is_role_token(token):
            session = roles.verify(authenticator.role_key, access_key, token or "", authenticator.now().timestamp())
            if session is None:
                raise InvalidAccessKeyId("The AWS Access Key Id you provided does not exist in our records.",
                                         AWSAccessKeyId=access_key)
            check(fields, session.secret)
            return auth.Credential(session.access_key, session.secret, session.token,
                                   authenticator.role_permissions(session.role), role=session.role)
        if authenticator.store is None:
            if authenticator.insecure or is_loopback(request.remote):
                return auth.LOCAL  # no credentials configured: signatures are not checked (kambda/aws/auth.py)
            raise errors.AccessDenied("Access Denied")
        credential = authenticator.store.get(access_key)
        if credential is None or (credential.session_token or None) != (token or None):
            raise InvalidAccessKeyId("The AWS Access Key Id you provided does not exist in our records.",
                                     AWSAccessKeyId=access_key)
        check(fields, credential.secret)
        return credential


def tagging(text: str) -> dict[str, str]:
    """The ``tagging`` field: S3's ``<Tagging><TagSet><Tag>`` XML (InvalidTag / MalformedXML as PutObjectTagging)."""
    try:
        decoded = xmlbody.decode(model.service_model("s3").shape_for("Tagging"), xmlbody.parse(text.encode()))
    except (Malformed, KambdaError):
        raise errors.MalformedXML("The XML you provided was not well-formed or did not validate against our "
                                  "published schema") from None
    return check_tags((t.get("Key", ""), t.get("Value", "")) for t in decoded.get("TagSet") or ())


async def _fields(reader: MultipartReader) -> tuple[dict[str, str], BodyPartReader | None]:
    """The form's fields up to the file part (which is returned unread), names lower case."""
    fields: dict[str, str] = {}
    total = 0
    while True:
        part = await reader.next()
        if part is None:
            return fields, None
        if not isinstance(part, BodyPartReader):
            raise _malformed()
        name = (part.name or "").lower()
        if name == "file":
            return fields, part
        data = await part.read_chunk(MAX_FIELDS - total + 1)
        while len(data) <= MAX_FIELDS - total and (more := await part.read_chunk(MAX_FIELDS - total + 1)):
            data += more
        total += len(data)
        if total > MAX_FIELDS:
            raise MaxPostPreDataLengthExceeded("Your POST request fields preceeding the upload file was too large.")
        fields[name] = data.decode("utf-8", errors="replace")


async def _body(part: BodyPartReader, low: int, high: int) -> AsyncIterator[bytes]:
    """The file part as it arrives; EntityTooLarge / EntityTooSmall against the policy's content-length-range
    (raised before the store commits)."""
    size = 0
    while True:
        try:
            chunk = await part.read_chunk(READ)
        except _BROKEN:
            raise _malformed() from None
        if not chunk:
            break
        size += len(chunk)
        if size > high:
            raise errors.EntityTooLarge("Your proposed upload exceeds the maximum allowed size",
                                        ProposedSize=str(size), MaxSizeAllowed=str(high))
        yield chunk
    if size < low:
        raise errors.EntityTooSmall("Your proposed upload is smaller than the minimum allowed size",
                                    ProposedSize=str(size), MinSizeAllowed=str(low))


def _answer(request: web.Request, fields: Mapping[str, str], bucket: str, key: str, etag: str, version_id: str,
            request_id: str) -> web.Response:
    location = f"{request.scheme}://{request.host}/{bucket}/{quote(key, safe='/~')}"
    headers = {"ETag": etag, "Location": location, "x-amz-request-id": request_id, "x-amz-id-2": request_id}
    if version_id != "null":
        headers["x-amz-version-id"] = version_id
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        parts = urlsplit(redirect)
        if parts.scheme in ("http", "https"):
            query = urlencode({"bucket": bucket, "key": key, "etag": etag})
            target = urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))
            return web.Response(status=303, headers={**headers, "Location": target})
    status = fields.get("success_action_status")
    if status == "201":
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse><Location>' + _xml(location)
                + f"</Location><Bucket>{_xml(bucket)}</Bucket><Key>{_xml(key)}</Key><ETag>{_xml(etag)}</ETag>"
                "</PostResponse>")
        return web.Response(status=201, body=body.encode(), headers=headers, content_type="application/xml")
    return web.Response(status=200 if status == "200" else 204, headers=headers)
