"""ECR's API (JSON 1.1, ``AmazonEC2ContainerRegistry_V20150921.*``) over the built-in registry's store.

Repositories, images (a manifest with its tags), ``GetAuthorizationToken`` (a token for Basic auth on the registry:
``docker login -u AWS -p $(aws ecr get-login-password) <proxyEndpoint>``), and :func:`resolve`, which says which
repository and reference of the built-in registry an image reference names (``<account>.dkr.ecr.<region>.
amazonaws.com/<repo>:<tag>``, the gateway's own host, or a bare ``repo:tag``).

``repositoryUri`` is ECR's shape (``<account>.dkr.ecr.<region>.amazonaws.com/<name>``): kambda resolves it to the
built-in registry wherever an image is named (ECS task definitions, image functions); tools push to the gateway's
address (``proxyEndpoint``). Left out: lifecycle and repository policies, scanning, replication, pull-through
caches, layer-upload operations (the registry's HTTP API does uploads).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kambda.aws.errors import KambdaError
from kambda.aws.front import Context, Front
from kambda.names import Arns
from tasks import oci, registry
from tasks.registry import ImageStore, RegistryError


class EcrError(KambdaError):
    status = 400
    error_type = "User"


def _error(code: str) -> type[EcrError]:
    return type(code, (EcrError,), {"code": code})


InvalidParameter = _error("InvalidParameterException")
RepositoryNotFound = _error("RepositoryNotFoundException")
RepositoryAlreadyExists = _error("RepositoryAlreadyExistsException")
RepositoryNotEmpty = _error("RepositoryNotEmptyException")
ImageNotFound = _error("ImageNotFoundException")
ImageAlreadyExists = _error("ImageAlreadyExistsException")
ImageTagAlreadyExists = _error("ImageTagAlreadyExistsException")
LayersNotFound = _error("LayersNotFoundException")
ReferencedImagesNotFound = _error("ReferencedImagesNotFoundException")
ImageDigestDoesNotMatch = _error("ImageDigestDoesNotMatchException")

ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
MUTABILITY = ("MUTABLE", "IMMUTABLE")


class ExternalImage(ValueError):
    """An image reference naming a registry other than kambda's own."""


@dataclass(frozen=True)
class Reference:
    """An image reference taken apart: registry host ('' for none), repository, tag or digest."""

    registry: str
    repository: str
    reference: str


def parse_reference(reference: str) -> Reference:
    """``[host[:port]/]repo[:tag][@sha256:...]`` taken apart (the tag defaults to ``latest``); ValueError."""
    rest = reference.strip()
    digest = ""
    if "@" in rest:
        rest, digest = rest.rsplit("@", 1)
    first, slash, remainder = rest.partition("/")
    host = ""
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, rest = first, remainder
    tag = ""
    name, colon, maybe_tag = rest.rpartition(":")
    if colon and "/" not in maybe_tag:
        rest, tag = name, maybe_tag
    if not rest:
        raise ValueError(f"not an image reference: {reference!r}")
    return Reference(host, rest, digest or tag or "latest")


def resolve(reference: str, local_hosts: Iterable[str] = ()) -> tuple[str, str]:
    """(repository, tag or digest) in the built-in registry of an image reference naming it: an ECR host
    (any account and region: kambda is the one registry), one of ``local_hosts`` (the gateway's
    ``host:port``), ``localhost``/``127.0.0.1`` with any port, or no host at all. ExternalImage otherwise."""
    parsed = parse_reference(reference)
    host = parsed.registry
    bare_host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if host and not ECR_HOST.match(bare_host) and host not in set(local_hosts) \
            and bare_host not in ("localhost", "127.0.0.1", "[::1]"):
        raise ExternalImage(f"{reference} is in the registry {host}, not kambda's")
    return parsed.repository, parsed.reference


def _name(params: dict[str, Any]) -> str:
    name = params.get("repositoryName")
    if not isinstance(name, str) or not (2 <= len(name) <= 256) or not registry.NAME.match(name):
        raise InvalidParameter("Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy "
                               "regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*''")
    return name


