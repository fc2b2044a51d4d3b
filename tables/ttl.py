"""Time to live: items whose TTL attribute (epoch seconds) has passed are deleted by a sweeper, as DynamoDB's
background process deletes them, with a REMOVE stream record whose ``userIdentity`` is the service's.

Reads do not hide an expired item before the sweeper removes it (DynamoDB's do not either). One sweeper at a
time across the worker replicas (a lease row); every ``interval_s`` it deletes what has expired by the injected
clock's ``now``, a batch per transaction, and drops stream records past their 24 hours and spent
ClientRequestTokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from kambda.sql import Database, Tx
from tables import codec, storage
from tables.storage import Specs

log = logging.getLogger(__name__)

BATCH = 200
RETENTION_S = 24 * 3600
TOKEN_TTL_S = 600.0


def sweep(tx: Tx, specs: Specs, region: str, now: float) -> int:
    """Delete up to BATCH expired items in this transaction; how many."""
    rows = tx.execute("SELECT tid, h, pk, sk, item FROM ddb_items WHERE ttl IS NOT NULL AND ttl <= ? ORDER BY ttl"
                      " LIMIT ?", (now, BATCH))
    for tid, h, pk, sk, data in rows:
        table = specs.by_tid(tx, tid)
        if table is None:
            continue
        storage.write(tx, table, storage.Key(h, pk, sk), codec.loads(data), None, region, now, storage.TTL_IDENTITY)
    return len(rows)


def prune(tx: Tx, now: float) -> None:
    tx.execute("DELETE FROM ddb_stream WHERE created < ? AND seq NOT IN (SELECT seq FROM ddb_outbox)",
               (now - RETENTION_S,))
    tx.execute("DELETE FROM ddb_tokens WHERE created < ?", (now - TOKEN_TTL_S,))


class Sweeper:
    def __init__(self, db: Database, region: str, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._region = region
        self._interval_s = interval_s
        self._clock = clock
        self._specs = Specs()
        self._holder = uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None
        self.removed = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def once(self) -> int:
        """One sweep, if this replica holds the lease: every expired item by now; how many were removed."""
        now = self._clock()
        if not await self._db.write(lambda tx: storage.lease(tx, "ttl", self._holder, now,
                                                             max(self._interval_s * 3, 30.0))):
            return 0
        removed = 0
        while True:
            batch = await self._db.write(lambda tx: sweep(tx, self._specs, self._region, now))
            removed += batch
            if batch < BATCH:
                break
        await self._db.write(lambda tx: prune(tx, now))
        self.removed += removed
        return removed

    async def _run(self) -> None:
        while True:
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the TTL sweep failed (%s); trying again", exc)
            await asyncio.sleep(self._interval_s)
