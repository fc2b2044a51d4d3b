"""Code packages: validation, safe extraction and deterministic zipping (kambda.codepkg)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import struct
import threading
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from kambda.aws.errors import InvalidParameterValue, KambdaError, RequestEntityTooLarge
from kambda.codepkg import extract_package, inspect_package, make_zip

UNZIP = "Could not unzip uploaded file. Please check your file, then try to upload again."
UNZIPPED_TOO_LARGE = "Unzipped size must be smaller than 262144000 bytes"
FILE, EXE, LINK = stat.S_IFREG | 0o644, stat.S_IFREG | 0o755, stat.S_IFLNK | 0o777


def escapes(name: str) -> str:
    return f"{UNZIP} Entry '{name}' escapes the package root."


def build(*entries: tuple[str, bytes | str, int], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of (name, content, unix mode) entries, names written verbatim (no sanitising)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system, info.external_attr, info.compress_type = 3, mode << 16, compression
            zf.writestr(info, content)
    return buf.getvalue()


def patch_central_dir(
    data: bytes, *, compress_size: int | None = None, file_size: int | None = None
) -> bytes:
    """Rewrite the sizes of the (last) central-directory entry: headers that lie."""
    buf, at = bytearray(data), data.rindex(b"PK\x01\x02")
    if compress_size is not None:
        struct.pack_into("<I", buf, at + 20, compress_size)
    if file_size is not None:
        struct.pack_into("<I", buf, at + 24, file_size)
    return bytes(buf)


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for path in root.rglob("*"):
        rel, st = path.relative_to(root).as_posix(), path.lstat()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir",)
        else:
            out[rel] = ("file", path.read_bytes(), bool(st.st_mode & stat.S_IXUSR))
    return out


def assert_rejected(
    tmp_path: Path, data: bytes, message: str, exc: type[KambdaError] = InvalidParameterValue
):
    """Both inspect and extract refuse ``data`` with exactly ``message``, and extract leaves no trace."""
    with pytest.raises(exc) as caught:
        inspect_package(data)
    assert type(caught.value) is exc and caught.value.message == message
    dest = tmp_path / "a" / "b" / "pkg"
    dest.parent.mkdir(parents=True)
    with pytest.raises(exc) as caught:
        extract_package(data, dest)
    assert type(caught.value) is exc and caught.value.message == message
    assert not os.path.lexists(dest)
    # Nothing anywhere under tmp_path but the parents we made: no temp dir, no ../ escapee.
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["a", "a/b"]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "lib" / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "handler.py").write_text("def handler(event, context):\n    return event\n")
    (root / "bootstrap").write_text("#!/bin/sh\nexec python3 handler.py\n")
    (root / "bootstrap").chmod(0o755)
    (root / "handler.py").chmod(0o644)
    (root / "lib" / "pkg" / "mod.py").write_bytes(os.urandom(50_000))
    (root / "lib" / "link.py").symlink_to("pkg/mod.py")
    (root / "lib" / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"junk")
    (root / "stale.pyc").write_bytes(b"junk")
    return root


def test_round_trip(tmp_path: Path, src: Path) -> None:
    data = make_zip(src)
    info = inspect_package(data)
    assert info.sha256_b64 == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert info.sha256_hex == hashlib.sha256(data).hexdigest()
    assert info.size == len(data)
    assert info.files == 7  # bootstrap, empty/, handler.py, lib/, lib/link.py, lib/pkg/, lib/pkg/mod.py
    assert info.unzipped_size == sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    assert info.unzipped_size >= 50_000

    dest = tmp_path / "store" / info.sha256_hex
    extract_package(data, dest)
    expected = {k: v for k, v in snapshot(src).items() if "__pycache__" not in k and not k.endswith(".pyc")}
    assert snapshot(dest) == expected
    assert (dest / "bootstrap").stat().st_mode & 0o777 == 0o755
    assert (dest / "handler.py").stat().st_mode & 0o777 == 0o644
    assert (dest / "lib" / "link.py").is_symlink()
    assert (dest / "lib" / "link.py").read_bytes() == (src / "lib" / "pkg" / "mod.py").read_bytes()
    assert os.listdir(dest.parent) == [info.sha256_hex]  # the temp dir was renamed, not copied


def test_make_zip_is_deterministic_relative_and_skips_bytecode(src: Path) -> None:
    first = make_zip(src)
    os.utime(src / "handler.py", (1_000_000, 1_000_000))
    assert make_zip(src) == first  # timestamps do not leak into the package (stable CodeSha256)
    zf = zipfile.ZipFile(io.BytesIO(first))
    names = zf.namelist()
    assert names == ["bootstrap", "empty/", "handler.py", "lib/", "lib/link.py", "lib/pkg/", "lib/pkg/mod.py"]
    modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    assert modes["bootstrap"] == EXE and modes["handler.py"] == FILE
    assert stat.S_ISLNK(modes["lib/link.py"]) and zf.read("lib/link.py") == b"pkg/mod.py"


@pytest.mark.parametrize(
    "name",
    [
        "../../evil.py",
        "a/../../evil.py",
        "/abs.py",
        "..\\evil.py",
        "a\\..\\..\\evil.py",
        "C:\\evil.py",
        "\\\\server\\share\\evil.py",
        "a/..",
    ],
)
def test_rejects_member_names_that_escape(tmp_path: Path, name: str) -> None:
    data = build(("ok.py", b"x = 1\n", FILE), (name, b"print('pwned')\n", FILE))
    assert_rejected(tmp_path, data, escapes(name))


def test_rejects_nul_in_member_name(tmp_path: Path) -> None:
    data = build(("evilXpy", b"x", FILE)).replace(b"evilXpy", b"evil\0py")
    assert zipfile.ZipFile(io.BytesIO(data)).infolist()[0].orig_filename == "evil\0py"
    assert_rejected(tmp_path, data, escapes("evil\\0py"))


@pytest.mark.parametrize(
    ("links", "culprit"),
    [
        ([("l", "/etc/passwd")], "l"),
        ([("l", "../x")], "l"),
        ([("sub/l", "../../x")], "sub/l"),
        ([("sub/l", "ok/../../..")], "sub/l"),
        # Each stays inside when read alone; resolved through each other they leave the root.
        ([("a", "."), ("b", "a/..")], "b"),
        ([("a/l", ".."), ("a/l/l2", "..")], "a/l/l2"),
    ],
)
def test_rejects_symlinks_that_escape(tmp_path: Path, links: list[tuple[str, str]], culprit: str) -> None:
    data = build(("ok.py", b"x = 1\n", FILE), *((name, target, LINK) for name, target in links))
    assert_rejected(tmp_path, data, escapes(culprit))


@pytest.mark.parametrize("link_first", [True, False])
def test_rejects_member_written_through_symlink_dir(tmp_path: Path, link_first: bool) -> None:
    link, member = ("d", "sub", LINK), ("d/evil.py", b"pwned", FILE)
    data = build(("sub/x.py", b"x", FILE), *((link, member) if link_first else (member, link)))
    assert_rejected(tmp_path, data, escapes("d/evil.py"))


def test_rejects_member_written_through_escaping_symlink(tmp_path: Path) -> None:
    data = build(("d", "/tmp", LINK), ("d/evil.py", b"pwned", FILE))
    assert_rejected(tmp_path, data, escapes("d"))


def test_allows_symlinks_that_stay_inside(tmp_path: Path) -> None:
    data = build(("top.py", b"TOP", FILE), ("sub/up.py", "../top.py", LINK), ("alias", "sub", LINK))
    assert inspect_package(data).files == 3
    dest = tmp_path / "pkg"
    extract_package(data, dest)
    assert os.readlink(dest / "sub" / "up.py") == "../top.py"
    assert os.readlink(dest / "alias") == "sub"
    assert (dest / "alias" / "up.py").read_bytes() == b"TOP"


def good_zip() -> bytes:
    return build(
        ("hello.txt", b"hello world", FILE),
        ("more.txt", b"more " * 100, FILE),
        compression=zipfile.ZIP_STORED,
    )


@pytest.mark.parametrize(
    "data",
    [
        b"this is not a zip file",
        b"",
        good_zip()[: len(good_zip()) // 2],
        good_zip().replace(b"hello world", b"hellO world"),  # CRC mismatch
        patch_central_dir(
            build(("hello.txt", b"hello world", FILE), compression=zipfile.ZIP_STORED), file_size=5
        ),  # header claims fewer bytes than the data holds
    ],
    ids=["not-a-zip", "empty", "truncated", "bad-crc", "short-header"],
)
def test_rejects_unreadable_zip(tmp_path: Path, data: bytes) -> None:
    assert_rejected(tmp_path, data, UNZIP)


def test_rejects_oversized_upload_before_anything_else(tmp_path: Path) -> None:
    assert_rejected(
        tmp_path, bytes(52428801), "Zipped size must be smaller than 52428800 bytes", RequestEntityTooLarge
    )


def test_upload_of_exactly_the_limit_is_not_too_large() -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        inspect_package(bytes(52428800))
    assert caught.value.message == UNZIP


def test_rejects_zip_bomb(tmp_path: Path) -> None:
    buf, chunk = io.BytesIO(), bytes(1 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as f:
        for _ in range(300):  # 300 MiB of zeros, streamed: ~300 KB zipped
            f.write(chunk)
    data = buf.getvalue()
    assert len(data) < 1_000_000
    assert_rejected(tmp_path, data, UNZIPPED_TOO_LARGE)


def test_rejects_header_claiming_huge_size(tmp_path: Path) -> None:
    data = patch_central_dir(build(("big.bin", b"x" * 10_000, FILE)), file_size=300_000_000)
    assert_rejected(tmp_path, data, UNZIPPED_TOO_LARGE)


def test_rejects_one_member_over_the_ratio(tmp_path: Path) -> None:
    # 10 MiB of zeros deflates ~1027:1; the random file keeps the package as a whole near 90:1.
    data = build(("zeros.bin", bytes(10 << 20), FILE), ("noise.bin", os.urandom(100_000), FILE))
    assert_rejected(tmp_path, data, UNZIPPED_TOO_LARGE)


def test_rejects_package_over_the_ratio(tmp_path: Path) -> None:
    # The member claims twice its real compressed size (~500:1), but the whole upload is ~1000:1.
    plain = build(("zeros.bin", bytes(10 << 20), FILE))
    compressed = zipfile.ZipFile(io.BytesIO(plain)).infolist()[0].compress_size
    assert (10 << 20) > 1000 * len(plain)
    assert_rejected(tmp_path, patch_central_dir(plain, compress_size=2 * compressed), UNZIPPED_TOO_LARGE)


def many_entries(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            zf.writestr(f"f{i}", b"")
    return buf.getvalue()


def test_rejects_too_many_entries(tmp_path: Path) -> None:
    data = many_entries(20001)
    message = "Code package must contain at most 20000 entries"
    assert_rejected(tmp_path / "plain", data, message)
    # The end-of-directory record's own counts are not trusted.
    buf, at = bytearray(data), data.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", buf, at + 8, 1, 1)
    assert_rejected(tmp_path / "lying", bytes(buf), message)


def test_entry_count_is_refused_before_the_directory_is_parsed() -> None:
    # zipfile would build a ZipInfo per entry (~30 MB here, ~300 MB for a 50 MB upload) first.
    data = many_entries(60_000)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidParameterValue):
            inspect_package(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_accepts_exactly_max_entries() -> None:
    assert inspect_package(many_entries(20000)).files == 20000


def test_rejects_duplicate_entries(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = build(("a.py", b"one", FILE), ("a.py", b"two", FILE))
    assert_rejected(tmp_path, data, f"{UNZIP} Entry 'a.py' appears more than once.")


def test_rejects_unsupported_compression(tmp_path: Path) -> None:
    data = build(("a.py", b"x" * 1000, FILE), compression=zipfile.ZIP_BZIP2)
    assert_rejected(
        tmp_path, data, f"{UNZIP} Entry 'a.py' is encrypted or uses an unsupported compression method."
    )


def test_extract_refuses_existing_dest(tmp_path: Path) -> None:
    dest = tmp_path / "pkg"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    with pytest.raises(FileExistsError):
        extract_package(build(("a.py", b"x", FILE)), dest)
    assert sorted(os.listdir(tmp_path)) == ["pkg"] and os.listdir(dest) == ["keep"]


def test_concurrent_extractors_of_one_package(tmp_path: Path) -> None:
    data = build(*((f"m{i}/f.py", os.urandom(2000), FILE) for i in range(300)))
    dest, barrier, errors, winners = tmp_path / "store" / "pkg", threading.Barrier(4), [], []

    def extract() -> None:
        barrier.wait()
        try:
            extract_package(data, dest)
            winners.append(True)
        except FileExistsError:
            pass  # started after someone finished: the caller's contract, not corruption
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=extract) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and winners
    assert os.listdir(tmp_path / "store") == ["pkg"]  # the losers' temp dirs are gone
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert {n: (dest / n).read_bytes() for n in zf.namelist()} == {n: zf.read(n) for n in zf.namelist()}
