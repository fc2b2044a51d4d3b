"""OCI images on disk: manifests and configs parsed, image layouts read and written, layers unpacked into a rootfs.

Accepted manifests: the OCI image manifest and index, Docker's v2 schema 2 manifest and manifest list. Layers: tar,
tar+gzip and tar+zstd (recognised by their first bytes, whatever the media type says), applied in order with the
OCI whiteouts (``.wh.<name>`` removes ``<name>`` of the layers below; ``.wh..wh..opq`` empties its directory of
them).

A layer is untrusted input, unpacked by root on the host. Every path is resolved inside the rootfs the way a
container would see it (:func:`resolve_inside`: symlinks followed with the rootfs as ``/``, ``..`` stopping at the
root), so nothing a layer holds can make the unpacker write outside it: an entry whose path names ``..`` is
refused (ImageError); leading ``/`` is dropped; a symlink is written as it is (an absolute or escaping target
means the same path inside the rootfs once it is ``/``), and entries written through it land inside the rootfs;
a hard link must name a regular file already in the rootfs; device nodes and FIFOs are skipped; setuid and setgid
bits are dropped; owners are not kept (the files belong to whoever unpacks).

:func:`unpack` makes the rootfs of a manifest once: it is cached under the manifest's digest, built in a scratch
directory beside it and renamed into place, so concurrent unpacks of one image are safe (the loser discards its
copy).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import tarfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
#: The image layout's annotation naming a manifest (``skopeo copy oci:dir:<tag>``).
REF_NAME = "org.opencontainers.image.ref.name"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x"}
_CHUNK = 1024 * 1024
_MAX_LINKS = 255


class ImageError(ValueError):
    """An image or layer that cannot be used; the message says why."""


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: Any) -> str:
    """``digest`` if it is a sha256 digest (the only algorithm accepted); ImageError otherwise."""
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise ImageError(f"not a sha256 digest: {digest!r}")
    return digest


def host_arch() -> str:
    machine = platform.machine().lower()
    return _GOARCH.get(machine, machine)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: Any) -> Descriptor:
        if not isinstance(raw, dict):
            raise ImageError("a descriptor must be an object")
        size = raw.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageError(f"descriptor size must be a non-negative integer: {size!r}")
        found_platform, annotations = raw.get("platform") or {}, raw.get("annotations") or {}
        if not isinstance(found_platform, dict) or not isinstance(annotations, dict):
            raise ImageError("a descriptor's platform and annotations must be objects")
        return cls(str(raw.get("mediaType") or ""), check_digest(raw.get("digest")), size, dict(found_platform),
                   {str(k): str(v) for k, v in annotations.items()})

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            doc["platform"] = self.platform
        if self.annotations:
            doc["annotations"] = self.annotations
        return doc


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker)."""

    media_type: str
    manifests: tuple[Descriptor, ...]

    def select(self, arch: str | None = None, os_name: str = "linux") -> Descriptor:
        """The manifest for this platform (default: the host's architecture); ImageError when none."""
        arch = arch or host_arch()
        for descriptor in self.manifests:
            found = descriptor.platform
            if found.get("os", os_name) == os_name and found.get("architecture", arch) == arch:
                return descriptor
        raise ImageError(f"the image index has no manifest for {os_name}/{arch}")


def media_type_of(raw: bytes, declared: str = "") -> str:
    """The manifest's media type: its own ``mediaType`` field, else the declared (Content-Type) one."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ImageError("the manifest is not JSON") from None
    if not isinstance(doc, dict):
        raise ImageError("the manifest must be a JSON object")
    own = doc.get("mediaType")
    if isinstance(own, str) and own:
        return own
    declared = declared.split(";", 1)[0].strip()
    if declared in MANIFESTS | INDEXES:
        return declared
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def parse_manifest(raw: bytes, declared: str = "") -> Manifest | Index:
    """A manifest or index from its bytes; ImageError for anything else (Docker schema 1 included)."""
    media_type = media_type_of(raw, declared)
    doc = json.loads(raw)
    if doc.get("schemaVersion") != 2:
        raise ImageError(f"schemaVersion must be 2, not {doc.get('schemaVersion')!r}")
    if media_type in INDEXES:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise ImageError("an image index needs a manifests list")
        return Index(media_type, tuple(Descriptor.of(m) for m in manifests))
    if media_type not in MANIFESTS:
        raise ImageError(f"unsupported manifest media type {media_type}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImageError("an image manifest needs a layers list")
    return Manifest(media_type, Descriptor.of(doc.get("config")), tuple(Descriptor.of(layer) for layer in layers))


@dataclass(frozen=True)
class ImageConfig:
    """What an image's config says about running it."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    architecture: str = ""
    os: str = ""

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        try:
            doc = json.loads(raw)
        except ValueError:
            raise ImageError("the image config is not JSON") from None
        if not isinstance(doc, dict):
            raise ImageError("the image config must be a JSON object")
        config = doc.get("config") or {}
        if not isinstance(config, dict):
            raise ImageError("the image config's config must be an object")

        def strings(key: str) -> tuple[str, ...]:
            value = config.get(key) or []
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ImageError(f"the image config's {key} must be a list of strings")
            return tuple(value)

        return cls(strings("Env"), strings("Entrypoint"), strings("Cmd"), str(config.get("WorkingDir") or ""),
                   str(config.get("User") or ""), str(doc.get("architecture") or ""), str(doc.get("os") or ""))

    @property
    def environment(self) -> dict[str, str]:
        """Env as a mapping (an entry without ``=`` is an empty value)."""
        return dict((item.partition("=")[0], item.partition("=")[2]) for item in self.env)

    def argv(self, entrypoint: Iterable[str] | None = None, command: Iterable[str] | None = None) -> list[str]:
        """The process to run, Docker's way: an overriding entrypoint drops the image's Cmd too."""
        if entrypoint is not None:
            return [*entrypoint, *(command or [])]
        return [*self.entrypoint, *(self.cmd if command is None else command)]


