"""Who is calling, and may they: SigV4 authentication and IAM-style authorization for the gateway.

Modes, chosen at start-up from the settings:
- credentials configured (KAMBDA_CREDENTIALS_FILE): every API request must be signed with one of
  them, from anywhere, loopback included; each request is then checked against the credential's
  permissions.
- no credentials: unsigned requests are served only from loopback (the ``kambda up`` default);
  from anywhere else they get MissingAuthenticationTokenException. With ``insecure`` they are
  served from anywhere. Signatures are not checked in this mode: callers act as admin.

Functions are never that owner. A request signed with an environment's execution-role credentials
(kambda/aws/roles.py: the session token proves them) acts with the role's rights in every mode.
When functions are sandboxed (``sandbox_uids``) and no credentials are configured, a request whose
connection the kernel says belongs to a sandbox uid (kambda/peers.py) is served only so signed:
unsigned, or signed with anything else, it is AccessDenied, on loopback too; /metrics is not public
to it either. (With credentials configured, loopback grants nothing anyway: a function signs with
its role's credentials or with one of the file's, and gets those rights.)

Always public: ``/_kambda/health``, and the HTTP trigger paths ``/http/`` and ``/url/`` (they check
their own AuthType, calling :func:`authenticate` and :func:`authorize` for AWS_IAM). ``/metrics`` is
public on loopback (and everywhere with KAMBDA_METRICS_PUBLIC), signed otherwise.

Route handlers declare their IAM action with :func:`requires`; the resource is the function's ARN
(qualified when the request names a qualifier) when the route has ``{name}``, the mapping's ARN
when it has ``{uuid}``, else ``*``. A handler whose resource depends on the body declares
``requires(SELF)`` and calls :func:`authorize` itself. A route that declares nothing is admin-only.

The credentials file is JSON, ``{"credentials": [{"accessKeyId", "secretAccessKey", "sessionToken"
(optional), "role" (admin|deployer|invoker, optional), "policy" (optional IAM policy)}]}``. It is
re-read when it changes (checked at most once a second; a Kubernetes Secret volume's symlink swap
counts); a file that does not parse keeps the last good credentials and the reason is logged.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from kambda.aws import chunked, errors, roles, sigv4
from kambda.aws.bodies import read_whole
from kambda.aws.policy import ADMIN, Permissions, PolicyError
from kambda.names import Arns, parse_function
from kambda.peers import PeerCache
from kambda.settings import is_loopback

log = logging.getLogger(__name__)

#: The action of a route that declares none: no built-in role but admin has it.
UNDECLARED = "kambda:UndeclaredOperation"
#: ``requires(SELF)``: the handler calls :func:`authorize` itself (its resource is in the body).
SELF = "self"
#: A handler that authenticates the request itself (the front door: its errors take the service's protocol).
ITSELF = "itself"
PUBLIC_PATHS = frozenset({"/_kambda/health", "/http"})
PUBLIC_PREFIXES = ("/http/", "/url/")
METRICS_PATH = "/metrics"
#: The SigV4 signing names of the services kambda serves (kambda/aws/endpoints.py SERVED; tests/test_auth.py keeps
#: the two in step): a signature scoped to another service is refused.
ACCEPTED_SERVICES = frozenset({"lambda", "events", "sts", "s3", "iam", "dynamodb", "states", "ecr", "ecs"})
UNRECOGNIZED = "The security token included in the request is invalid."
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: Role sessions whose secrets :meth:`Authenticator.secret_of` remembers.
MAX_SESSIONS = 4096

H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])


def requires(action: str) -> Callable[[H], H]:
    """Declare the IAM action (``lambda:GetFunction``) a route handler performs."""

    def mark(handler: H) -> H:
        handler.iam_action = action  # type: ignore[attr-defined]
        return handler

    return mark


class CredentialsError(ValueError):
    """A credentials file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Credential:
    access_key: str
    secret: str = ""
    session_token: str | None = None
    permissions: Permissions = ADMIN
    #: The execution role a function's credential acts as (kambda/aws/roles.py); empty for others.
    role: str = ""


#: The caller when signatures are not required (no credentials configured).
LOCAL = Credential(access_key="")


