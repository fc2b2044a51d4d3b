"""The outbox: stream records leave the database for JetStream, in order, through the worker tier.

Every item change that makes a stream record writes it in the item's own transaction (``ddb_stream``) with its
sequence number in ``ddb_outbox`` (tables/storage.py). One forwarder at a time (a lease row in the database, so
any number of worker replicas may run this) reads the outbox in sequence order, publishes each record to
``kambda.ddb.<stream token>.<partition>`` (stream KAMBDA_DDB) and waits for JetStream's acknowledgement before
the next, and deletes the rows once they are acknowledged. A crash between the publish and the delete publishes
the record again with the same ``Nats-Msg-Id``, which JetStream's duplicate window drops: no record is lost,
duplicated or reordered per item across a crash.

The gateway nudges the forwarder on ``kambda.tables.outbox`` after a write that made records, so a record
usually leaves within milliseconds; without a nudge the forwarder looks every ``poll_s`` anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from kambda import bus
from kambda.sql import Database, Tx
from tables import storage

log = logging.getLogger(__name__)

BATCH = 256
LEASE_S = 10.0


def arn_of(stream: str, region: str, account: str) -> str:
    name, label = stream.split("/", 1)
    return f"arn:aws:dynamodb:{region}:{account}:table/{name}/stream/{label}"


class Outbox:
    def __init__(self, db: Database, nc: NATS, js: JetStreamContext, region: str, account: str,
                 poll_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self._db, self._nc, self._js = db, nc, js
        self._region, self._account = region, account
        self._poll_s = poll_s
        self._clock = clock
        self._holder = uuid.uuid4().hex
        self._nudged = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self.forwarded = 0
        self._held_until = 0.0

    async def start(self) -> None:
        async def nudge(msg: Any) -> None:
            self._nudged.set()

        self._sub = await self._nc.subscribe(bus.DDB_OUTBOX_SUBJECT, cb=nudge)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _run(self) -> None:
        while True:
            moved = 0
            try:
                if await self._leased():
                    moved = await self.forward()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the tables' outbox could not forward (%s); trying again", exc)
                await asyncio.sleep(self._poll_s)
            if moved >= BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), self._poll_s)
            self._nudged.clear()

    async def _leased(self) -> bool:
        """Whether this replica holds the lease; renewed once half of it has passed."""
        now = self._clock()
        if now < self._held_until - LEASE_S / 2:
            return True
        if await self._db.write(lambda tx: storage.lease(tx, "outbox", self._holder, now, LEASE_S)):
            self._held_until = now + LEASE_S
            return True
        self._held_until = 0.0
        return False

    async def forward(self) -> int:
        """Publish the oldest records of the outbox and delete them; how many were forwarded."""

        def oldest(tx: Tx) -> list[tuple[Any, ...]]:
            return tx.execute("SELECT o.seq, s.stream, s.part, s.record FROM ddb_outbox o JOIN ddb_stream s ON"
                              " s.seq = o.seq ORDER BY o.seq LIMIT ?", (BATCH,))

        rows = await self._db.read(oldest)
        done: list[int] = []
        try:
            for seq, stream, part, data in rows:
                record = orjson.loads(data)
                record["dynamodb"]["SequenceNumber"] = storage.sequence_number(seq)
                record["eventSourceARN"] = arn_of(stream, self._region, self._account)
                name, label = stream.split("/", 1)
                await self._js.publish(bus.ddb_subject(name, label, part), orjson.dumps(record),
                                       stream=bus.DDB_STREAM,
                                       headers={"Nats-Msg-Id": f"{bus.ddb_stream_token(name, label)}:{seq}"})
                done.append(seq)
        finally:
            if done:
                await self._db.write(lambda tx: tx.executemany("DELETE FROM ddb_outbox WHERE seq = ?",
                                                               [(s,) for s in done]))
                self.forwarded += len(done)
        return len(done)
