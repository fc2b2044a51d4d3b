"""The built-in image registry: the OCI distribution API under ``/v2/``, its bytes in JetStream.

Storage (:class:`ImageStore`): blobs and manifests are objects of the ``kambda_images`` object store named by
digest (``blobs/sha256:<hex>``, ``manifests/sha256:<hex>``), shared by every repository (a blob pushed once is
there for all: a cross-repository mount always succeeds when the blob exists). Each repository is one key of the
``kambda_image_repos`` KV bucket holding its tags and images, updated with compare-and-set. A repository is made
by ECR's CreateRepository or by the first push to it (as ECR's create-on-push). An upload session is a key
``_upload.<uuid>`` there too: its bytes go to a fresh object-store chunk subject as they arrive (never a whole
layer in memory) and become the blob when the upload is completed with the digest they have. Read back with
kambda/bus/chunks.py (nats-py's ObjectStore.get leaks a consumer per read).

Auth: the gateway's credentials. Without credentials (``kambda up``'s default) any request from loopback is
served (any Basic auth accepted, ``docker login`` works), from elsewhere only with ``--insecure``; a sandboxed
function is refused. With credentials, the Basic password must be an ECR authorization token
(:func:`issue_token`, GetAuthorizationToken's; user ``AWS``) and the credential it names must be allowed the
ECR action (``ecr:BatchGetImage`` and ``ecr:GetDownloadUrlForLayer`` to pull, ``ecr:PutImage`` and the layer
upload actions to push) on the repository's ARN.

Not kept: garbage collection (blobs and manifests no image names stay in the object store) and pagination beyond
``n``/``last``. Upload sessions abandoned for a day are swept (:meth:`ImageStore.sweep`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from nats.js import JetStreamContext
from nats.js.api import Header, ObjectInfo, ObjectMetaOptions
from nats.js.errors import (
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NotFoundError,
    ObjectDeletedError,
    ObjectNotFoundError,
)
from nats.js.kv import KeyValue

from kambda.aws import auth
from kambda.bus import IMAGE_REPOS_BUCKET, IMAGES_BUCKET, chunks
from kambda.names import Arns
from kambda.settings import is_loopback
from tasks import oci

log = logging.getLogger(__name__)

#: Bytes of one object-store chunk (a message); the platform's NATS max_payload is far above.
CHUNK = 512 * 1024
#: Chunks pulled at a time when a blob is read back.
READ_BATCH = 16
MAX_MANIFEST = 4 * 1024 * 1024
#: How long an ECR authorization token is good for (ECR's: 12 hours).
TOKEN_TTL_S = 12 * 3600
UPLOAD_PREFIX = "_upload."
#: An upload session nobody wrote to for this long is abandoned: a sweep (at most hourly, when an upload starts)
#: deletes it and purges its chunks.
UPLOAD_TTL_S = 24 * 3600
SWEEP_EVERY_S = 3600
NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}


class RegistryError(Exception):
    """An error of the distribution API: its code, HTTP status and message."""

    def __init__(self, code: str, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.code, self.status, self.message, self.detail = code, status, message, detail

    def response(self) -> web.Response:
        headers = dict(API_VERSION)
        if self.code == "UNAUTHORIZED":
            headers["WWW-Authenticate"] = 'Basic realm="kambda"'
        body = {"errors": [{"code": self.code, "message": self.message, "detail": self.detail}]}
        return web.json_response(body, status=self.status, headers=headers)


def blob_unknown(digest: str) -> RegistryError:
    return RegistryError("BLOB_UNKNOWN", 404, "blob unknown to registry", {"digest": digest})


def manifest_unknown(reference: str) -> RegistryError:
    return RegistryError("MANIFEST_UNKNOWN", 404, "manifest unknown", {"reference": reference})


def name_unknown(name: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", 404, "repository name not known to registry", {"name": name})


def digest_invalid(message: str = "provided digest did not match uploaded content") -> RegistryError:
    return RegistryError("DIGEST_INVALID", 400, message)


def check_name(name: str) -> str:
    if len(name) > 256 or not NAME.match(name):
        raise RegistryError("NAME_INVALID", 400, "invalid repository name", {"name": name})
    return name


def _check_digest(digest: str) -> str:
    try:
        return oci.check_digest(digest)
    except oci.ImageError:
        raise digest_invalid(f"invalid digest {digest!r} (only sha256 is accepted)") from None


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# -- tokens ----------------------------------------------------------------------------------------------------------


def issue_token(access_key: str, secret: str, expires: float) -> str:
    """An ECR authorization token's password for the credential ``access_key`` (signed with its secret)."""
    payload = base64.urlsafe_b64encode(json.dumps({"k": access_key, "e": int(expires)}).encode()).decode()
    signature = hmac.new(secret.encode(), f"kambda-ecr|{payload}".encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{signature}"


def token_key(password: str) -> tuple[str, float] | None:
    """The access key and expiry a token's password names (not yet verified), or None."""
    payload, _, _ = password.partition(".")
    try:
        doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(doc["k"]), float(doc["e"])
    except (ValueError, KeyError, TypeError):
        return None


def verify_token(password: str, secret: str) -> bool:
    payload, _, signature = password.partition(".")
    expected = hmac.new(secret.encode(), f"kambda-ecr|{payload}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


# -- storage ---------------------------------------------------------------------------------------------------------


def blob_name(digest: str) -> str:
    return f"blobs/{digest}"


def manifest_name(digest: str) -> str:
    return f"manifests/{digest}"


class ImageStore:
    """Blobs, manifests and repositories on JetStream (see the module's docstring)."""

    def __init__(self, js: JetStreamContext, clock: Callable[[], float] = time.time) -> None:
        self.js = js
        self.clock = clock
        self._swept = float("-inf")
        self._kv: KeyValue | None = None
        #: Upload sessions' running digests in this process: uuid -> (bytes hashed, hasher).
        self._hashers: dict[str, tuple[int, Any]] = {}

    async def kv(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.js.key_value(IMAGE_REPOS_BUCKET)
        return self._kv

    # objects

    async def info(self, name: str) -> ObjectInfo | None:
        try:
            return await chunks.object_info(self.js, IMAGES_BUCKET, name)
        except (ObjectNotFoundError, ObjectDeletedError, NotFoundError):
            return None

    def chunks_of(self, info: ObjectInfo) -> AsyncIterator[bytes]:
        return chunks.object_chunks(self.js, IMAGES_BUCKET, info, batch=READ_BATCH)

    async def read(self, name: str) -> bytes | None:
        info = await self.info(name)
        if info is None:
            return None
        return b"".join([chunk async for chunk in self.chunks_of(info)])

    async def _publish_chunk(self, nuid: str, data: bytes) -> None:
        await self.js.publish(chunks.chunk_subject(IMAGES_BUCKET, nuid), data)

    async def _commit(self, name: str, nuid: str, size: int, count: int, sha256: bytes) -> None:
        """Publish the meta that makes the chunks on ``nuid`` the object ``name`` (rolling up any older meta)."""
        info = ObjectInfo(name=name, bucket=IMAGES_BUCKET, nuid=nuid, size=size, chunks=count, mtime=now_iso(),
                          digest="SHA-256=" + base64.urlsafe_b64encode(sha256).decode(),
                          options=ObjectMetaOptions(max_chunk_size=CHUNK))
        await self.js.publish(chunks.meta_subject(IMAGES_BUCKET, name), json.dumps(info.as_dict()).encode(),
                              headers={Header.ROLLUP: "sub"})

    async def purge(self, nuid: str) -> None:
        with contextlib.suppress(Exception):
            await self.js.purge_stream(chunks.object_stream(IMAGES_BUCKET),
                                       subject=chunks.chunk_subject(IMAGES_BUCKET, nuid))

    async def put_small(self, name: str, data: bytes) -> None:
        """Write a small object (a manifest) unless one of that name (a digest) is there."""
        if await self.info(name) is not None:
            return
        nuid = uuid.uuid4().hex
        count = 0
        for start in range(0, len(data), CHUNK):
            await self._publish_chunk(nuid, data[start:start + CHUNK])
            count += 1
        await self._commit(name, nuid, len(data), count, hashlib.sha256(data).digest())

    # upload sessions

    async def start_upload(self, repo: str) -> str:
        session = uuid.uuid4().hex
        now = self.clock()
        if now - self._swept >= SWEEP_EVERY_S:
            self._swept = now
            await self.sweep()
        doc = {"repo": repo, "nuid": uuid.uuid4().hex, "size": 0, "chunks": 0, "started": now, "touched": now}
        await (await self.kv()).create(UPLOAD_PREFIX + session, json.dumps(doc).encode())
        self._hashers[session] = (0, hashlib.sha256())
        return session

    async def upload(self, session: str) -> tuple[dict[str, Any], int]:
        try:
            entry = await (await self.kv()).get(UPLOAD_PREFIX + session)
        except (KeyNotFoundError, NotFoundError):
            entry = None
        if entry is None or not entry.value:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry", {"uuid": session})
        return json.loads(entry.value), entry.revision or 0

    async def append(self, session: str, body: AsyncIterator[bytes]) -> dict[str, Any]:
        """Write ``body`` to the session's chunks as it arrives; the session's new state."""
        doc, revision = await self.upload(session)
        size, hasher = self._hashers.get(session, (-1, None))
        if size != doc["size"]:
            hasher = None  # begun on another gateway: the digest is computed from the stored chunks at the end
        buffer = bytearray()
        count, total = doc["chunks"], doc["size"]

        async def flush(data: bytes) -> None:
            nonlocal count, total
            await self._publish_chunk(doc["nuid"], data)
            if hasher is not None:
                hasher.update(data)
            count += 1
            total += len(data)

        async for piece in body:
            buffer += piece
            while len(buffer) >= CHUNK:
                await flush(bytes(buffer[:CHUNK]))
                del buffer[:CHUNK]
        if buffer:
            await flush(bytes(buffer))
        doc = {**doc, "size": total, "chunks": count, "touched": self.clock()}
        try:
            await (await self.kv()).update(UPLOAD_PREFIX + session, json.dumps(doc).encode(), last=revision)
        except KeyWrongLastSequenceError:
            raise RegistryError("BLOB_UPLOAD_INVALID", 409, "the upload was written to concurrently") from None
        if hasher is not None:
            self._hashers[session] = (total, hasher)
        else:
            self._hashers.pop(session, None)
        return doc

    async def finish(self, session: str, digest: str) -> None:
        """Make the session's bytes the blob ``digest`` (DIGEST_INVALID when they are not that)."""
        doc, _ = await self.upload(session)
        size, hasher = self._hashers.pop(session, (-1, None))
        if hasher is None or size != doc["size"]:
            hasher = hashlib.sha256()
            if doc["chunks"]:
                reader = chunks.read(self.js, chunks.object_stream(IMAGES_BUCKET),
                                     chunks.chunk_subject(IMAGES_BUCKET, doc["nuid"]), batch=READ_BATCH)
                async with contextlib.aclosing(reader):
                    async for data in reader:
                        hasher.update(data)
        await self._forget(session)
        if "sha256:" + hasher.hexdigest() != digest:
            await self.purge(doc["nuid"])
            raise digest_invalid()
        if await self.info(blob_name(digest)) is not None:
            await self.purge(doc["nuid"])  # pushed before: keep the first copy
            return
        await self._commit(blob_name(digest), doc["nuid"], doc["size"], doc["chunks"], hasher.digest())

    async def sweep(self) -> int:
        """Delete the upload sessions abandoned for UPLOAD_TTL_S, their chunks purged; how many."""
        try:
            keys = await (await self.kv()).keys()
        except NoKeysError:
            return 0
        swept = 0
        for key in (k for k in keys if k.startswith(UPLOAD_PREFIX)):
            session = key.removeprefix(UPLOAD_PREFIX)
            try:
                doc, _ = await self.upload(session)
            except RegistryError:
                continue
            if self.clock() - float(doc.get("touched", doc.get("started", 0))) >= UPLOAD_TTL_S:
                await self._forget(session)
                await self.purge(doc["nuid"])
                swept += 1
        return swept

    async def cancel(self, session: str) -> None:
        doc, _ = await self.upload(session)
        await self._forget(session)
        await self.purge(doc["nuid"])

    async def _forget(self, session: str) -> None:
        self._hashers.pop(session, None)
        with contextlib.suppress(Exception):
            await (await self.kv()).purge(UPLOAD_PREFIX + session)

    # repositories

    async def repository(self, name: str) -> dict[str, Any] | None:
        found = await self._repository(name)
        return found[0] if found else None

    async def _repository(self, name: str) -> tuple[dict[str, Any], int] | None:
        try:
            entry = await (await self.kv()).get(name)
        except (KeyNotFoundError, NotFoundError):
            return None
        if entry is None or not entry.value:
            return None
        return json.loads(entry.value), entry.revision or 0

    async def create_repository(self, name: str, settings: dict[str, Any]) -> dict[str, Any] | None:
        """Make the repository; None when it exists."""
        doc = {"name": name, "createdAt": self.clock(), "tags": {}, "images": {}, **settings}
        try:
            await (await self.kv()).create(name, json.dumps(doc).encode())
        except KeyWrongLastSequenceError:
            return None
        return doc

    async def update(self, name: str, change: Callable[[dict[str, Any]], Awaitable[None] | None],
                     create: bool = False) -> dict[str, Any]:
        """Apply ``change`` to the repository (made first when ``create``), again when another writer won."""
        while True:
            found = await self._repository(name)
            if found is None:
                if not create:
                    raise name_unknown(name)
                await self.create_repository(name, {})
                continue
            doc, revision = found
            result = change(doc)
            if result is not None:
                await result
            try:
                await (await self.kv()).update(name, json.dumps(doc).encode(), last=revision)
                return doc
            except KeyWrongLastSequenceError:
                continue

    async def delete_repository(self, name: str) -> None:
        with contextlib.suppress(Exception):
            await (await self.kv()).purge(name)

    async def repositories(self) -> list[str]:
        try:
            keys = await (await self.kv()).keys()
        except NoKeysError:
            return []
        return sorted(k for k in keys if not k.startswith(UPLOAD_PREFIX))

    async def put_manifest(self, repo: str, reference: str, raw: bytes, declared: str) -> str:
        """Store a manifest pushed to ``repo`` as ``reference`` (a tag or its digest); returns its digest."""
        digest = oci.digest_of(raw)
        if reference.startswith("sha256:") and reference != digest:
            raise digest_invalid("the manifest's digest is not the reference it was pushed as")
        if not reference.startswith("sha256:") and not TAG.match(reference):
            raise RegistryError("TAG_INVALID", 400, "manifest tag did not match URI", {"tag": reference})
        try:
            manifest = oci.parse_manifest(raw, declared)
        except oci.ImageError as exc:
            raise RegistryError("MANIFEST_INVALID", 400, f"manifest invalid: {exc}") from None
        size = 0
        artifact = ""
        if isinstance(manifest, oci.Manifest):
            for descriptor in (manifest.config, *manifest.layers):
                if await self.info(blob_name(descriptor.digest)) is None:
                    raise RegistryError("MANIFEST_BLOB_UNKNOWN", 404, "blob unknown to registry",
                                        {"digest": descriptor.digest})
            size = sum(layer.size for layer in manifest.layers)
            artifact = manifest.config.media_type
        else:
            known = (await self.repository(repo) or {}).get("images", {})
            for descriptor in manifest.manifests:
                if descriptor.digest not in known:
                    raise manifest_unknown(descriptor.digest)
        await self.put_small(manifest_name(digest), raw)

        def change(doc: dict[str, Any]) -> None:
            if not reference.startswith("sha256:"):
                if doc.get("imageTagMutability") == "IMMUTABLE" and doc["tags"].get(reference, digest) != digest:
                    raise RegistryError("TAG_INVALID", 400, f"The image tag '{reference}' already exists in "
                                        f"the '{repo}' repository and cannot be overwritten because the "
                                        "repository is immutable.")
                doc["tags"][reference] = digest
            doc["images"].setdefault(digest, {"mediaType": manifest.media_type, "size": size,
                                              "manifestSize": len(raw), "artifactMediaType": artifact,
                                              "pushedAt": self.clock()})

        await self.update(repo, change, create=True)
        return digest

    async def resolve(self, repo: str, reference: str) -> tuple[str, str]:
        """(digest, media type) of ``reference`` (a tag or digest) in ``repo``; NAME/MANIFEST_UNKNOWN."""
        doc = await self.repository(repo)
        if doc is None:
            raise name_unknown(repo)
        digest = reference if reference.startswith("sha256:") else doc["tags"].get(reference)
        image = doc["images"].get(digest) if digest else None
        if image is None or digest is None:
            raise manifest_unknown(reference)
        return digest, str(image["mediaType"])

    async def manifest(self, repo: str, reference: str) -> tuple[str, str, bytes]:
        """(digest, media type, bytes) of a manifest of ``repo``."""
        digest, media_type = await self.resolve(repo, reference)
        raw = await self.read(manifest_name(digest))
        if raw is None:
            raise manifest_unknown(reference)
        return digest, media_type, raw

    async def delete_manifest(self, repo: str, reference: str) -> None:
        def change(doc: dict[str, Any]) -> None:
            if reference.startswith("sha256:"):
                if doc["images"].pop(reference, None) is None:
                    raise manifest_unknown(reference)
                doc["tags"] = {t: d for t, d in doc["tags"].items() if d != reference}
            elif doc["tags"].pop(reference, None) is None:
                raise manifest_unknown(reference)

        await self.update(repo, change)


# -- the HTTP API ----------------------------------------------------------------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The ECR action a route performs (the registry's IAM actions are ECR's).
PULL_MANIFEST, PULL_BLOB = "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"
PUSH_MANIFEST, PUSH_BLOB = "ecr:PutImage", "ecr:UploadLayerPart"
LIST = "ecr:DescribeRepositories"


class Registry:
    """The distribution API's routes over an :class:`ImageStore`."""

    def __init__(self, store: ImageStore, arns: Arns) -> None:
        self.store = store
        self.arns = arns

    def repository_arn(self, name: str) -> str:
        return f"arn:aws:ecr:{self.arns.region}:{self.arns.account}:repository/{name}"

    def routes(self) -> list[web.RouteDef]:
        n = "/v2/{name:[A-Za-z0-9][A-Za-z0-9._/-]*}"  # check_name refuses what the spec does not allow
        return [
            web.get("/v2/", self._wrap(self.version, "")),
            web.get("/v2", self._wrap(self.version, "")),
            web.get("/v2/_catalog", self._wrap(self.catalog, LIST)),
            web.get(n + "/tags/list", self._wrap(self.tags, PULL_MANIFEST)),
            web.get(n + "/manifests/{reference}", self._wrap(self.get_manifest, PULL_MANIFEST)),
            web.put(n + "/manifests/{reference}", self._wrap(self.put_manifest, PUSH_MANIFEST)),
            web.delete(n + "/manifests/{reference}", self._wrap(self.delete_manifest, "ecr:BatchDeleteImage")),
            web.post(n + "/blobs/uploads/", self._wrap(self.start_upload, PUSH_BLOB)),
            web.post(n + "/blobs/uploads", self._wrap(self.start_upload, PUSH_BLOB)),
            web.get(n + "/blobs/uploads/{uuid}", self._wrap(self.upload_status, PUSH_BLOB)),
            web.patch(n + "/blobs/uploads/{uuid}", self._wrap(self.patch_upload, PUSH_BLOB)),
            web.put(n + "/blobs/uploads/{uuid}", self._wrap(self.finish_upload, PUSH_BLOB)),
            web.delete(n + "/blobs/uploads/{uuid}", self._wrap(self.cancel_upload, PUSH_BLOB)),
            web.get(n + "/blobs/{digest}", self._wrap(self.get_blob, PULL_BLOB)),
            web.delete(n + "/blobs/{digest}", self._wrap(self.delete_blob, "ecr:BatchDeleteImage")),
        ]

    def _wrap(self, handler: Handler, action: str) -> Handler:
        @auth.requires(auth.ITSELF)
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                name = request.match_info.get("name")
                if name is not None:
                    check_name(name)
                await self.authorize(request, action, self.repository_arn(name) if name else "*")
                response = await handler(request)
            except RegistryError as err:
                return err.response()
            response.headers.update(API_VERSION)
            return response

        return run

    async def authorize(self, request: web.Request, action: str, resource: str) -> None:
        """The caller may do ``action`` on ``resource`` (see the module's docstring), else UNAUTHORIZED/DENIED."""
        authenticator = request.app[auth.AUTHENTICATOR]
        store = authenticator.store
        if store is None:
            if authenticator.from_function(request):
                raise RegistryError("DENIED", 403, "a function may not use the registry without credentials")
            if authenticator.insecure or is_loopback(request.remote):
                return
            raise RegistryError("UNAUTHORIZED", 401, "authentication required (from loopback only)")
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except ValueError:
            user = password = ""
        named = token_key(password) if scheme.lower() == "basic" and user == "AWS" else None
        if named is None:
            raise RegistryError("UNAUTHORIZED", 401, "authentication required: docker login with "
                                "aws ecr get-login-password")
        credential = store.get(named[0])
        if credential is None or not verify_token(password, credential.secret) \
                or named[1] < authenticator.now().timestamp():
            raise RegistryError("UNAUTHORIZED", 401, "the authorization token is invalid or has expired")
        if action and not credential.permissions.allows(action, resource):
            raise RegistryError("DENIED", 403, f"not authorized to perform: {action} on resource: {resource}")

    async def version(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({})

    async def catalog(self, request: web.Request) -> web.StreamResponse:
        names = await self.store.repositories()
        return web.json_response({"repositories": _page(names, request)})

    async def tags(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        doc = await self.store.repository(name)
        if doc is None:
            raise name_unknown(name)
        return web.json_response({"name": name, "tags": _page(sorted(doc["tags"]), request)})

    async def get_manifest(self, request: web.Request) -> web.StreamResponse:
        name, reference = request.match_info["name"], request.match_info["reference"]
        digest, media_type, raw = await self.store.manifest(name, reference)
        headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'}
        return web.Response(body=raw, headers=headers, content_type=media_type)

    async def put_manifest(self, request: web.Request) -> web.StreamResponse:
        name, reference = request.match_info["name"], request.match_info["reference"]
        parts: list[bytes] = []
        size = 0
        async for piece in request.content.iter_chunked(CHUNK):  # one read() may return only part of the body
            size += len(piece)
            if size > MAX_MANIFEST:
                raise RegistryError("SIZE_INVALID", 400, f"a manifest may be at most {MAX_MANIFEST} bytes")
            parts.append(piece)
        raw = b"".join(parts)
        digest = await self.store.put_manifest(name, reference, raw, request.headers.get("Content-Type", ""))
        return web.Response(status=201, headers={"Docker-Content-Digest": digest,
                                                 "Location": f"/v2/{name}/manifests/{digest}"})

    async def delete_manifest(self, request: web.Request) -> web.StreamResponse:
        await self.store.delete_manifest(request.match_info["name"], request.match_info["reference"])
        return web.Response(status=202)

    async def start_upload(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        mount = request.query.get("mount")
        if mount and await self.store.info(blob_name(_check_digest(mount))) is not None:
            return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{mount}",
                                                     "Docker-Content-Digest": mount})
        session = await self.store.start_upload(name)
        digest = request.query.get("digest")
        if digest:  # monolithic: POST ?digest= with the body
            _check_digest(digest)
            await self.store.append(session, request.content.iter_chunked(CHUNK))
            await self.store.finish(session, digest)
            return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{digest}",
                                                     "Docker-Content-Digest": digest})
        return self._upload_response(name, session, 0, 202)

    def _upload_response(self, name: str, session: str, size: int, status: int) -> web.Response:
        return web.Response(status=status, headers={
            "Location": f"/v2/{name}/blobs/uploads/{session}", "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": session, "Content-Length": "0"})

    async def upload_status(self, request: web.Request) -> web.StreamResponse:
        doc, _ = await self.store.upload(request.match_info["uuid"])
        return self._upload_response(request.match_info["name"], request.match_info["uuid"], doc["size"], 204)

    async def patch_upload(self, request: web.Request) -> web.StreamResponse:
        session = request.match_info["uuid"]
        content_range = request.headers.get("Content-Range")
        if content_range:
            doc, _ = await self.store.upload(session)
            start = content_range.partition("-")[0].strip()
            if not start.isdigit() or int(start) != doc["size"]:
                return web.Response(status=416, headers={"Range": f"0-{max(doc['size'] - 1, 0)}",
                                                         "Location": f"/v2/{request.match_info['name']}/blobs/"
                                                                     f"uploads/{session}"})
        doc = await self.store.append(session, request.content.iter_chunked(CHUNK))
        return self._upload_response(request.match_info["name"], session, doc["size"], 202)

    async def finish_upload(self, request: web.Request) -> web.StreamResponse:
        name, session = request.match_info["name"], request.match_info["uuid"]
        digest = _check_digest(request.query.get("digest", ""))
        if request.body_exists:
            await self.store.append(session, request.content.iter_chunked(CHUNK))
        await self.store.finish(session, digest)
        return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{digest}",
                                                 "Docker-Content-Digest": digest, "Content-Length": "0"})

    async def cancel_upload(self, request: web.Request) -> web.StreamResponse:
        await self.store.cancel(request.match_info["uuid"])
        return web.Response(status=204)

    async def get_blob(self, request: web.Request) -> web.StreamResponse:
        digest = _check_digest(request.match_info["digest"])
        info = await self.store.info(blob_name(digest))
        if info is None:
            raise blob_unknown(digest)
        size = info.size or 0
        start, end = 0, size - 1
        status = 200
        try:
            wanted = request.http_range if "Range" in request.headers else None
        except ValueError:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"', "Accept-Ranges": "bytes"}
        if wanted is not None and (wanted.start is not None or wanted.stop is not None):
            start = wanted.start if wanted.start is not None else 0
            if start < 0:
                start = max(size + start, 0)
            end = min((wanted.stop if wanted.stop is not None else size) - 1, size - 1)
            if start > end:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = "application/octet-stream"
        response.content_length = end - start + 1 if size else 0
        await response.prepare(request)
        if request.method == "HEAD" or not size:
            return response
        offset = 0
        reader = self.store.chunks_of(info)
        async with contextlib.aclosing(reader):  # type: ignore[type-var]
            async for chunk in reader:
                low, high = max(start - offset, 0), min(end + 1 - offset, len(chunk))
                if low < high:
                    await response.write(chunk[low:high])
                offset += len(chunk)
                if offset > end:
                    break
        await response.write_eof()
        return response

    async def delete_blob(self, request: web.Request) -> web.StreamResponse:
        raise RegistryError("UNSUPPORTED", 405, "blobs are deleted with the images that name them")


def _page(names: list[str], request: web.Request) -> list[str]:
    last = request.query.get("last")
    if last:
        names = [n for n in names if n > last]
    count = request.query.get("n")
    if count and count.isdigit():
        names = names[:int(count)]
    return names