def parse_credentials(text: str, source: str) -> dict[str, Credential]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise CredentialsError(f"{source} is not JSON: {exc}") from None
    entries = document.get("credentials") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise CredentialsError(f'{source} must be {{"credentials": [...]}}')
    found: dict[str, Credential] = {}
    for i, entry in enumerate(entries):
        where = f"{source}: credentials[{i}]"
        if not isinstance(entry, dict):
            raise CredentialsError(f"{where} must be an object")
        key, secret, token = entry.get("accessKeyId"), entry.get("secretAccessKey"), entry.get("sessionToken")
        if not isinstance(key, str) or not key or not isinstance(secret, str) or not secret:
            raise CredentialsError(f"{where} needs accessKeyId and secretAccessKey (non-empty strings)")
        if token is not None and not (isinstance(token, str) and token):
            raise CredentialsError(f"{where}: sessionToken must be a non-empty string when given")
        if key in found:
            raise CredentialsError(f"{where}: accessKeyId {key} appears twice")
        try:
            permissions = Permissions.of(entry.get("role"), entry.get("policy"))
        except PolicyError as exc:
            raise CredentialsError(f"{where} ({key}): {exc}") from None
        found[key] = Credential(key, secret, token, permissions)
    if not found:
        raise CredentialsError(f"{source} holds no credentials")
    return found


class CredentialStore:
    """The credentials of a file, re-read when the file changes; a bad new file keeps the old ones."""

    def __init__(self, path: Path, monotonic: Callable[[], float] = time.monotonic, interval: float = 1.0) -> None:
        self.path = path
        self._monotonic = monotonic
        self._interval = interval
        self._checked = float("-inf")
        self._stamp: tuple[int, ...] | None = None
        #: The state of the file last refused (``()``: unreadable), so that it is reported once.
        self._rejected: tuple[int, ...] | None = None
        self.credentials = self._load()

    def _stat(self) -> tuple[int, ...]:
        st = os.stat(self.path)  # follows symlinks: a Secret volume swaps ..data under the same name
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> dict[str, Credential]:
        try:
            stamp = self._stat()
            text = self.path.read_text()
        except OSError as exc:
            raise CredentialsError(f"cannot read credentials file {self.path}: {exc.strerror or exc}") from None
        credentials = parse_credentials(text, str(self.path))
        self._stamp = stamp
        return credentials

    def secret_of(self, access_key: str) -> str | None:
        credential = self.get(access_key)
        return credential.secret if credential is not None else None

    def get(self, access_key: str) -> Credential | None:
        now = self._monotonic()
        if now - self._checked >= self._interval:
            self._checked = now
            self._reload_if_changed()
        return self.credentials.get(access_key)

    def _reload_if_changed(self) -> None:
        try:
            stamp = self._stat()
        except OSError as exc:
            if self._rejected != ():
                log.warning("credentials file %s is unreadable (%s); keeping the last good credentials",
                            self.path, exc.strerror or exc)
                self._rejected = ()
            return
        if stamp == self._stamp:
            self._rejected = None
            return
        if stamp == self._rejected:
            return
        try:
            self.credentials = self._load()
        except CredentialsError as exc:
            self._rejected = stamp
            log.warning("%s; keeping the last good credentials (%d keys)", exc, len(self.credentials))
            return
        self._rejected = None
        log.info("credentials reloaded from %s (%d keys)", self.path, len(self.credentials))


