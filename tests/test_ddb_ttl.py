"""The TTL sweeper with an injected clock, on SQLite and PostgreSQL: nothing goes before its time, reads see an
expired item until it is swept, a sweep makes the REMOVE record of the service, and one sweeper at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kambda.sql import Database, Tx
from tables import control, items, reads
from tables.storage import SCHEMA, Specs
from tables.ttl import Sweeper
from tests.conftest import unique
from tests.postgres import fresh_database, postgres_server


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = Database.open(None, tmp_path / "t.db")
    else:
        database = Database.open(fresh_database(request.getfixturevalue("pg_dsn"), unique("ttl")), tmp_path)
    await database.migrate("tables-1", SCHEMA)
    yield database
    await database.close()


async def test_sweeps_expired_items_by_the_injected_clock(db: Database) -> None:
    specs = Specs()
    now = [1000.0]

    def w(tx: Tx, op: Any, params: dict[str, Any]) -> Any:
        return op(tx, items.Env(specs, "us-east-1", now[0]), params)

    await db.write(lambda tx: control.create(tx, specs, {
        "TableName": "ttl", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST",
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}}, "us-east-1", "0", now[0]))
    await db.write(lambda tx: control.update_ttl(tx, specs, {
        "TableName": "ttl", "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "exp"}}))
    for key, exp in (("soon", "1500"), ("later", "2000.5"), ("text", None)):
        item: dict[str, Any] = {"pk": {"S": key}}
        item["exp"] = {"N": exp} if exp else {"S": "not a number"}
        await db.write(lambda tx, item=item: w(tx, items.put, {"TableName": "ttl", "Item": item}))
    first, second = Sweeper(db, "us-east-1", clock=lambda: now[0]), Sweeper(db, "us-east-1", clock=lambda: now[0])

    def get(key: str) -> Any:
        return db.read(lambda tx: reads.get(tx, specs, {"TableName": "ttl", "Key": {"pk": {"S": key}}}))

    now[0] = 1499.0
    assert await first.once() == 0
    assert "Item" in await get("soon")
    now[0] = 1500.0
    assert await second.once() == 0  # the first holds the lease
    assert "Item" in await get("soon")  # expired, not yet swept: still read
    assert await first.once() == 1
    assert await get("soon") == {}
    now[0] = 5000.0
    assert await first.once() == 1
    assert "Item" in await get("text")  # a TTL attribute that is not a number never expires
    records = await db.read(lambda tx: tx.execute("SELECT record FROM ddb_stream ORDER BY seq"))
    removes = [orjson.loads(r[0]) for r in records if orjson.loads(r[0])["eventName"] == "REMOVE"]
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in removes] == ["soon", "later"]
    assert all(r["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"} for r in removes)