class EcrApi:
    """The ECR operations, registered on the front door."""

    def __init__(self, store: ImageStore, arns: Arns, secret_of: Callable[[str], str | None],
                 now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.arns = arns
        self.secret_of = secret_of
        self.now = now

    def register(self, front: Front) -> None:
        for operation, handler in (
                ("CreateRepository", self.create_repository), ("DescribeRepositories", self.describe_repositories),
                ("DeleteRepository", self.delete_repository), ("DescribeImages", self.describe_images),
                ("ListImages", self.list_images), ("BatchGetImage", self.batch_get_image),
                ("BatchDeleteImage", self.batch_delete_image), ("PutImage", self.put_image)):
            front.register("ecr", operation, handler, self._resources)
        front.register("ecr", "GetAuthorizationToken", self.get_authorization_token)

    def _resources(self, ctx: Context, params: dict[str, Any]) -> list[str]:
        names = params.get("repositoryNames") if ctx.operation.name == "DescribeRepositories" else None
        if names:
            return [self.arn(str(n)) for n in names]
        name = params.get("repositoryName")
        return [self.arn(name)] if isinstance(name, str) else ["*"]

    def arn(self, name: str) -> str:
        return f"arn:aws:ecr:{self.arns.region}:{self.arns.account}:repository/{name}"

    def uri(self, name: str) -> str:
        return f"{self.arns.account}.dkr.ecr.{self.arns.region}.amazonaws.com/{name}"

    def _repository(self, doc: dict[str, Any]) -> dict[str, Any]:
        name = doc["name"]
        return {"repositoryArn": self.arn(name), "registryId": self.arns.account, "repositoryName": name,
                "repositoryUri": self.uri(name), "createdAt": doc.get("createdAt", 0.0),
                "imageTagMutability": doc.get("imageTagMutability", "MUTABLE"),
                "imageScanningConfiguration": {"scanOnPush": bool(doc.get("scanOnPush", False))},
                "encryptionConfiguration": {"encryptionType": "AES256"}}

    def _not_found(self, name: str) -> EcrError:
        return RepositoryNotFound(f"The repository with name '{name}' does not exist in the registry with id "
                                  f"'{self.arns.account}'")

    async def _doc(self, name: str) -> dict[str, Any]:
        doc = await self.store.repository(name)
        if doc is None:
            raise self._not_found(name)
        return doc

    # -- repositories

    async def create_repository(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params)
        mutability = params.get("imageTagMutability", "MUTABLE")
        if mutability not in MUTABILITY:
            raise InvalidParameter(f"Invalid parameter at 'imageTagMutability' failed to satisfy constraint: "
                                   f"'Member must satisfy enum value set: [{', '.join(MUTABILITY)}]'")
        scanning = params.get("imageScanningConfiguration") or {}
        doc = await self.store.create_repository(name, {
            "imageTagMutability": mutability, "scanOnPush": bool(scanning.get("scanOnPush", False)),
            "resourceTags": params.get("tags") or []})
        if doc is None:
            raise RepositoryAlreadyExists(f"The repository with name '{name}' already exists in the registry with "
                                          f"id '{self.arns.account}'")
        return {"repository": self._repository(doc)}

    async def describe_repositories(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        names = params.get("repositoryNames")
        if names:
            docs = [await self._doc(str(name)) for name in names]
        else:
            docs = [d for d in [await self.store.repository(n) for n in await self.store.repositories()] if d]
        page, token = _paged(docs, params)
        return {"repositories": [self._repository(d) for d in page], **token}

    async def delete_repository(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params)
        doc = await self._doc(name)
        if doc["images"] and not params.get("force"):
            raise RepositoryNotEmpty(f"The repository with name '{name}' in registry with id '{self.arns.account}' "
                                     "cannot be deleted because it still contains images")
        await self.store.delete_repository(name)
        return {"repository": self._repository(doc)}

    # -- images

    def _tags_of(self, doc: dict[str, Any], digest: str) -> list[str]:
        return sorted(tag for tag, d in doc["tags"].items() if d == digest)

    def _find(self, doc: dict[str, Any], image_id: dict[str, Any]) -> tuple[str | None, dict[str, str] | None]:
        """(digest, failure) of an imageId."""
        digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
        if not digest and not tag:
            return None, {"failureCode": "MissingDigestAndTag", "failureReason": "Invalid request parameters: both "
                          "tag and digest cannot be null"}
        if digest and not oci.DIGEST.match(str(digest)):
            return None, {"failureCode": "InvalidImageDigest", "failureReason": "Invalid request parameters: image "
                          "digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'"}
        by_tag = doc["tags"].get(tag) if tag else None
        if tag and digest and by_tag != digest:
            if by_tag is None:
                return None, {"failureCode": "ImageNotFound", "failureReason": "Requested image not found"}
            return None, {"failureCode": "ImageTagDoesNotMatchDigest", "failureReason": "Invalid request "
                          "parameters: given tag does not map to the given digest"}
        found = digest or by_tag
        if found is None or found not in doc["images"]:
            return None, {"failureCode": "ImageNotFound", "failureReason": "Requested image not found"}
        return str(found), None

    def _detail(self, doc: dict[str, Any], digest: str) -> dict[str, Any]:
        image = doc["images"][digest]
        detail = {"registryId": self.arns.account, "repositoryName": doc["name"], "imageDigest": digest,
                  "imageSizeInBytes": int(image.get("size", 0)), "imagePushedAt": image.get("pushedAt", 0.0),
                  "imageManifestMediaType": image.get("mediaType", "")}
        tags = self._tags_of(doc, digest)
        if tags:
            detail["imageTags"] = tags
        if image.get("artifactMediaType"):
            detail["artifactMediaType"] = image["artifactMediaType"]
        return detail

    async def describe_images(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self._doc(_name(params))
        wanted = params.get("imageIds")
        if wanted:
            digests = []
            for image_id in wanted:
                digest, failure = self._find(doc, image_id)
                if digest is None:
                    raise ImageNotFound(f"The image with imageId {_show(image_id)} does not exist within the "
                                        f"repository with name '{doc['name']}' in the registry with id "
                                        f"'{self.arns.account}'")
                digests.append(digest)
        else:
            digests = sorted(doc["images"], key=lambda d: doc["images"][d].get("pushedAt", 0))
            digests = _by_tag_status(doc, digests, params)
        page, token = _paged(digests, params)
        return {"imageDetails": [self._detail(doc, d) for d in page], **token}

    async def list_images(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self._doc(_name(params))
        ids: list[dict[str, str]] = []
        for digest in _by_tag_status(doc, sorted(doc["images"], key=lambda d: doc["images"][d].get("pushedAt", 0)),
                                     params):
            tags = self._tags_of(doc, digest)
            ids += [{"imageDigest": digest, "imageTag": tag} for tag in tags] or [{"imageDigest": digest}]
        page, token = _paged(ids, params)
        return {"imageIds": page, **token}

    async def batch_get_image(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params)
        doc = await self._doc(name)
        images, failures = [], []
        for image_id in params.get("imageIds") or []:
            digest, failure = self._find(doc, image_id)
            if digest is None:
                failures.append({"imageId": image_id, **(failure or {})})
                continue
            _, media_type, raw = await self.store.manifest(name, digest)
            images.append({"registryId": self.arns.account, "repositoryName": name,
                           "imageId": {"imageDigest": digest, **({"imageTag": image_id["imageTag"]}
                                                                 if image_id.get("imageTag") else {})},
                           "imageManifest": raw.decode(), "imageManifestMediaType": media_type})
        return {"images": images, "failures": failures}

    async def batch_delete_image(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params)
        await self._doc(name)
        deleted: list[dict[str, str]] = []
        failures: list[dict[str, Any]] = []

        def change(doc: dict[str, Any]) -> None:
            deleted.clear()
            failures.clear()
            for image_id in params.get("imageIds") or []:
                digest, failure = self._find(doc, image_id)
                if digest is None:
                    failures.append({"imageId": image_id, **(failure or {})})
                    continue
                tag = image_id.get("imageTag")
                if tag and not image_id.get("imageDigest"):
                    doc["tags"].pop(tag, None)
                    deleted.append({"imageDigest": digest, "imageTag": tag})
                    if digest in doc["tags"].values():
                        continue  # other tags keep the image
                else:
                    deleted.extend({"imageDigest": digest, "imageTag": t} for t in self._tags_of(doc, digest))
                    if not self._tags_of(doc, digest):
                        deleted.append({"imageDigest": digest})
                    doc["tags"] = {t: d for t, d in doc["tags"].items() if d != digest}
                doc["images"].pop(digest, None)

        await self.store.update(name, change)
        return {"imageIds": deleted, "failures": failures}

    async def put_image(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params)
        doc = await self._doc(name)
        raw = str(params.get("imageManifest") or "").encode()
        tag, given = params.get("imageTag"), params.get("imageDigest")
        digest = oci.digest_of(raw)
        if given and given != digest:
            raise ImageDigestDoesNotMatch(f"Invalid parameter at 'imageDigest': the digest {given} does not match "
                                          f"the manifest's {digest}")
        if tag and doc["tags"].get(tag) == digest:
            raise ImageAlreadyExists(f"Image with digest '{digest}' and tag '{tag}' already exists in the repository "
                                     f"with name '{name}' in registry with id '{self.arns.account}'")
        try:
            await self.store.put_manifest(name, tag or digest, raw, str(params.get("imageManifestMediaType") or ""))
        except RegistryError as err:
            raise {"MANIFEST_BLOB_UNKNOWN": LayersNotFound, "MANIFEST_UNKNOWN": ReferencedImagesNotFound,
                   "DIGEST_INVALID": ImageDigestDoesNotMatch}.get(
                err.code, ImageTagAlreadyExists if "immutable" in err.message else InvalidParameter)(
                err.message) from None
        _, media_type = await self.store.resolve(name, digest)
        return {"image": {"registryId": self.arns.account, "repositoryName": name,
                          "imageId": {"imageDigest": digest, **({"imageTag": tag} if tag else {})},
                          "imageManifest": raw.decode(), "imageManifestMediaType": media_type}}

    # -- auth

    async def get_authorization_token(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        """A token for Basic auth (``AWS:<password>``) on the registry, valid 12 hours, signed with the caller's
        secret (without credentials configured the registry needs none: the token is a formality)."""
        expires = self.now() + registry.TOKEN_TTL_S
        key = ctx.access_key or "local"
        secret = self.secret_of(key) if ctx.access_key else None
        password = registry.issue_token(key, secret or "", expires)
        token = base64.b64encode(f"AWS:{password}".encode()).decode()
        endpoint = f"{ctx.request.scheme}://{ctx.request.host}"
        return {"authorizationData": [{"authorizationToken": token, "expiresAt": expires,
                                       "proxyEndpoint": endpoint}
                                      for _ in (params.get("registryIds") or [self.arns.account])]}


def _show(image_id: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}:'{v}'" for k, v in image_id.items()) + "}"


def _by_tag_status(doc: dict[str, Any], digests: list[str], params: dict[str, Any]) -> list[str]:
    status = (params.get("filter") or {}).get("tagStatus", "ANY")
    tagged = set(doc["tags"].values())
    if status == "TAGGED":
        return [d for d in digests if d in tagged]
    if status == "UNTAGGED":
        return [d for d in digests if d not in tagged]
    return digests


def _paged(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], dict[str, str]]:
    """One page of ``items`` by maxResults and nextToken (an offset)."""
    token = params.get("nextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise InvalidParameter("Invalid parameter at 'nextToken'") from None
    size = int(params.get("maxResults") or 1000)
    page = items[start:start + size]
    return page, ({"nextToken": str(start + size)} if start + size < len(items) else {})