class Authenticator:
    """Authenticates requests against a credential store (or none) with an injected clock."""

    def __init__(self, store: CredentialStore | None, arns: Arns, insecure: bool = False,
                 public_metrics: bool = False, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 role_key: bytes = b"", sandbox_uids: range | None = None,
                 peers: PeerCache | None = None,
                 role_permissions: Callable[[str], Permissions] = roles.permissions_of) -> None:
        """``role_permissions(role ARN)``: what a function's execution-role credentials may do (iam/roles.py)."""
        self.store = store
        self.arns = arns
        self.insecure = insecure
        self.public_metrics = public_metrics
        self.now = now
        self.role_key = role_key
        self.sandbox_uids = sandbox_uids
        self.role_permissions = role_permissions
        self._peers = peers or PeerCache()
        #: The secrets of execution-role sessions whose signatures verified lately, for their streamed bodies'
        #: chunk signatures (:meth:`secret_of`); bounded, oldest dropped first.
        self._sessions: dict[str, str] = {}
        #: (principal ARN, action, resource) -> whether the resource's own policy allows it (a function's
        #: AddPermission statements), asked when the principal's identity does not; None: no such policies.
        self.resource_policy: Callable[[str, str, str], bool] | None = None

    def from_function(self, request: web.Request) -> bool:
        """Whether the caller is (or may be) a sandboxed function: its socket's uid is a sandbox uid,
        or it is on loopback and its socket cannot be found. Read once per connection."""
        if self.sandbox_uids is None:
            return False
        uid = self._peers.uid_of(request.transport)
        if uid is None:
            return is_loopback(request.remote)
        return uid in self.sandbox_uids

    def secret_of(self, access_key: str) -> str | None:
        """The secret of a configured access key, or of a role session that signed a request lately (None without
        credentials: signatures are not checked)."""
        secret = self.store.secret_of(access_key) if self.store is not None else None
        return secret if secret is not None else self._sessions.get(access_key)

    def describe(self) -> str:
        if self.store is not None:
            return f"SigV4 required, {len(self.store.credentials)} credentials from {self.store.path}"
        if self.insecure:
            return "INSECURE: no credentials, unsigned requests accepted from anywhere"
        return "no credentials: unsigned requests accepted from loopback only"

    async def authenticate(self, request: web.Request) -> Credential:
        """The credential that signed ``request``; raises the AWS error when there is none that did."""
        v2_header = request.headers.get("Authorization", "").startswith("AWS ")
        signed = None if v2_header else sigv4.parse(request.headers, request.query)
        if signed is not None and self.role_key and roles.is_role_token(signed.security_token):
            return await self._role_session(request, signed)
        if self.store is None:
            if self.from_function(request):
                raise errors.AccessDenied("A function calls kambda only with its execution role's credentials "
                                          "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)")
            if self.insecure or is_loopback(request.remote):
                return LOCAL
            raise errors.MissingAuthenticationToken("Missing Authentication Token")
        if v2_header:
            return self._signed_v2(request)
        if signed is None and _V2_QUERY <= request.query.keys():
            return self._presigned_v2(request)
        if signed is None:
            raise errors.MissingAuthenticationToken("Missing Authentication Token")
        if signed.service not in ACCEPTED_SERVICES:
            raise errors.InvalidSignature(f"Credential should be scoped to correct service: "
                                          f"'{signed.service}' is not one of {', '.join(sorted(ACCEPTED_SERVICES))}.")
        sigv4.check_time(signed, self.now())
        credential = self.store.get(signed.access_key)
        if credential is None:
            raise errors.UnrecognizedClient(UNRECOGNIZED)
        if signed.expires is None and signed.security_token is not None \
                and "x-amz-security-token" not in signed.signed_headers:
            raise errors.InvalidSignature("X-Amz-Security-Token must be a signed header.")
        if not _same_token(credential.session_token, signed.security_token):
            raise errors.UnrecognizedClient(UNRECOGNIZED)
        await verify_signature(request, signed, credential.secret)
        return credential

    def _presigned_v2(self, request: web.Request) -> Credential:
        """An S3 URL presigned with signature version 2 (``AWSAccessKeyId``, ``Expires``, ``Signature``), which
        ``aws s3 presign`` and boto3's ``generate_presigned_url`` make unless told ``s3v4``."""
        assert self.store is not None
        query = request.query
        credential = self.store.get(query["AWSAccessKeyId"])
        if credential is None or credential.session_token is not None:
            raise errors.UnrecognizedClient(UNRECOGNIZED)
        if not query["Expires"].isdigit() or int(query["Expires"]) < self.now().timestamp():
            raise errors.AccessDenied("Request has expired")
        return _check_v2(request, credential, query["Expires"], query["Signature"])

    def _signed_v2(self, request: web.Request) -> Credential:
        """An S3 request signed with signature version 2 in its header (``Authorization: AWS key:signature``;
        boto3's ``signature_version="s3"``, older tools): the payload is not signed in this version."""
        assert self.store is not None
        key, _, signature = request.headers["Authorization"][4:].strip().partition(":")
        credential = self.store.get(key)
        if credential is None or not _same_token(credential.session_token,
                                                 request.headers.get("x-amz-security-token")):
            raise errors.UnrecognizedClient(UNRECOGNIZED)
        stamp = request.headers.get("x-amz-date") or request.headers.get("Date") or ""
        try:
            when = email.utils.parsedate_to_datetime(stamp)
        except (TypeError, ValueError):
            raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date header") from None
        if when.tzinfo is None or abs(self.now() - when) > sigv4.MAX_SKEW:
            raise errors.InvalidSignature("The difference between the request time and the current time is too "
                                          "large.")
        # With x-amz-date among the signed x-amz-* headers, the Date line is empty.
        date_line = "" if "x-amz-date" in request.headers else stamp
        return _check_v2(request, credential, date_line, signature)

    async def _role_session(self, request: web.Request, signed: sigv4.SignedRequest) -> Credential:
        """A function's execution-role credentials: the token proves them, the signature is checked."""
        if signed.service not in ACCEPTED_SERVICES:
            raise errors.InvalidSignature(f"Credential should be scoped to correct service: "
                                          f"'{signed.service}' is not one of {', '.join(sorted(ACCEPTED_SERVICES))}.")
        now = self.now()
        sigv4.check_time(signed, now)
        session = roles.verify(self.role_key, signed.access_key, signed.security_token or "", now.timestamp())
        if session is None:
            raise errors.UnrecognizedClient(UNRECOGNIZED)
        await verify_signature(request, signed, session.secret)
        if session.access_key not in self._sessions:
            if len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            self._sessions[session.access_key] = session.secret
        return Credential(session.access_key, session.secret, session.token, self.role_permissions(session.role),
                          role=session.role)

    def resource(self, request: web.Request) -> str:
        info = request.match_info
        if "name" in info:
            ref = parse_function(info["name"], request.query.get("Qualifier"))
            return self.arns.function(ref.name, ref.qualifier)
        if "uuid" in info:
            return f"arn:aws:lambda:{self.arns.region}:{self.arns.account}:event-source-mapping:{info['uuid']}"
        return "*"


