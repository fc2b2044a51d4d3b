"""S3's figures (issue #18), through the front door over plain HTTP (path-style, unsigned from loopback), against
the same operations on the local disk (the physical limit):

- 1 KiB PutObject and GetObject per second at 16 clients;
- 100 MB and 1 GB PutObject and GetObject in MB/s (one client, the body streamed from and to a file);
- a ListObjectsV2 page of 1,000 keys from a bucket of 100,000: p50 in ms.

The disk side writes and reads the same bytes as files in a temporary directory (no fsync, as JetStream's file
store does not sync per write either) and lists a directory of as many files, sorted, from the same prefix.
``python -m bench.s3`` runs these; ``--quick`` uses tiny counts (the smoke test's). bench/objects.py measures the
engine alone (objects/store.py) against the bare JetStream and SQL work under it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.__main__ import start_kambda
from bench.tables import load

GOALS = {"put_1k_per_second": 1_500, "get_1k_per_second": 3_000, "put_100mb_mb_s": 200, "get_100mb_mb_s": 200,
         "list_1000_of_100000_ms": 20}
MB = 1024 * 1024
SMALL = os.urandom(1024)


async def ok(response: aiohttp.ClientResponse, what: str) -> None:
    if response.status >= 300:
        raise SystemExit(f"{what}: {response.status} {(await response.text())[:300]}")


async def bucket(session: aiohttp.ClientSession, url: str, name: str) -> None:
    async with session.put(f"{url}/{name}") as response:
        await ok(response, "CreateBucket")


async def small(session: aiohttp.ClientSession, url: str, clients: int, seconds: float) -> dict[str, Any]:
    await bucket(session, url, "bench-small")
    written = 0

    async def put(i: int) -> None:
        nonlocal written
        async with session.put(f"{url}/bench-small/k{i}", data=SMALL) as response:
            await ok(response, "PutObject")
        written = max(written, i + 1)

    async def get(i: int) -> None:
        async with session.get(f"{url}/bench-small/k{i % written}") as response:
            await ok(response, "GetObject")
            await response.read()

    await load(put, 4, min(1.0, seconds))  # warm
    put_rate, put_p50 = await load(put, clients, seconds)
    get_rate, get_p50 = await load(get, clients, seconds)
    return {"clients": clients, "put_per_second": put_rate, "put_p50_ms": put_p50, "get_per_second": get_rate,
            "get_p50_ms": get_p50}


def disk_small(directory: Path, seconds: float) -> dict[str, float]:
    directory.mkdir()
    deadline, n = time.monotonic() + seconds, 0
    began = time.perf_counter()
    while time.monotonic() < deadline:
        (directory / f"k{n}").write_bytes(SMALL)
        n += 1
    put_rate = n / (time.perf_counter() - began)
    deadline, m = time.monotonic() + seconds, 0
    began = time.perf_counter()
    while time.monotonic() < deadline:
        (directory / f"k{m % n}").read_bytes()
        m += 1
    return {"put_per_second": put_rate, "get_per_second": m / (time.perf_counter() - began)}


def make_file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        for _ in range(size // MB):
            f.write(os.urandom(MB))
    return path


async def large(session: aiohttp.ClientSession, url: str, source: Path) -> dict[str, float]:
    size = source.stat().st_size
    key = f"{url}/bench-large/{source.name}"
    began = time.perf_counter()
    with source.open("rb") as f:
        async with session.put(key, data=f, headers={"Content-Length": str(size)}) as response:
            await ok(response, "PutObject")
    put_s = time.perf_counter() - began
    began = time.perf_counter()
    got = 0
    async with session.get(key) as response:
        await ok(response, "GetObject")
        async for chunk in response.content.iter_chunked(MB):
            got += len(chunk)
    get_s = time.perf_counter() - began
    if got != size:
        raise SystemExit(f"GetObject of {source.name} gave {got} bytes, not {size}")
    async with session.delete(key) as response:
        await ok(response, "DeleteObject")
    return {"mb": size / MB, "put_mb_s": size / MB / put_s, "get_mb_s": size / MB / get_s}


def disk_large(source: Path, directory: Path) -> dict[str, float]:
    size = source.stat().st_size
    target = directory / f"copy-{source.name}"
    began = time.perf_counter()
    with source.open("rb") as src, target.open("wb") as dst:
        while block := src.read(MB):
            dst.write(block)
    put_s = time.perf_counter() - began
    began = time.perf_counter()
    with target.open("rb") as f:
        while f.read(MB):
            pass
    get_s = time.perf_counter() - began
    target.unlink()
    return {"put_mb_s": size / MB / put_s, "get_mb_s": size / MB / get_s}


async def listing(session: aiohttp.ClientSession, url: str, keys: int, page: int, calls: int) -> dict[str, Any]:
    await bucket(session, url, "bench-list")
    left = iter(range(keys))

    async def writer() -> None:
        for i in left:
            async with session.put(f"{url}/bench-list/k/{i:07d}", data=b"") as response:
                await ok(response, "PutObject")

    began = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(16)))
    filled_s = time.perf_counter() - began
    middle = f"k/{keys // 2:07d}"[: -len(str(page))]  # a prefix in the middle of the bucket
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        async with session.get(f"{url}/bench-list", params={"list-type": "2", "start-after": middle,
                                                            "max-keys": str(page)}) as response:
            await ok(response, "ListObjectsV2")
            body = await response.text()
        samples.append((time.perf_counter() - began) * 1000)
    if body.count("<Key>") != page:
        raise SystemExit(f"ListObjectsV2 gave {body.count('<Key>')} keys, not {page}")
    return {"keys": keys, "page": page, "fill_seconds": filled_s, "p50_ms": statistics.median(samples)}


def disk_listing(directory: Path, keys: int, page: int, calls: int) -> dict[str, float]:
    directory.mkdir()
    for i in range(keys):
        (directory / f"k-{i:07d}").touch()
    middle = f"k-{keys // 2:07d}"
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        names = sorted(entry.name for entry in os.scandir(directory))
        start = next(i for i, name in enumerate(names) if name > middle)
        assert len(names[start:start + page]) == page
        samples.append((time.perf_counter() - began) * 1000)
    return {"p50_ms": statistics.median(samples)}


async def figures(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kambda-bench-s3-") as scratch:
        work = Path(scratch)
        sources = [make_file(work / f"{mb}mb", mb * MB) for mb in args.large_mb]
        result: dict[str, Any] = {"goals": GOALS, "disk": {"small": disk_small(work / "small", args.seconds),
                                                           "large": {}}}
        for source in sources:
            result["disk"]["large"][source.name] = disk_large(source, work)
        result["disk"]["list"] = disk_listing(work / "list", args.list_keys, args.page, args.list_calls)
        proc, url = start_kambda(work / "state", scale_to_zero_after=600)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.clients * 2),
                                             timeout=aiohttp.ClientTimeout(total=3600)) as session:
                result["small"] = await small(session, url, args.clients, args.seconds)
                await bucket(session, url, "bench-large")
                result["large"] = {source.name: await large(session, url, source) for source in sources}
                result["list"] = await listing(session, url, args.list_keys, args.page, args.list_calls)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        return result


def _ratio(kambda: float, disk: float) -> str:
    return f"{kambda / disk:.0%}" if disk else "-"


def markdown(result: dict[str, Any]) -> str:
    s, d = result["small"], result["disk"]
    lines = ["| S3 | kambda | local disk | kambda / disk | goal |", "|---|---|---|---|---|",
             f"| 1 KiB PUT per second, {s['clients']} clients (p50 ms) | {s['put_per_second']:,.0f} "
             f"({s['put_p50_ms']:.2f}) | {d['small']['put_per_second']:,.0f} | "
             f"{_ratio(s['put_per_second'], d['small']['put_per_second'])} | {GOALS['put_1k_per_second']:,} |",
             f"| 1 KiB GET per second, {s['clients']} clients (p50 ms) | {s['get_per_second']:,.0f} "
             f"({s['get_p50_ms']:.2f}) | {d['small']['get_per_second']:,.0f} | "
             f"{_ratio(s['get_per_second'], d['small']['get_per_second'])} | {GOALS['get_1k_per_second']:,} |"]
    for name, figures in result["large"].items():
        disk = d["large"][name]
        for op in ("put", "get"):
            goal = GOALS.get(f"{op}_100mb_mb_s", "-") if name == "100mb" else "-"
            lines.append(f"| {figures['mb']:,.0f} MB {op.upper()}, MB/s | {figures[f'{op}_mb_s']:,.0f} | "
                         f"{disk[f'{op}_mb_s']:,.0f} | {_ratio(figures[f'{op}_mb_s'], disk[f'{op}_mb_s'])} | {goal} |")
    listed = result["list"]
    lines.append(f"| ListObjectsV2 of {listed['page']:,} keys from {listed['keys']:,}: p50 ms | "
                 f"{listed['p50_ms']:.1f} | {d['list']['p50_ms']:.1f} | - | {GOALS['list_1000_of_100000_ms']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.s3")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--large-mb", type=int, nargs="*", default=[100, 1024])
    parser.add_argument("--list-keys", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--list-calls", type=int, default=20)
    parser.add_argument("--out", type=Path, help="write result.json and result.md here")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.clients, args.large_mb = 0.5, 4, [4]
        args.list_keys, args.page, args.list_calls = 300, 100, 3
    result = asyncio.run(figures(args))
    table = markdown(result)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(result, indent=2))
        (args.out / "result.md").write_text(table + "\n")
    print(json.dumps(result, indent=2))
    print(table)


if __name__ == "__main__":
    main()
