"""kambda/sql.py: the same calls, the same answers, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kambda.sql import Database, IntegrityError, Tx
from tests.conftest import unique
from tests.postgres import fresh_database, postgres_server

SCHEMA = {
    "sqlite": [
        "CREATE TABLE kv (k BLOB NOT NULL PRIMARY KEY, v TEXT) WITHOUT ROWID",
        "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
        "INSERT INTO counter (id, n) VALUES (1, 0)",
    ],
    "postgresql": [
        "CREATE TABLE kv (k BYTEA NOT NULL PRIMARY KEY, v TEXT)",
        "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
        "INSERT INTO counter (id, n) VALUES (1, 0)",
    ],
}


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = Database.open(None, tmp_path / "state" / "t.db")
    else:
        database = Database.open(fresh_database(request.getfixturevalue("pg_dsn"), unique("t")), tmp_path)
    await database.migrate("test-1", SCHEMA)
    yield database
    await database.close()


def test_open_parses_the_dsn(tmp_path: Path) -> None:
    assert Database.open("", tmp_path / "a.db").dialect == "sqlite"
    assert Database.open(f"sqlite://{tmp_path}/b.db", tmp_path / "a.db").dialect == "sqlite"
    with pytest.raises(ValueError, match="scheme must be sqlite or postgresql"):
        Database.open("mysql://x/y", tmp_path / "a.db")
    with pytest.raises(ValueError, match="absolute path"):
        Database.open("sqlite://relative.db", tmp_path / "a.db")


async def test_bytes_round_trip_and_sort_bytewise(db: Database) -> None:
    keys = [b"\xff", b"\x00", b"\x00\x00", b"a", b"\x7f\x80", b""]

    def put(tx: Tx) -> None:
        tx.executemany("INSERT INTO kv (k, v) VALUES (?, ?)", [(k, k.hex()) for k in keys])

    await db.write(put)
    rows = await db.read(lambda tx: tx.execute("SELECT k, v FROM kv ORDER BY k"))
    assert [r[0] for r in rows] == sorted(keys)
    assert all(isinstance(r[0], bytes) and r[1] == r[0].hex() for r in rows)
    between = await db.read(lambda tx: tx.execute("SELECT k FROM kv WHERE k > ? AND k <= ? ORDER BY k DESC",
                                                  (b"\x00", b"a")))
    assert [r[0] for r in between] == [b"a", b"\x00\x00"]


async def test_a_failing_work_rolls_back(db: Database) -> None:
    def fail(tx: Tx) -> None:
        tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (b"x", "1"))
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        await db.write(fail)
    assert await db.read(lambda tx: tx.execute("SELECT count(*) FROM kv")) == [(0,)]


async def test_duplicate_key_is_an_integrity_error(db: Database) -> None:
    await db.write(lambda tx: tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (b"k", "1")))
    with pytest.raises(IntegrityError):
        await db.write(lambda tx: tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (b"k", "2")))
    assert await db.read(lambda tx: tx.execute("SELECT v FROM kv")) == [("1",)]


async def test_percent_and_returning(db: Database) -> None:
    await db.write(lambda tx: tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (b"p", "50%")))
    assert await db.read(lambda tx: tx.execute("SELECT v FROM kv WHERE v LIKE '5%'")) == [("50%",)]
    rows = await db.write(lambda tx: tx.execute("UPDATE counter SET n = n + ? WHERE id = 1 RETURNING n", (5,)))
    assert rows == [(5,)]


async def test_migrate_is_idempotent(db: Database) -> None:
    await db.migrate("test-1", SCHEMA)
    await db.migrate("test-2", {d: ["CREATE TABLE extra (a INTEGER)"] for d in ("sqlite", "postgresql")})
    await db.migrate("test-2", {d: ["CREATE TABLE extra (a INTEGER)"] for d in ("sqlite", "postgresql")})
    assert await db.read(lambda tx: tx.execute("SELECT n FROM counter")) == [(0,)]
    with pytest.raises(ValueError, match="no statements for"):
        await db.migrate("test-3", {"oracle": []})


async def test_read_modify_writes_never_interleave(db: Database) -> None:
    def increment(tx: Tx) -> None:
        (n,), = tx.execute("SELECT n FROM counter WHERE id = 1")
        tx.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))

    await asyncio.gather(*(db.write(increment) for _ in range(200)))
    assert await db.read(lambda tx: tx.execute("SELECT n FROM counter")) == [(200,)]


async def test_a_read_is_a_snapshot(db: Database) -> None:
    def two_reads(tx: Tx) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        first = tx.execute("SELECT n FROM counter")
        db.write_sync(lambda w: w.execute("UPDATE counter SET n = 99"))
        return first, tx.execute("SELECT n FROM counter")

    first, second = await db.read(two_reads)
    assert first == second == [(0,)]
    assert await db.read(lambda tx: tx.execute("SELECT n FROM counter")) == [(99,)]