_V2_QUERY = frozenset(("AWSAccessKeyId", "Expires", "Signature"))
#: The query keys that are part of an S3 signature-version-2 resource (botocore's HmacV1Auth's list).
_V2_SUBRESOURCES = frozenset((
    "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy",
    "requestPayment", "torrent", "versioning", "versionId", "versions", "website", "uploads", "uploadId",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "delete", "lifecycle", "tagging", "restore",
    "storageClass", "notification", "replication", "analytics", "metrics", "inventory", "select", "select-type",
    "object-lock"))


def _check_v2(request: web.Request, credential: Credential, when: str, signature: str) -> Credential:
    raw_path = request.raw_path.partition("?")[0]
    host = request.headers.get("Host", "").lower()
    host = host.rpartition(":")[0] if ":" in host else host
    paths = [raw_path]
    if raw_path.count("/") == 1 and raw_path != "/":
        paths.append(raw_path + "/")  # botocore signs a bucket's own path-style resource as /bucket/
    if ".s3." in host:  # virtual-hosted: the bucket signs as the path's first segment
        paths.append(f"/{host.partition('.s3.')[0]}{raw_path}")
    for path in paths:
        expected = s3v2_signature(credential.secret, request.method, request.headers, request.query, path, when)
        if hmac.compare_digest(expected, signature):
            return credential
    raise errors.InvalidSignature(sigv4.SIGNATURE_MISMATCH)


def s3v2_signature(secret: str, method: str, headers: Mapping[str, str], query: Mapping[str, str],
                   raw_path: str, when: str) -> str:
    """S3's signature version 2: HMAC-SHA1 over the method, Content-MD5, Content-Type, ``when`` (a presigned
    URL's Expires, a header-signed request's Date), the ``x-amz-*`` headers and the resource (the path as sent
    and its subresources)."""
    amz = sorted((k.lower(), v.strip()) for k, v in headers.items() if k.lower().startswith("x-amz-"))
    amz_text = "".join(f"{k}:{v}\n" for k, v in amz)
    subs = sorted((k, v) for k, v in query.items() if k in _V2_SUBRESOURCES)
    resource = raw_path + ("?" + "&".join(f"{k}={v}" if v else k for k, v in subs) if subs else "")
    text = "\n".join((method.upper(), headers.get("Content-MD5", ""), headers.get("Content-Type", ""),
                      when, amz_text + resource))
    return base64.b64encode(hmac.new(secret.encode(), text.encode("utf-8", "surrogateescape"),
                                     hashlib.sha1).digest()).decode()


