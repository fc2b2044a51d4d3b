"""Code packages on local disk, fetched from the object store once and kept by sha256."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.js import JetStreamContext

from kambda import bus, codepkg


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
                store = await self._js.object_store(bus.CODE_BUCKET)
                result = await store.get(sha256_hex)
                self._root.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(codepkg.extract_package, result.data or b"", dest)
        self._locks.pop(sha256_hex, None)
        return dest
