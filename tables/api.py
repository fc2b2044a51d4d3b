"""Amazon DynamoDB's API (JSON 1.0, ``X-Amz-Target: DynamoDB_20120810.<Op>``) through the front door, so
``boto3.client("dynamodb")`` and ``boto3.resource("dynamodb")`` work unchanged.

Each operation is a plain function of one transaction (tables/control.py, tables/items.py, tables/reads.py) run
by the SQL kernel on its own thread: writes in ``Database.write`` (one transaction: read, condition, write,
index rows, stream record), reads in a snapshot. The clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kambda.aws.front import Context, Front
from kambda.sql import Database, Tx
from tables import control, items, partiql, reads
from tables.storage import SCHEMA, Specs

Clock = Callable[[], float]


def open_database(dsn: str, state_dir: str) -> Database:
    """KAMBDA_TABLES_DSN's database, or SQLite at <state dir>/tables/tables.db when it is empty."""
    return Database.open(dsn or None, Path(state_dir) / "tables" / "tables.db")


class TablesApi:
    def __init__(self, db: Database, region: str, account: str, clock: Clock = time.time,
                 nudge: Callable[[], Awaitable[None]] | None = None, collection_limit: int = 10 * 1024 ** 3) -> None:
        self.db = db
        self._collection_limit = collection_limit
        #: Called after a write to a table with a stream: wakes the outbox forwarder (tables/outbox.py).
        self._nudge = nudge
        self.region, self.account = region, account
        self.specs = Specs()
        self._clock = clock

    async def start(self) -> None:
        await self.db.migrate("tables-1", SCHEMA)

    def register(self, front: Front) -> None:
        writes: dict[str, Callable[[Tx, dict[str, Any]], dict[str, Any]]] = {
            "CreateTable": lambda tx, p: control.create(tx, self.specs, p, self.region, self.account,
                                                        self._clock()),
            "UpdateTable": lambda tx, p: control.update(tx, self.specs, p, self.region, self.account,
                                                        self._clock()),
            "DeleteTable": lambda tx, p: control.delete(tx, self.specs, p, self.region, self.account),
            "UpdateTimeToLive": lambda tx, p: control.update_ttl(tx, self.specs, p),
            "TagResource": lambda tx, p: control.tag(tx, self.specs, p),
            "UntagResource": lambda tx, p: control.untag(tx, self.specs, p),
            "PutItem": self._item(items.put),
            "UpdateItem": self._item(items.update),
            "DeleteItem": self._item(items.delete),
            "BatchWriteItem": self._item(items.batch_write),
            "TransactWriteItems": self._item(items.transact_write),
        }
        read_ops: dict[str, Callable[[Tx, dict[str, Any]], dict[str, Any]]] = {
            "DescribeTable": lambda tx, p: control.describe(tx, self.specs, p, self.region, self.account),
            "ListTables": lambda tx, p: control.list_tables(tx, self.specs, p),
            "DescribeTimeToLive": lambda tx, p: control.describe_ttl(tx, self.specs, p),
            "ListTagsOfResource": lambda tx, p: control.list_tags(tx, self.specs, p),
            "GetItem": lambda tx, p: reads.get(tx, self.specs, p),
            "Query": lambda tx, p: reads.query(tx, self.specs, p),
            "Scan": lambda tx, p: reads.scan(tx, self.specs, p),
            "BatchGetItem": lambda tx, p: reads.batch_get(tx, self.specs, p),
            "TransactGetItems": lambda tx, p: reads.transact_get(tx, self.specs, p),
        }
        for name, work in writes.items():
            front.register("dynamodb", name, self._writer(work), self._resources)
        for name, work in read_ops.items():
            front.register("dynamodb", name, self._reader(work), self._resources)
        front.register("dynamodb", "DescribeLimits", self._limits)
        front.register("dynamodb", "DescribeEndpoints", self._endpoints)
        front.register("dynamodb", "ExecuteStatement", self._statement, self._resources)

    def _item(self, op: items.Write) -> Callable[[Tx, dict[str, Any]], dict[str, Any]]:
        return lambda tx, params: op(tx, items.Env(self.specs, self.region, self._clock(), self._collection_limit),
                                     params)

    def _writer(self, work: Callable[[Tx, dict[str, Any]], dict[str, Any]]) -> Any:
        async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
            result = await self.db.write(lambda tx: work(tx, params))
            if self._nudge is not None and self._streamed(params):
                await self._nudge()
            return result

        return handle

    def _reader(self, work: Callable[[Tx, dict[str, Any]], dict[str, Any]]) -> Any:
        async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
            return await self.db.read(lambda tx: work(tx, params))

        return handle

    def _streamed(self, params: dict[str, Any]) -> bool:
        """Whether a write may have made stream records (a table of it has a stream, as last seen)."""
        names = [params["TableName"]] if isinstance(params.get("TableName"), str) else \
            list(params.get("RequestItems") or ()) + [op.get("TableName") for entry in params.get("TransactItems") or []
                                                      for op in entry.values() if isinstance(op, dict)]
        return any(self.specs.streams(name) for name in names if isinstance(name, str))

    def _resources(self, ctx: Context, params: dict[str, Any]) -> list[str]:
        """The tables an operation acts on, as DynamoDB's IAM checks them (index ARNs for a Query on an index)."""
        base = f"arn:aws:dynamodb:{ctx.region}:{ctx.account}:table/"
        names: set[str] = set()
        if isinstance(params.get("TableName"), str):
            names.add(params["TableName"])
        if isinstance(params.get("RequestItems"), dict):
            names |= set(params["RequestItems"])
        for entry in params.get("TransactItems") or []:
            for op in entry.values():
                if isinstance(op, dict) and isinstance(op.get("TableName"), str):
                    names.add(op["TableName"])
        if isinstance(params.get("ResourceArn"), str):
            return [params["ResourceArn"]]
        arns = [base + n for n in sorted(names)]
        if params.get("IndexName") and len(names) == 1:
            arns = [f"{arns[0]}/index/{params['IndexName']}"]
        return arns or ["*"]

    async def _limits(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return dict(control.LIMITS)

    async def _endpoints(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {"Endpoints": [{"Address": ctx.request.host, "CachePeriodInMinutes": 1440}]}

    async def _statement(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        result = await partiql.execute(self, params)
        if self._nudge is not None and any(self.specs.streams(name) for name in self.specs.cached()):
            await self._nudge()
        return result