async def verify_signature(request: web.Request, signed: sigv4.SignedRequest, secret: str) -> None:
    """Check the request's SigV4 signature with ``secret``. S3's unsigned and streaming payloads
    (``UNSIGNED-PAYLOAD``, ``STREAMING-*``) sign the header's literal value instead of the body's hash:
    the body is then not read here, and a streamed one is verified chunk by chunk as it arrives
    (kambda/aws/chunked.py, in the front door)."""
    claimed = request.headers.get("X-Amz-Content-SHA256", "")
    s3 = signed.service == "s3"
    if s3 and (claimed == chunked.UNSIGNED or claimed in chunked.STREAMING or _HEX64.fullmatch(claimed)):
        # A hex hash is signed as claimed; the front door's body reader checks the body against it as it
        # streams (an S3 body may be 5 GB: it is not read here).
        payload = claimed
    elif s3 and signed.expires is not None and not claimed:
        payload = chunked.UNSIGNED  # a presigned S3 URL signs no payload
    else:
        payload = sigv4.payload_hash(request.headers, await read_whole(request) if request.body_exists else b"")
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    sigv4.verify(signed, secret, sigv4.canonical_request(request.method, request.raw_path, headers,
                                                         signed.signed_headers, payload, s3=s3))


def _same_token(expected: str | None, given: str | None) -> bool:
    """A credential with a session token needs exactly it; one without needs none."""
    if expected is None or given is None:
        return expected is given
    return hmac.compare_digest(expected.encode(), given.encode())


AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
#: ``request[PRINCIPAL]``: the credential a request was authenticated as.
PRINCIPAL = web.RequestKey("principal", Credential)


async def authenticate(request: web.Request) -> Credential:
    """Authenticate on demand (function URLs with AuthType AWS_IAM); also sets ``request[PRINCIPAL]``."""
    credential = await request.app[AUTHENTICATOR].authenticate(request)
    request[PRINCIPAL] = credential
    return credential


def authorize(request: web.Request, action: str, resource: str) -> None:
    """Raise AccessDeniedException unless the request's principal may do ``action`` on ``resource``."""
    credential = request[PRINCIPAL]
    if not credential.permissions.allows(action, resource):
        authenticator = request.app[AUTHENTICATOR]
        principal = credential.role or f"arn:aws:iam::{authenticator.arns.account}:user/{credential.access_key}"
        granted = authenticator.resource_policy
        if granted is not None and not credential.permissions.denies(action, resource) \
                and granted(principal, action, resource):
            return
        who = f"{credential.role} (a function's execution role)" if credential.role else principal
        raise errors.AccessDenied(f"User: {who} is not authorized to perform: {action} on resource: {resource}")


async def allowed(request: web.Request, action: str, resource: str) -> bool:
    """For callers that answer in their own error shape (function URLs with AuthType AWS_IAM): whether
    the request is signed by a credential that may do ``action`` on ``resource``.

    The body is read (and hashed) here: read it afterwards with ``await request.read()``, not by
    streaming ``request.content``, which is then drained."""
    try:
        await authenticate(request)
        authorize(request, action, resource)
    except errors.KambdaError as exc:
        log.info("%s %s refused: %s: %s", request.method, request.path, exc.code, exc.message)
        return False
    return True


def presign(request: web.Request, path: str, expires: int = 600) -> str:
    """An absolute URL for a plain GET of ``path`` by the caller, presigned with the caller's own credential
    (how AWS hands out GetFunction's Code.Location); unsigned when signatures are not required."""
    url = f"{request.scheme}://{request.host}{path}"
    credential = request.get(PRINCIPAL)
    if credential is None or not credential.secret:
        return url
    auth = request.app[AUTHENTICATOR]
    return url + "?" + sigv4.presign(path, request.host, credential.access_key, credential.secret,
                                     credential.session_token, auth.arns.region, "lambda", auth.now(), expires)


@web.middleware
async def middleware(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    if getattr(request.match_info.handler, "iam_action", None) == ITSELF:
        return await handler(request)
    auth = request.app[AUTHENTICATOR]
    if path == METRICS_PATH and (auth.public_metrics or is_loopback(request.remote)) \
            and not auth.from_function(request):
        return await handler(request)
    credential = await authenticate(request)
    if credential is LOCAL:
        return await handler(request)  # no credentials: whoever may call at all acts as admin
    if request.match_info.http_exception is not None:
        return await handler(request)  # no such route: the 404 (or 405) says so, now that the caller is known
    action = _action_of(request.match_info.handler, path)
    if action != SELF:
        authorize(request, action, auth.resource(request))
    return await handler(request)


def _action_of(handler: Any, path: str) -> str:
    if path == METRICS_PATH:
        return "kambda:GetMetrics"
    return str(getattr(handler, "iam_action", UNDECLARED))
