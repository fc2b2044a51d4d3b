"""One KV watch-and-restart loop, for every read-only copy of a bucket kept in memory.

The gateway's registry cache, its HTTP trigger configuration, the worker's registry mirror, the
event rules and the event source mappings each follow a bucket the same way: read every current
entry, say when the initial values are in, then apply each change as it comes. A watch that
breaks (NATS restarted, the connection moved) is started again after a pause; starting again
replays the current values, which the appliers take as puts, so nothing is missed.

:meth:`KvWatch.caught_up` is a read barrier: it returns once the copy reflects every write the
bucket had when it was called. A reader that does not find a key it was told about (an event
for a function created a moment ago through another process) waits on it before it concludes
that the key does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

log = logging.getLogger(__name__)

#: A key's new value, or None when it was deleted or purged.
OnEntry = Callable[[str, bytes | None], None]
#: The pause before a broken watch is started again.
RESTART_PAUSE_S = 0.5
#: How long the first load, and one wait for the copy to catch up, may take.
LOAD_TIMEOUT_S = 30.0
CATCH_UP_TIMEOUT_S = 5.0


class KvWatch:
    """Follows one bucket and hands every entry to ``on_entry``, restarting the watch when it breaks."""

    def __init__(self, js: JetStreamContext, bucket: str, on_entry: OnEntry, what: str) -> None:
        self._js = js
        self.bucket = bucket
        self._on_entry = on_entry
        self._what = what
        self.kv: KeyValue | None = None
        self.loaded = asyncio.Event()
        self._revision = 0  # the highest stream sequence applied
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = LOAD_TIMEOUT_S) -> None:
        """Open the bucket, start following it, and return once its current values are applied."""
        self.kv = await self._js.key_value(self.bucket)
        self._task = asyncio.create_task(self._run(self.kv))
        await asyncio.wait_for(self.loaded.wait(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, kv: KeyValue) -> None:
        while True:
            try:
                watcher = await kv.watchall()
                async for entry in watcher:
                    if entry is None:  # the end of the initial values
                        self.loaded.set()
                        continue
                    deleted = entry.operation in (KV_DEL, KV_PURGE)
                    self._on_entry(entry.key, None if deleted else entry.value or b"")
                    if entry.revision and entry.revision > self._revision:
                        self._revision = entry.revision
                        self._advanced.set()
                        self._advanced = asyncio.Event()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watch broke (NATS restarted): start it again
                log.warning("%s watch failed (%s); restarting it", self._what, exc)
                await asyncio.sleep(RESTART_PAUSE_S)

    async def caught_up(self, timeout: float = CATCH_UP_TIMEOUT_S) -> bool:
        """Wait until every write the bucket holds now has been applied; False if that took too long."""
        try:
            info = await self._js.stream_info(f"KV_{self.bucket}")
        except Exception as exc:
            log.warning("cannot read %s's position (%s)", self.bucket, exc)
            return False
        target = info.state.last_seq or 0
        deadline = asyncio.get_running_loop().time() + timeout
        while self._revision < target:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), left)
        return True


async def entries(js: JetStreamContext, kv: KeyValue) -> list[KeyValue.Entry]:
    """Every entry of a bucket that has a value now, each read after the call began.

    nats-py's ``KeyValue.keys()`` races its own push consumer: when the server has delivered every key before
    the client asks the consumer's state, it sees nothing pending and nothing received and answers *no keys*
    (a role listed right after it was created was missing, now and then). The stream's own subject list is
    consistent with every acknowledged write; each key is then read, and those whose last operation was a
    delete or purge are left out.
    """
    bucket = (await kv.status()).bucket
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
    found = []
    for subject in sorted(info.state.subjects or {}):
        with contextlib.suppress(KeyNotFoundError):
            found.append(await kv.get(subject[len(prefix):]))
    return found


async def keys(js: JetStreamContext, kv: KeyValue) -> list[str]:
    """The keys of :func:`entries`, sorted."""
    return [entry.key for entry in await entries(js, kv)]
