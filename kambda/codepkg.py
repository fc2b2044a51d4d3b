"""Lambda code packages: validate, extract and build the zip files behind ``Code.ZipFile``.

An upload is hostile input. Everything is checked from the zip's own directory before a byte is
decompressed (entry count, names, symlink targets, declared sizes and ratios), the checks are
repeated before extracting, and extraction itself never follows a symlink and never lets a
member land outside its destination. Only STORED and DEFLATED members are accepted: zipfile
decompresses bzip2/lzma chunks without an output bound, so a lying header there is a memory bomb.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import secrets
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from kambda.aws.errors import InvalidParameterValue, RequestEntityTooLarge

MAX_ZIPPED = 52_428_800
MAX_UNZIPPED = 262_144_000
MAX_RATIO = 1000
MAX_ENTRIES = 20_000
MAX_LINK_TARGET = 4096
_CHUNK = 1 << 16

UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."
ZIPPED_TOO_LARGE = f"Zipped size must be smaller than {MAX_ZIPPED} bytes"
UNZIPPED_TOO_LARGE = f"Unzipped size must be smaller than {MAX_UNZIPPED} bytes"
TOO_MANY_ENTRIES = f"Code package must contain at most {MAX_ENTRIES} entries"

_ZIP_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    RuntimeError,
    NotImplementedError,
    ValueError,
    zlib.error,
    struct.error,
)
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class PackageInfo:
    sha256_hex: str
    sha256_b64: str  # what AWS reports as CodeSha256
    size: int
    unzipped_size: int
    files: int


class _Member(NamedTuple):
    info: zipfile.ZipInfo
    path: str  # normalised, relative, "" only for a root directory entry
    kind: str  # "dir" | "file" | "link"
    target: str  # symlink target, "" otherwise


def _bad(name: str, why: str) -> InvalidParameterValue:
    shown = name.replace("\0", "\\0")
    return InvalidParameterValue(f"{UNZIP_FAILED} Entry '{shown}' {why}.")


def _escapes(name: str) -> InvalidParameterValue:
    return _bad(name, "escapes the package root")


def _entry_bound(data: bytes) -> int:
    """Upper bound on the central-directory entries zipfile would parse, found without parsing them.

    ZipFile builds a ZipInfo per entry up front (~450 bytes each), so 50 MB of empty entries costs
    ~300 MB and seconds before ``infolist()`` could be counted. This mirrors how zipfile locates the
    directory and counts entry signatures inside it (the directory's own count field may lie).
    """
    eocd = len(data) - 22
    if not (eocd >= 0 and data.startswith(b"PK\x05\x06", eocd) and data.endswith(b"\0\0")):
        eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - 65558))
    if eocd < 0 or eocd + 22 > len(data):
        return 0  # zipfile will refuse it
    end, (size,) = eocd, struct.unpack_from("<I", data, eocd + 12)
    if eocd >= 76 and data.startswith(b"PK\x06\x07", eocd - 20) and data.startswith(b"PK\x06\x06", eocd - 76):
        end, (size,) = eocd - 76, struct.unpack_from("<Q", data, eocd - 76 + 40)
    return data.count(b"PK\x01\x02", max(0, end - size), end)


def _resolves_inside(path: str, target: str, links: dict[str, str]) -> bool:
    """Resolve symlink ``path -> target`` as the kernel will after extraction, through the package's
    other symlinks (so ``a -> .`` plus ``b -> a/..`` is caught), and say whether it stays in the root."""
    if target.startswith("/"):
        return False
    out = path.split("/")[:-1]
    pending = target.split("/")[::-1]
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return False
            out.pop()
            continue
        out.append(part)
        nested = links.get("/".join(out))
        if nested is not None:
            hops += 1
            if hops > 40 or nested.startswith("/"):
                return False  # a loop is useless anyway; an absolute hop leaves the root
            out.pop()
            pending.extend(nested.split("/")[::-1])
    return True


def _classify(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    raw = info.orig_filename  # .filename is cut at the first NUL
    name = raw.replace("\\", "/")
    if "\0" in raw or name.startswith("/") or _DRIVE.match(name) or ".." in name.split("/"):
        raise _escapes(raw)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
        raise _bad(raw, "is encrypted or uses an unsupported compression method")
    path = "/".join(p for p in name.split("/") if p not in ("", "."))
    mode = info.external_attr >> 16
    if name.endswith("/") or stat.S_ISDIR(mode):
        return _Member(info, path, "dir", "")
    if not path:
        raise _bad(raw, "has no file name")
    if not stat.S_ISLNK(mode):
        return _Member(info, path, "file", "")
    try:
        with zf.open(info) as f:
            target_bytes = f.read(MAX_LINK_TARGET + 1)
        target = target_bytes.decode()
    except (*_ZIP_ERRORS, UnicodeDecodeError) as exc:
        raise InvalidParameterValue(UNZIP_FAILED) from exc
    if not target or "\0" in target or len(target_bytes) > MAX_LINK_TARGET:
        raise _bad(raw, "is a symlink with an invalid target")
    return _Member(info, path, "link", target)


def _check(zf: zipfile.ZipFile, zipped_size: int) -> list[_Member]:
    """Every check that needs no decompression (beyond reading symlink targets)."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise InvalidParameterValue(TOO_MANY_ENTRIES)
    total = 0
    for info in infos:
        total += info.file_size
        if info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise InvalidParameterValue(UNZIPPED_TOO_LARGE)
    if total > MAX_UNZIPPED or total > MAX_RATIO * zipped_size:
        raise InvalidParameterValue(UNZIPPED_TOO_LARGE)
    members = [_classify(zf, info) for info in infos]
    kinds: dict[str, str] = {}
    for m in members:
        seen = kinds.get(m.path)
        if seen is not None and not (seen == m.kind == "dir"):  # a directory may repeat harmlessly
            raise _bad(m.info.orig_filename, "appears more than once")
        kinds[m.path] = m.kind
    links = {m.path: m.target for m in members if m.kind == "link"}
    for m in members:
        parts = m.path.split("/")
        for i in range(1, len(parts)):
            above = kinds.get("/".join(parts[:i]))
            if above == "link":
                raise _escapes(m.info.orig_filename)  # written through a symlink, in any order
            if above == "file":
                raise _bad(m.info.orig_filename, "lies below a file")
        if m.kind == "link" and not _resolves_inside(m.path, m.target, links):
            raise _escapes(m.info.orig_filename)
    return members


def _open(data: bytes) -> zipfile.ZipFile:
    if len(data) > MAX_ZIPPED:
        raise RequestEntityTooLarge(ZIPPED_TOO_LARGE)
    if _entry_bound(data) > MAX_ENTRIES:
        raise InvalidParameterValue(TOO_MANY_ENTRIES)
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as exc:
        raise InvalidParameterValue(UNZIP_FAILED) from exc


def inspect_package(data: bytes) -> PackageInfo:
    """Validate an uploaded package without extracting it (CRCs are verified by decompressing)."""
    with _open(data) as zf:
        members = _check(zf, len(data))
        try:
            bad = zf.testzip()
        except _ZIP_ERRORS as exc:
            raise InvalidParameterValue(UNZIP_FAILED) from exc
        if bad is not None:
            raise InvalidParameterValue(UNZIP_FAILED)
    digest = hashlib.sha256(data).digest()
    return PackageInfo(
        digest.hex(),
        base64.b64encode(digest).decode(),
        len(data),
        sum(m.info.file_size for m in members),
        len(members),
    )


def _chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A member's bytes, streamed; read errors (bad CRC, truncation) become the unzip error."""
    try:
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                yield chunk
    except _ZIP_ERRORS as exc:
        raise InvalidParameterValue(UNZIP_FAILED) from exc


def _real_dir(root: str, path: str, made: set[str], name: str) -> str:
    """Create ``root/path`` one component at a time, refusing anything in the way that is not a
    real directory (a symlink above a member would let it land elsewhere)."""
    full = root
    for part in (p for p in path.split("/") if p):
        full = os.path.join(full, part)
        key = full[len(root) :]
        if key in made:
            continue
        try:
            os.mkdir(full, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(full).st_mode):
                raise _escapes(name) from None
        made.add(key)
    return full


def _extract_into(zf: zipfile.ZipFile, members: list[_Member], root: str) -> None:
    made: set[str] = set()
    written = 0
    for m in members:
        name = m.info.orig_filename
        if m.kind == "dir":
            _real_dir(root, m.path, made, name)
            continue
        parent, _, leaf = m.path.rpartition("/")
        full = os.path.join(_real_dir(root, parent, made, name), leaf)
        if m.kind == "link":
            os.symlink(m.target, full)
            continue
        # O_EXCL | O_NOFOLLOW: never write through (or over) anything already there.
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(zf, m.info):
                written += len(chunk)
                if written > MAX_UNZIPPED:  # zipfile caps at the declared size; this is the backstop
                    raise InvalidParameterValue(UNZIPPED_TOO_LARGE)
                out.write(chunk)
            # Normalise permissions: keep the executable bit (bootstrap), always readable by the runtime.
            os.fchmod(out.fileno(), 0o755 if (m.info.external_attr >> 16) & 0o111 else 0o644)


def extract_package(data: bytes, dest: Path) -> None:
    """Extract a package into ``dest`` (which must not exist), atomically.

    The tree is built in a private sibling directory and renamed into place, so ``dest`` is either
    absent or complete. If a concurrent extractor of the same package renamed first, ours is
    discarded and theirs kept.
    """
    dest = Path(dest)
    if os.path.lexists(dest):
        raise FileExistsError(f"{dest} already exists")
    with _open(data) as zf:
        members = _check(zf, len(data))
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / (".tmp-" + secrets.token_hex(8))
        os.mkdir(tmp, 0o700)  # private until complete
        try:
            _extract_into(zf, members, os.path.realpath(tmp))
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not os.path.lexists(dest):
                    raise
                shutil.rmtree(tmp)  # another extractor won the race
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same tree, same CodeSha256
    info.create_system = 3  # Unix, so readers honour the mode bits
    info.external_attr = mode << 16
    return info


def _walk(root: Path) -> Iterator[Path]:
    for entry in os.scandir(root):
        is_dir = entry.is_dir(follow_symlinks=False)
        if (is_dir and entry.name == "__pycache__") or (not is_dir and entry.name.endswith(".pyc")):
            continue
        yield Path(entry.path)
        if is_dir:
            yield from _walk(Path(entry.path))


def make_zip(root: Path) -> bytes:
    """Zip a directory deterministically (sorted relative paths, fixed timestamps, Unix modes).

    Symlinks are stored as symlinks, not followed; one pointing outside ``root`` will be refused
    on upload. Sockets, FIFOs and the like are skipped.
    """
    root = Path(root)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(_walk(root), key=lambda p: p.relative_to(root).as_posix()):
            rel, st = path.relative_to(root).as_posix(), os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                zf.writestr(_zip_info(rel, st.st_mode), os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                zf.writestr(_zip_info(rel + "/", stat.S_IFDIR | (st.st_mode & 0o777)), b"")
            elif stat.S_ISREG(st.st_mode):
                info = _zip_info(rel, st.st_mode)
                info.compress_type, info.file_size = zipfile.ZIP_DEFLATED, st.st_size
                with open(path, "rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    return buf.getvalue()
