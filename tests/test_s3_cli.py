"""S3 through the AWS CLI: ``aws s3 cp`` of a 200 MB file (a multipart upload and ranged, parallel downloads)
up and down, ``aws s3 sync`` of a folder both ways, ``aws s3 ls``/``rm``, and ``aws s3 presign`` used with urllib."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.conftest import Platform, unique

MiB = 1024 * 1024


def aws(platform: Platform, tmp_path: Path, *args: str, timeout: float = 600) -> str:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": str(tmp_path / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-creds")}
    env.pop("AWS_ENDPOINT_URL", None)
    done = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", platform.url, *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"aws {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def gateway_peak_rss_mb(platform: Platform) -> float | None:
    """The gateway process's peak resident memory (VmHWM), for the notes; None when it cannot be read."""
    assert platform.proc is not None
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(platform.proc.pid) and b"gateway" in cmdline:
            return int(fields["VmHWM"].split()[0]) / 1024
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(MiB):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def s3(platform: Platform) -> Any:
    return boto3.client("s3", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", config=Config(retries={"max_attempts": 1},
                                                                 s3={"addressing_style": "path"}))


def test_cp_of_200_mb_up_and_down(platform: Platform, s3: Any, tmp_path: Path) -> None:
    bucket = unique("cli")
    aws(platform, tmp_path, "s3", "mb", f"s3://{bucket}")
    source = tmp_path / "big.bin"
    with source.open("wb") as handle:
        for _ in range(200):
            handle.write(os.urandom(MiB))
    started = time.monotonic()
    aws(platform, tmp_path, "s3", "cp", str(source), f"s3://{bucket}/dir/big.bin")
    print(f"\naws s3 cp of 200 MB up: {time.monotonic() - started:.1f} s")
    head = s3.head_object(Bucket=bucket, Key="dir/big.bin")
    assert head["ContentLength"] == 200 * MiB and "-" in head["ETag"]  # a multipart upload
    back = tmp_path / "back.bin"
    started = time.monotonic()
    aws(platform, tmp_path, "s3", "cp", f"s3://{bucket}/dir/big.bin", str(back))
    print(f"aws s3 cp of 200 MB down: {time.monotonic() - started:.1f} s")
    assert sha256_of(back) == sha256_of(source)
    print(f"\nthe gateway's peak RSS after 200 MB up and down: {gateway_peak_rss_mb(platform)} MB")
    assert "big.bin" in aws(platform, tmp_path, "s3", "ls", f"s3://{bucket}/dir/")
    # A server-side copy of a large object: the CLI copies it in ranged parts (UploadPartCopy).
    started = time.monotonic()
    aws(platform, tmp_path, "s3", "cp", f"s3://{bucket}/dir/big.bin", f"s3://{bucket}/copy.bin")
    print(f"\naws s3 cp of 200 MB within S3 (UploadPartCopy ranges): {time.monotonic() - started:.1f} s")
    assert s3.head_object(Bucket=bucket, Key="copy.bin")["ContentLength"] == 200 * MiB
    with source.open("rb") as handle:
        for offset in (0, 77 * MiB + 5, 200 * MiB - MiB):
            handle.seek(offset)
            want = handle.read(MiB)
            got = s3.get_object(Bucket=bucket, Key="copy.bin", Range=f"bytes={offset}-{offset + MiB - 1}")
            assert got["Body"].read() == want, offset
    aws(platform, tmp_path, "s3", "rm", f"s3://{bucket}/copy.bin")
    aws(platform, tmp_path, "s3", "rm", f"s3://{bucket}/dir/big.bin")
    aws(platform, tmp_path, "s3", "rb", f"s3://{bucket}")


def test_sync_a_folder_both_ways(platform: Platform, tmp_path: Path) -> None:
    bucket = unique("sync")
    aws(platform, tmp_path, "s3", "mb", f"s3://{bucket}")
    folder = tmp_path / "site"
    files = {"index.html": b"<h1>hi</h1>", "css/a b.css": b"body{}", "img/x.bin": os.urandom(300_000),
             "deep/er/still/file.txt": b"deep"}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    aws(platform, tmp_path, "s3", "sync", str(folder), f"s3://{bucket}/site")
    listed = aws(platform, tmp_path, "s3", "ls", "--recursive", f"s3://{bucket}/")
    assert all(f"site/{name}" in listed for name in files)
    (folder / "index.html").write_bytes(b"<h1>changed</h1>")
    (folder / "deep/er/still/file.txt").unlink()
    out = aws(platform, tmp_path, "s3", "sync", "--delete", str(folder), f"s3://{bucket}/site")
    assert "index.html" in out and "delete:" in out
    copy = tmp_path / "copy"
    aws(platform, tmp_path, "s3", "sync", f"s3://{bucket}/site", str(copy))
    got = {str(p.relative_to(copy)): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    files.pop("deep/er/still/file.txt")
    files["index.html"] = b"<h1>changed</h1>"
    assert got == files
    aws(platform, tmp_path, "s3", "rb", "--force", f"s3://{bucket}")


def test_presign_with_urllib(platform: Platform, tmp_path: Path) -> None:
    bucket = unique("pre")
    aws(platform, tmp_path, "s3", "mb", f"s3://{bucket}")
    source = tmp_path / "note.txt"
    source.write_bytes(b"shared by URL")
    aws(platform, tmp_path, "s3", "cp", str(source), f"s3://{bucket}/note.txt")
    url = aws(platform, tmp_path, "s3", "presign", f"s3://{bucket}/note.txt", "--expires-in", "300").strip()
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"shared by URL"
    aws(platform, tmp_path, "s3", "rb", "--force", f"s3://{bucket}")
