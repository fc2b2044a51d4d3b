"""Images for the runners: :func:`pull` turns an image reference into a rootfs on disk and its config.

An image of the built-in registry (tasks/ecr.py's :func:`~tasks.ecr.resolve`: an ECR URI, the gateway's host, or a
bare ``repo:tag``) is read from JetStream: its manifest (an index resolved for this host's architecture), its config,
and each layer streamed to ``<cache>/blobs/<hex>`` (digest checked, written beside and renamed into place), then
unpacked once into ``<cache>/rootfs/<manifest hex>`` (tasks/oci.py). A reference to another registry is refused
with :class:`PullError` saying so: kambda pulls only from its own registry (push the image there first,
``skopeo copy docker://<image> docker://<gateway>/<repo>:<tag> --dest-tls-verify=false``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from nats.js import JetStreamContext

from tasks import oci
from tasks.ecr import ExternalImage, resolve
from tasks.registry import ImageStore, RegistryError, blob_name


class PullError(RuntimeError):
    """An image that cannot be pulled; the message says which and why (CannotPullContainerError's reason)."""


async def pull(js: JetStreamContext, reference: str, cache: Path,
               local_hosts: Iterable[str] = ()) -> tuple[Path, oci.ImageConfig]:
    """The rootfs (shared: do not write into it) and config of the image ``reference``."""
    try:
        repo, ref = resolve(reference, local_hosts)
    except ExternalImage as exc:
        raise PullError(f"{exc}: kambda runs images of its own registry only (push it there first)") from None
    except ValueError as exc:
        raise PullError(str(exc)) from None
    store = ImageStore(js)
    try:
        digest, media_type, raw = await store.manifest(repo, ref)
        manifest = oci.parse_manifest(raw, media_type)
        if isinstance(manifest, oci.Index):
            digest = manifest.select().digest
            _, media_type, raw = await store.manifest(repo, digest)
            manifest = oci.parse_manifest(raw, media_type)
            if isinstance(manifest, oci.Index):
                raise PullError(f"{reference}: an image index names another index for this platform")
        config_raw = await store.read(blob_name(manifest.config.digest))
        if config_raw is None or oci.digest_of(config_raw) != manifest.config.digest:
            raise PullError(f"{reference}: the image's config {manifest.config.digest} is missing")
        config = oci.ImageConfig.parse(config_raw)
        rootfs = cache / "rootfs" / digest.split(":", 1)[1]
        if rootfs.is_dir():
            return rootfs, config
        layers = [await _fetch(store, descriptor.digest, cache / "blobs", reference)
                  for descriptor in manifest.layers]
        return await asyncio.to_thread(oci.unpack, digest, layers, cache / "rootfs"), config
    except RegistryError as err:
        raise PullError(f"{reference}: {err.code}: {err.message}") from None
    except oci.ImageError as exc:
        raise PullError(f"{reference}: {exc}") from None


async def _fetch(store: ImageStore, digest: str, directory: Path, reference: str) -> Path:
    """The blob ``digest`` as a file in ``directory`` (streamed there, digest checked, unless it is there)."""
    path = directory / oci.check_digest(digest).split(":", 1)[1]
    if path.is_file():
        return path
    info = await store.info(blob_name(digest))
    if info is None:
        raise PullError(f"{reference}: the layer {digest} is missing from the registry")
    directory.mkdir(parents=True, exist_ok=True)
    scratch = directory / f".{path.name[:16]}-{uuid.uuid4().hex}"
    hasher = hashlib.sha256()
    try:
        with open(scratch, "wb") as out:
            async for chunk in store.chunks_of(info):
                hasher.update(chunk)
                out.write(chunk)
        if "sha256:" + hasher.hexdigest() != digest:
            raise PullError(f"{reference}: the layer {digest} read back with another digest")
        os.replace(scratch, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
    return path
