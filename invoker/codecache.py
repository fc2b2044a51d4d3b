"""Code packages on local disk, fetched from the object store once and kept by sha256.

A package is kept while it may run again here; one that a newer deploy superseded is dropped
(:meth:`CodeCache.drop`) once nothing runs it, so a node that sees many deploys does not fill its
disk. The directory belongs to this invoker alone (one per state directory or pod).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from nats.js import JetStreamContext

from kambda import bus, codepkg
from kambda.bus import chunks


class CodeCache:
    def __init__(self, js: JetStreamContext, root: Path) -> None:
        self._js = js
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
                data = await chunks.read_object(self._js, bus.CODE_BUCKET, sha256_hex)
                self._root.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(codepkg.extract_package, data, dest)
        self._locks.pop(sha256_hex, None)
        return dest

    def drop(self, sha256_hex: str) -> None:
        """Delete an extracted package (blocking: call in a thread). One being fetched is kept."""
        if sha256_hex and sha256_hex not in self._locks:
            shutil.rmtree(self._root / sha256_hex, ignore_errors=True)
