"""One SQL database behind the same calls on SQLite and PostgreSQL.

Products that keep rows (DynamoDB tables, S3's metadata index) call `write(work)` and `read(work)` with a plain
function of one `Tx`; the function runs on a worker thread, inside one transaction, and its result comes back to
the event loop. Statements use `?` placeholders on both engines (translated to `%s` for psycopg) and bytes go in
and out as bytes (BLOB / BYTEA: both compare bytewise, so keys that must sort as bytes are stored that way).

SQLite (the embedded default, stdlib `sqlite3`): WAL, a busy timeout, one writer connection on one thread
(`BEGIN IMMEDIATE`, so a read-modify-write in one `work` never interleaves with another writer, also across
processes that open the same file; the writes waiting are committed together, each in a savepoint) and reader
connections, one per reader thread, each `read` a snapshot.
`synchronous=NORMAL` in WAL mode: a committed transaction survives the process being killed (kill -9); only a
power loss may drop the last commits.

PostgreSQL (psycopg 3 with psycopg_pool): every `write` runs at SERIALIZABLE and is retried when PostgreSQL
reports a serialization failure or a deadlock, so `work` must be safe to run again (it only touches the `Tx`);
every `read` runs at REPEATABLE READ READ ONLY (a snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]

READERS = 4
PG_POOL_SIZE = 8
PG_WRITE_ATTEMPTS = 20
BUSY_TIMEOUT_MS = 30_000


class SQLError(Exception):
    """A database failure, wrapped so that library exceptions (sqlite3, psycopg) do not leak to callers."""


class IntegrityError(SQLError):
    """A constraint refused the statement (a duplicate primary key, a NOT NULL column)."""


class _Cursor(Protocol):
    @property
    def description(self) -> Any: ...

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...
    def executemany(self, sql: Any, params: Any, /) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Tx:
    """One transaction's statements; handed to the `work` of `Database.write` / `Database.read`."""

    def __init__(self, cursor: _Cursor, dialect: Dialect) -> None:
        self._cursor = cursor
        self.dialect: Dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns (empty for statements without a result)."""
        cursor = self._cursor
        cursor.execute(_translate(sql, self.dialect), tuple(params))
        if cursor.description is None:
            return []
        return [tuple(row) for row in cursor.fetchall()]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(_translate(sql, self.dialect), [tuple(row) for row in rows])


@functools.lru_cache(maxsize=1024)
def _translate(sql: str, dialect: Dialect) -> str:
    """`?` placeholders to psycopg's `%s` (a literal `%` doubled); SQLite takes the statement as written.

    Statements are the products' own text, never user data, so a `?` inside a string literal is not expected.
    """
    if dialect == "sqlite":
        return sql
    return sql.replace("%", "%%").replace("?", "%s")


class Database:
    """One SQL database: SQLite or PostgreSQL, the same calls on both."""

    dialect: Dialect

    def __init__(self, engine: _SQLite | _Postgres) -> None:
        self._engine = engine
        self.dialect = engine.dialect

    @classmethod
    def open(cls, dsn: str | None, default_path: Path) -> Database:
        """None or "" -> SQLite at default_path; "sqlite:///abs/path.db" or "postgresql://user:pw@host:port/db"."""
        if not dsn:
            return cls(_SQLite(Path(default_path)))
        scheme = urlsplit(dsn).scheme
        if scheme == "sqlite":
            path = dsn[len("sqlite://"):]
            if not path.startswith("/"):
                raise ValueError(f"DSN {dsn!r}: a SQLite DSN names an absolute path (sqlite:///abs/path.db)")
            return cls(_SQLite(Path(path)))
        if scheme in ("postgresql", "postgres"):
            return cls(_Postgres(dsn))
        raise ValueError(f"DSN {dsn!r}: the scheme must be sqlite or postgresql, not {scheme!r}")

    async def write(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in ONE transaction on a worker thread: committed when it returns, rolled back when it raises."""
        return await self._engine.run(self._engine.write_sync, work, writer=True)

    async def read(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in a read-only snapshot; reads may run concurrently with each other and with a writer."""
        return await self._engine.run(self._engine.read_sync, work, writer=False)

    def write_sync(self, work: Callable[[Tx], T]) -> T:
        """`write` for code that already runs on its own thread (benchmarks, tools)."""
        return self._engine.write_sync(work)

    def read_sync(self, work: Callable[[Tx], T]) -> T:
        return self._engine.read_sync(work)

    async def migrate(self, name: str, statements: dict[str, list[str]]) -> None:
        """Apply `statements[self.dialect]` once per database under `name` (recorded in kambda_migrations)."""
        ddl = statements.get(self.dialect)
        if ddl is None:
            raise ValueError(f"migration {name!r} has no statements for {self.dialect}")

        def apply(tx: Tx) -> None:
            if tx.dialect == "postgresql":
                # One migrator at a time across replicas, also for the first CREATE TABLE IF NOT EXISTS.
                tx.execute("SELECT pg_advisory_xact_lock(7306128916)")
            tx.execute("CREATE TABLE IF NOT EXISTS kambda_migrations"
                       " (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION)")
            if tx.execute("SELECT 1 FROM kambda_migrations WHERE name = ?", (name,)):
                return
            for statement in ddl:
                tx.execute(statement)
            tx.execute("INSERT INTO kambda_migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))

        await self.write(apply)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._engine.close)


class _Job:
    __slots__ = ("work", "loop", "future", "ok", "value")

    def __init__(self, work: Callable[[Tx], Any], loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]):
        self.work, self.loop, self.future = work, loop, future
        self.ok = False
        self.value: Any = None


def _settle(jobs: list[_Job]) -> None:
    for job in jobs:
        if not job.future.done():
            if job.ok:
                job.future.set_result(job.value)
            else:
                job.future.set_exception(job.value)


def _wrap_sqlite(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(f"sqlite: {exc}")
    if isinstance(exc, sqlite3.Error):
        return SQLError(f"sqlite: {exc}")
    return exc


class _SQLite:
    """One writer thread and READERS reader threads, each with its own connection, fed by queues.

    A thread takes every job waiting (up to BATCH) and runs them in ONE transaction: the writer's jobs each in a
    savepoint (a job that raises rolls back only its own statements), so a burst of writes costs one
    ``BEGIN IMMEDIATE``/``COMMIT`` and one wake-up of the event loop instead of one each (group commit); a
    job's result is handed back only after the COMMIT. The readers' jobs share one snapshot, taken after every
    one of them was submitted.
    """

    dialect: Dialect = "sqlite"
    BATCH = 64

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._writes: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._reads: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, args=(self._writes, True), daemon=True,
                                          name="sql-writer")]
        self._threads += [threading.Thread(target=self._serve, args=(self._reads, False), daemon=True,
                                           name=f"sql-reader-{i}") for i in range(READERS)]
        for thread in self._threads:
            thread.start()

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise SQLError("the database is closed")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            self._connections.append(conn)
        return conn

    async def run(self, fn: Callable[[Callable[[Tx], T]], T], work: Callable[[Tx], T], *, writer: bool) -> T:
        if self._closed:
            raise SQLError("the database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        (self._writes if writer else self._reads).put(_Job(work, loop, future))
        return await future

    def _serve(self, jobs: queue.SimpleQueue[_Job | None], writer: bool) -> None:
        conn: sqlite3.Connection | None = None
        while True:
            first = jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.BATCH:
                try:
                    more = jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    jobs.put(None)
                    break
                batch.append(more)
            try:
                if conn is None:
                    conn = self._connect()
                self._run_batch(conn, batch, writer)
            except BaseException as exc:
                for job in batch:
                    job.ok, job.value = False, _wrap_sqlite(exc)
            by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
            for job in batch:
                by_loop.setdefault(job.loop, []).append(job)
            for loop, settled in by_loop.items():
                with contextlib.suppress(RuntimeError):  # a loop closed meanwhile
                    loop.call_soon_threadsafe(_settle, settled)

    @staticmethod
    def _run_batch(conn: sqlite3.Connection, batch: list[_Job], writer: bool) -> None:
        cursor = conn.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE" if writer else "BEGIN")
            tx = Tx(cursor, "sqlite")
            for job in batch:
                if writer:
                    cursor.execute("SAVEPOINT job")
                try:
                    job.value, job.ok = job.work(tx), True
                    if writer:
                        cursor.execute("RELEASE job")
                except Exception as exc:
                    if writer:
                        cursor.execute("ROLLBACK TO job")
                        cursor.execute("RELEASE job")
                    job.value, job.ok = _wrap_sqlite(exc), False
            cursor.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            cursor.close()

    def write_sync(self, work: Callable[[Tx], T]) -> T:
        return self._transaction("BEGIN IMMEDIATE", work)

    def read_sync(self, work: Callable[[Tx], T]) -> T:
        return self._transaction("BEGIN", work)

    def _transaction(self, begin: str, work: Callable[[Tx], T]) -> T:
        """One transaction on this thread's own connection (not the queues' threads')."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        cursor = conn.cursor()
        try:
            cursor.execute(begin)
            result = work(Tx(cursor, "sqlite"))
            cursor.execute("COMMIT")
            return result
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            wrapped = _wrap_sqlite(exc)
            if wrapped is exc:
                raise
            raise wrapped from exc
        finally:
            cursor.close()

    def close(self) -> None:
        self._closed = True
        self._writes.put(None)
        for _ in range(READERS):
            self._reads.put(None)
        for thread in self._threads:
            thread.join()
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()


class _Postgres:
    dialect: Dialect = "postgresql"

    def __init__(self, dsn: str) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self._psycopg = psycopg
        self._pool: ConnectionPool[Any] = ConnectionPool(
            dsn, min_size=1, max_size=PG_POOL_SIZE, kwargs={"autocommit": True}, open=True, name="kambda-sql"
        )
        self._threads = ThreadPoolExecutor(PG_POOL_SIZE, thread_name_prefix="sql-pg")

    async def run(self, fn: Callable[[Callable[[Tx], T]], T], work: Callable[[Tx], T], *, writer: bool) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, work)

    def write_sync(self, work: Callable[[Tx], T]) -> T:
        errors = self._psycopg.errors
        for attempt in range(PG_WRITE_ATTEMPTS):
            try:
                return self._transaction("BEGIN ISOLATION LEVEL SERIALIZABLE", work)
            except (errors.SerializationFailure, errors.DeadlockDetected):
                if attempt == PG_WRITE_ATTEMPTS - 1:
                    raise SQLError("postgresql: the transaction kept conflicting with others") from None
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise AssertionError("unreachable")

    def read_sync(self, work: Callable[[Tx], T]) -> T:
        return self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", work)

    def _transaction(self, begin: str, work: Callable[[Tx], T]) -> T:
        psycopg = self._psycopg
        try:
            with self._pool.connection() as conn, conn.cursor() as cursor:
                cursor.execute(begin)
                try:
                    result = work(Tx(cursor, "postgresql"))
                    cursor.execute("COMMIT")
                    return result
                except BaseException:
                    if not conn.closed:
                        conn.execute("ROLLBACK")
                    raise
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            raise
        except psycopg.errors.IntegrityError as exc:
            raise IntegrityError(f"postgresql: {exc}") from exc
        except psycopg.Error as exc:
            raise SQLError(f"postgresql: {exc}") from exc

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        self._pool.close()
