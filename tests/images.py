"""Small OCI images the tests build themselves: layers from entries (hostile ones too), a busybox-static rootfs,
images written as OCI image layouts, and pushed to a registry over the distribution API (urllib, no tools).

``busybox_image(Path(d))`` writes an image layout whose one image (ref ``latest``) has /bin/busybox with its
applets linked (sh, wget, sleep, ...), /etc/passwd naming root and nobody, /tmp; ``push(url, "repo", "tag",
layout)`` pushes it.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tasks import oci
from tasks.tools import ToolMissing, busybox_path

#: The applets linked to busybox in the busybox image's /bin.
APPLETS = ("sh", "ash", "echo", "cat", "sleep", "wget", "env", "ls", "true", "false", "kill", "mkdir", "rm", "id",
           "pwd", "printf", "test", "[", "head", "tail", "dd", "ps", "nc", "grep", "sed", "touch", "date", "yes")


@dataclass(frozen=True)
class Entry:
    """One tar entry: kind is file, dir, symlink, hardlink, chr or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""


def file(name: str, data: bytes | str = b"", mode: int = 0o644) -> Entry:
    return Entry(name, "file", data.encode() if isinstance(data, str) else data, mode)


def directory(name: str, mode: int = 0o755) -> Entry:
    return Entry(name, "dir", mode=mode)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, "symlink", mode=0o777, target=target)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, "hardlink", target=target)


def whiteout(name: str) -> Entry:
    """Removes ``name`` of the layers below."""
    head, _, base = name.rpartition("/")
    return file(f"{head}/.wh.{base}" if head else f".wh.{base}")


def opaque(directory_name: str) -> Entry:
    return file(f"{directory_name.rstrip('/')}/.wh..wh..opq")


def device(name: str) -> Entry:
    return Entry(name, "chr", mode=0o666)


_KINDS = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
          "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}


