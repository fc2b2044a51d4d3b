"""Code packages on local disk, fetched from the object store once and kept by sha256.

A package is kept while it may run again here; one that a newer deploy superseded is dropped
(:meth:`CodeCache.drop`) once nothing runs it, so a node that sees many deploys does not fill its
disk. The directory belongs to this invoker alone (one per state directory or pod).

Packages are read with kambda/bus/chunks.py (nats-py's ObjectStore.get leaks a consumer per read).
How they are read is the cache's ``fetch``: through the invoker's own connection (:func:`from_bus`),
or, on Kubernetes with per-function credentials, through a connection whose credential reads that
one package and nothing else (:func:`with_code_tokens`).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.js import JetStreamContext

from kambda import bus, codepkg
from kambda.bus import callout, chunks

Fetch = Callable[[str], Awaitable[bytes]]


def from_bus(js: JetStreamContext) -> Fetch:
    async def fetch(sha256_hex: str) -> bytes:
        return await chunks.read_object(js, bus.CODE_BUCKET, sha256_hex)
    return fetch


class CodeTokenMissing(RuntimeError):
    """No assignment brought a credential for this package."""


def with_code_tokens(nats_url: str, name: str, tokens: dict[str, str]) -> Fetch:
    """Read a package with the code token its assignment brought (``tokens``: sha256 -> token, kept
    current by the host), on a connection of its own for that one read."""
    async def fetch(sha256_hex: str) -> bytes:
        token = tokens.get(sha256_hex, "")
        grant = callout.code_grant_of(token) if token else None
        if grant is None:
            raise CodeTokenMissing(f"no code credential for package {sha256_hex[:12]}")
        nc = await bus.connect(nats_url, name, token=token, inbox_prefix=callout.code_inbox(grant.reader))
        try:
            return await chunks.read_object(nc.jetstream(), bus.CODE_BUCKET, sha256_hex, consumer=grant.reader)
        finally:
            await nc.close()
    return fetch


class CodeCache:
    def __init__(self, fetch: Fetch, root: Path) -> None:
        self._fetch = fetch
        self._root = root
        self._locks: dict[str, asyncio.Lock] = {}

    async def path(self, sha256_hex: str) -> Path:
        """The directory holding the package ``sha256_hex``, extracted (fetched if need be)."""
        dest = self._root / sha256_hex
        if dest.is_dir():
            return dest
        lock = self._locks.setdefault(sha256_hex, asyncio.Lock())
        async with lock:
            if not dest.is_dir():
                data = await self._fetch(sha256_hex)
                self._root.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(codepkg.extract_package, data, dest)
        self._locks.pop(sha256_hex, None)
        return dest

    def drop(self, sha256_hex: str) -> None:
        """Delete an extracted package (blocking: call in a thread). One being fetched is kept."""
        if sha256_hex and sha256_hex not in self._locks:
            shutil.rmtree(self._root / sha256_hex, ignore_errors=True)