# -- the image layout (a directory: oci-layout, index.json, blobs/sha256/<hex>) ----------------------------------------


class Layout:
    """An OCI image layout directory, read and written."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / check_digest(digest).split(":", 1)[1]

    def blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is not in {self.root}") from None

    def write_blob(self, data: bytes) -> str:
        digest = digest_of(data)
        path = self.blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return digest

    def index(self) -> Index:
        try:
            raw = (self.root / "index.json").read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{self.root} is not an OCI image layout (no index.json)") from None
        found = parse_manifest(raw, OCI_INDEX)
        if not isinstance(found, Index):
            raise ImageError(f"{self.root}/index.json is not an image index")
        return found

    def add(self, manifest: bytes, media_type: str, ref: str = "") -> Descriptor:
        """Store ``manifest`` and name it ``ref`` in index.json (replacing a manifest of that name)."""
        (self.root / "oci-layout").parent.mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        digest = self.write_blob(manifest)
        descriptor = Descriptor(media_type, digest, len(manifest), annotations={REF_NAME: ref} if ref else {})
        try:
            kept = [d for d in self.index().manifests if not ref or d.annotations.get(REF_NAME) != ref]
        except ImageError:
            kept = []
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
               "manifests": [d.document() for d in [*kept, descriptor]]}
        (self.root / "index.json").write_text(json.dumps(doc))
        return descriptor

    def manifest(self, ref: str = "") -> tuple[str, Manifest]:
        """The digest and manifest named ``ref`` (by default the only one), an index resolved for this host."""
        candidates = self.index().manifests
        if ref:
            candidates = tuple(d for d in candidates if d.annotations.get(REF_NAME) == ref or d.digest == ref)
        if len(candidates) != 1:
            raise ImageError(f"{self.root} has {len(candidates)} manifests named {ref!r}")
        digest = candidates[0].digest
        found = parse_manifest(self.blob(digest), candidates[0].media_type)
        if isinstance(found, Index):
            digest = found.select().digest
            found = parse_manifest(self.blob(digest))
            if isinstance(found, Index):
                raise ImageError("an image index names another index for this platform")
        return digest, found


def write_image(layout: Layout, layers: Iterable[bytes], config: dict[str, Any], ref: str = "latest",
                layer_type: str = OCI_LAYER_GZIP) -> str:
    """Write an image (layers as archive bytes, ``config`` as the image config's ``config``) into ``layout``;
    returns its manifest digest."""
    layer_list = list(layers)
    descriptors = [Descriptor(layer_type, layout.write_blob(data), len(data)) for data in layer_list]
    diff_ids = [digest_of(_decompressed(data)) for data in layer_list]
    config_doc = {"architecture": host_arch(), "os": "linux", "config": config,
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    config_raw = json.dumps(config_doc).encode()
    config_descriptor = Descriptor(OCI_CONFIG, layout.write_blob(config_raw), len(config_raw))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_descriptor.document(),
                           "layers": [d.document() for d in descriptors]}).encode()
    return layout.add(manifest, OCI_MANIFEST, ref).digest


def _decompressed(data: bytes) -> bytes:
    import io
    with _opened(io.BytesIO(data)) as stream:
        return stream.read()


# -- layers ----------------------------------------------------------------------------------------------------------


@contextmanager
def _opened(raw: IO[bytes]) -> Iterator[IO[bytes]]:
    """The uncompressed tar stream of a layer, its compression told by its first bytes."""
    head = raw.read(4)
    raw.seek(0)
    if head[:2] == b"\x1f\x8b":
        import gzip
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream  # type: ignore[misc]
    elif head == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            raise ImageError("a zstd layer needs the zstandard package (pip install zstandard)") from None
        with zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            yield stream  # type: ignore[misc]
    else:
        yield raw


def _parts(name: str) -> list[str]:
    """The components of an entry's path; ImageError for ``..`` (leading ``/`` and ``.`` are dropped)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"layer entry {name!r} climbs out with '..'")
    return parts


def resolve_inside(root: Path, parts: list[str], follow_last: bool = True) -> Path:
    """The host path of ``parts`` inside ``root`` as a container sees it: symlinks followed with ``root`` as
    ``/`` and ``..`` stopping at it, so that the answer is always under ``root``. ``follow_last``: resolve a
    symlink in the last component too."""
    resolved: list[str] = []
    pending = list(parts)
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if (pending or follow_last) and candidate.is_symlink():
            links += 1
            if links > _MAX_LINKS:
                raise ImageError(f"too many levels of symbolic links under {'/'.join(parts)}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = target.split("/") + pending
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        with _ignoring_missing():
            path.unlink()
    else:
        shutil.rmtree(path)


@contextmanager
def _ignoring_missing() -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        pass


@dataclass
class LayerStats:
    entries: int = 0
    skipped: list[str] = field(default_factory=list)


def unpack_layer(raw: IO[bytes], root: Path) -> LayerStats:
    """Apply one layer (a seekable binary file, compressed or not) onto the rootfs ``root``."""
    stats = LayerStats()
    created: set[Path] = set()  # what this layer wrote: an opaque whiteout removes only the layers below
    with _opened(raw) as stream:
        try:
            archive = tarfile.open(fileobj=stream, mode="r|")
        except tarfile.TarError as exc:
            raise ImageError(f"a layer is not a tar archive: {exc}") from None
        with archive:
            try:
                for member in archive:
                    stats.entries += 1
                    try:
                        _apply(archive, member, root, created, stats)
                    except OSError as exc:  # a name too long, a link with no target, ...
                        raise ImageError(f"layer entry {member.name!r} cannot be unpacked: "
                                         f"{exc.strerror or exc}") from None
            except tarfile.TarError as exc:
                raise ImageError(f"a layer's archive is broken: {exc}") from None
    return stats


def _apply(archive: tarfile.TarFile, member: tarfile.TarInfo, root: Path, created: set[Path],
           stats: LayerStats) -> None:
    parts = _parts(member.name)
    if not parts:
        return  # the archive's own root
    base = parts[-1]
    parent = resolve_inside(root, parts[:-1])
    if base == OPAQUE:
        if parent.is_dir():
            for child in parent.iterdir():
                if child not in created:
                    _remove(child)
        return
    if base.startswith(WHITEOUT):
        hidden = base[len(WHITEOUT):]
        if hidden in ("", ".", ".."):
            raise ImageError(f"layer entry {member.name!r} is a whiteout of no file")
        if parts[:-1] and not parent.is_dir():
            return
        _remove(parent / hidden)
        return
    if member.ischr() or member.isblk() or member.isfifo() or not (
            member.isreg() or member.isdir() or member.issym() or member.islnk()):
        stats.skipped.append(member.name)
        return
    if not parent.is_dir():
        parent.mkdir(parents=True, exist_ok=True)  # resolve_inside followed every link: none is left on the way
    target = parent / base
    mode = member.mode & 0o1777  # no setuid, setgid
    if member.isdir():
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            _remove(target)
        target.mkdir(exist_ok=True)
        os.chmod(target, mode | 0o700)  # the unpacker must be able to write into it and remove it
        created.add(target)
        return
    if target.is_symlink() or target.exists():
        _remove(target)
    created.add(target)
    if member.issym():
        os.symlink(member.linkname, target)
        return
    if member.islnk():
        source = resolve_inside(root, _parts(member.linkname), follow_last=False)
        if source.is_symlink() or not source.is_file():
            raise ImageError(f"hard link {member.name!r} names {member.linkname!r}, not a file in the rootfs")
        os.link(source, target)
        return
    source_file = archive.extractfile(member)
    if source_file is None:
        raise ImageError(f"layer entry {member.name!r} has no data")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode | 0o200)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source_file, out, _CHUNK)
    os.chmod(target, mode)
    os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def unpack(digest: str, layers: Iterable[Path], cache: Path) -> Path:
    """The rootfs of the image whose manifest is ``digest``: ``cache/<hex>``, made from ``layers`` (files, bottom
    first) unless it is there already. Safe to call concurrently for one digest."""
    final = cache / check_digest(digest).split(":", 1)[1]
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    scratch = cache / f".unpack-{final.name[:16]}-{uuid.uuid4().hex}"
    scratch.mkdir(mode=0o755)
    try:
        for layer in layers:
            with open(layer, "rb") as raw:
                unpack_layer(raw, scratch)
        os.chmod(scratch, 0o755)
        try:
            os.rename(scratch, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(scratch, ignore_errors=True)  # another unpack won
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return final