def tar_layer(entries: list[Entry], compression: str = "gzip") -> bytes:
    """A layer of ``entries`` (in order), compressed with gzip, zstd or none."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _KINDS[entry.kind]
            info.mode = entry.mode
            info.mtime = 1_700_000_000
            info.linkname = entry.target
            if entry.kind == "chr":
                info.devmajor, info.devminor = 1, 3
            info.size = len(entry.data) if entry.kind == "file" else 0
            archive.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)
    raw = buffer.getvalue()
    if compression == "gzip":
        return gzip.compress(raw, compresslevel=1, mtime=0)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def _busybox() -> Path:
    try:
        return busybox_path()
    except ToolMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"busybox is required in CI: {exc}")
        pytest.skip(str(exc))


def busybox_binary() -> Path:
    """The static busybox (skips without it; fails under CI=true)."""
    return _busybox()


@functools.cache
def _busybox_layer(path: str) -> bytes:
    entries = [directory("bin"), file("bin/busybox", Path(path).read_bytes(), 0o755)]
    entries += [symlink(f"bin/{applet}", "busybox") for applet in APPLETS]
    entries += [directory("etc"), file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                                                     "nobody:x:65534:65534:nobody:/:/bin/sh\n"),
                file("etc/group", "root:x:0:\nnogroup:x:65534:\n"), directory("tmp", 0o777),
                directory("root", 0o700), directory("usr"), symlink("usr/bin", "../bin")]
    return tar_layer(entries)


def busybox_layer() -> bytes:
    """A gzip layer holding a static busybox (built once per test session)."""
    return _busybox_layer(str(_busybox()))


def busybox_image(root: Path, config: dict[str, Any] | None = None, layers: list[bytes] | None = None,
                  ref: str = "latest") -> oci.Layout:
    """An image layout at ``root``: the busybox layer, then ``layers``; ``config`` is the image config's
    ``config`` (default: Cmd ["sh"])."""
    layout = oci.Layout(root)
    oci.write_image(layout, [busybox_layer(), *(layers or [])], config if config is not None else {"Cmd": ["sh"]},
                    ref)
    return layout


def binary_image(root: Path, binary: Path, argv: list[str] | None = None, ref: str = "latest") -> oci.Layout:
    """An image of one static binary and nothing else: ``/<name>``, its entrypoint (``argv`` after it)."""
    layout = oci.Layout(root)
    name = binary.name
    oci.write_image(layout, [tar_layer([file(name, binary.read_bytes(), 0o755)])],
                    {"Entrypoint": [f"/{name}", *(argv or [])]}, ref)
    return layout


#: Where the Python layer is cached between sessions (built once per interpreter and awslambdaric version).
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "images"
#: The Python image's interpreter prefix.
PYTHON_PREFIX = "/opt/python"
_STDLIB_SKIP = frozenset({"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages",
                          "pydoc_data", f"config-{sys.version_info.major}.{sys.version_info.minor}-x86_64-linux-gnu",
                          "__phello__"})
_PACKAGES = ("awslambdaric", "simplejson", "snapshot_restore_py")
_SYSTEM_LIBS = ("/lib/", "/lib64/", "/usr/lib/")


def _shared_libraries(paths: list[Path]) -> dict[str, Path]:
    """image path -> host file of every shared library ``paths`` load (ldd), the dynamic loader included."""
    found: dict[str, Path] = {}
    for chunk in range(0, len(paths), 64):
        out = subprocess.run(["ldd", *map(str, paths[chunk:chunk + 64])], capture_output=True, text=True).stdout
        for line in out.splitlines():
            line = line.strip()
            if line.endswith(":"):
                continue  # the header naming the file ldd reports on
            name, arrow, rest = line.partition(" => ")
            target = (rest if arrow else name).split(" (", 1)[0].strip()
            if not target.startswith("/"):
                continue
            host = Path(target)
            inside = target if target.startswith(_SYSTEM_LIBS) else f"/lib/{host.name}"
            found[inside.lstrip("/")] = host
    return found


def python_layer() -> Path:
    """A gzip layer with this machine's Python at /opt/python (stdlib without its tests, awslambdaric and its
    dependencies in site-packages), /usr/local/bin/python3, and the shared libraries they load: built once,
    cached under .cache/images."""
    import awslambdaric  # the test extra installs it

    version = getattr(awslambdaric, "__version__", "") or _dist_version("awslambdaric")
    key = hashlib.sha256(f"{sys.version}|{sys.base_prefix}|{version}|1".encode()).hexdigest()[:16]
    path = CACHE / f"python-{key}.tar.gz"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = Path(sysconfig.get_paths()["purelib"])
    binary = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    lib = f"{PYTHON_PREFIX.lstrip('/')}/lib/{stdlib.name}"
    files: list[tuple[str, Path]] = [(f"{PYTHON_PREFIX.lstrip('/')}/bin/python3", binary)]
    for root, dirs, names in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in _STDLIB_SKIP)
        rel = Path(root).relative_to(stdlib)
        files += [(f"{lib}/{rel / n}".replace("/./", "/"), Path(root, n)) for n in sorted(names) if ".opt-" not in n]
    for entry in sorted(site.iterdir()):
        if entry.name.split("-")[0].removesuffix(".py") in _PACKAGES:
            if entry.is_dir():
                for root, _, names in os.walk(entry):
                    rel = Path(root).relative_to(site)
                    files += [(f"{lib}/site-packages/{rel / n}", Path(root, n)) for n in sorted(names)]
            else:
                files.append((f"{lib}/site-packages/{entry.name}", entry))
    libraries = _shared_libraries([binary, *(host for _, host in files if host.suffix == ".so")])
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with tarfile.open(scratch, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as archive:
        for inside, host in [*files, *sorted(libraries.items())]:
            info = archive.gettarinfo(os.path.realpath(host), inside)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(os.path.realpath(host), "rb") as data:
                archive.addfile(info, data)
        for name, target in ((f"{PYTHON_PREFIX.lstrip('/')}/bin/python", "python3"),
                             ("usr/local/bin/python3", f"{PYTHON_PREFIX}/bin/python3"),
                             ("usr/local/bin/python", f"{PYTHON_PREFIX}/bin/python3")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            archive.addfile(info)
    os.replace(scratch, path)
    return path


def _dist_version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


def python_image(root: Path, files: dict[str, str | bytes], handler: str = "app.handler",
                 ref: str = "latest") -> oci.Layout:
    """An image layout of busybox, this machine's Python with awslambdaric, and ``files`` in /var/task: its
    entrypoint is ``python3 -m awslambdaric`` and its command ``handler`` (a Lambda base image's shape)."""
    app = tar_layer([directory("var"), directory("var/task"),
                     *(file(f"var/task/{name}", data) for name, data in files.items())])
    layout = oci.Layout(root)
    oci.write_image(layout, [busybox_layer(), python_layer().read_bytes(), app], {
        "Entrypoint": [f"{PYTHON_PREFIX}/bin/python3", "-m", "awslambdaric"], "Cmd": [handler],
        "WorkingDir": "/var/task", "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]}, ref)
    return layout


def _request(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
             auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def push_blob(url: str, repo: str, data: bytes, auth: tuple[str, str] | None = None) -> str:
    """Upload one blob monolithically (POST then PUT ?digest=); returns its digest."""
    digest = oci.digest_of(data)
    status, headers, body = _request("POST", f"{url}/v2/{repo}/blobs/uploads/", b"", auth=auth)
    assert status == 202, (status, body)
    location = headers["Location"]
    location = location if location.startswith("http") else url + location
    joiner = "&" if "?" in location else "?"
    status, _, body = _request("PUT", f"{location}{joiner}digest={digest}", data,
                               {"Content-Type": "application/octet-stream"}, auth=auth)
    assert status == 201, (status, body)
    return digest


def push(url: str, repo: str, tag: str, layout: oci.Layout, ref: str = "latest",
         auth: tuple[str, str] | None = None) -> str:
    """Push the image ``ref`` of ``layout`` to the registry at ``url`` as ``repo:tag``; its manifest digest."""
    digest, manifest = layout.manifest(ref)
    for descriptor in (manifest.config, *manifest.layers):
        push_blob(url, repo, layout.blob(descriptor.digest), auth)
    raw = layout.blob(digest)
    status, headers, body = _request("PUT", f"{url}/v2/{repo}/manifests/{tag}", raw,
                                     {"Content-Type": manifest.media_type}, auth=auth)
    assert status == 201, (status, body)
    assert headers.get("Docker-Content-Digest") == digest
    return digest


def request(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
            auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; (status, headers, body), error statuses included."""
    return _request(method, url, data, headers, auth)


def error_codes(body: bytes) -> list[str]:
    """The codes of a distribution API error body."""
    return [e["code"] for e in json.loads(body)["errors"]]
