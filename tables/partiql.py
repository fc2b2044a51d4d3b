"""PartiQL's ExecuteStatement for DynamoDB: SELECT, INSERT, UPDATE and DELETE on one table, parsed and evaluated by
py-partiql-parser (the parser moto uses).

That library evaluates a statement over the table's items held in memory, so a statement here reads the whole
table: right for the small tables and tools PartiQL is used with, not for large ones (a Query or Scan is the
efficient way; the README says so). A modifying statement runs in one write transaction (the items read, the
changes written with their index rows and stream records), a SELECT in a snapshot; Limit and NextToken page the
result. The library's ParserException becomes DynamoDB's ValidationException.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from py_partiql_parser import DynamoDBStatementParser
from py_partiql_parser.exceptions import DocumentNotFoundException, ParserException

from kambda.sql import Tx
from tables import codec, items, storage
from tables.errors import DuplicateItem, condition_failed, not_found, validation

if TYPE_CHECKING:
    from tables.api import TablesApi


def _table_name(statement: str) -> str:
    try:
        names = DynamoDBStatementParser.get_query_metadata(statement).get_table_names()
    except (ParserException, AssertionError, IndexError, ValueError) as exc:
        raise validation(f"Statement wasn't well formed, can't be processed: {exc}") from None
    if len(names) != 1:
        raise validation("Statement wasn't well formed, can't be processed: one table per statement")
    return names[0].strip('"')


def _run(tx: Tx, api: TablesApi, params: dict[str, Any], write: bool) -> dict[str, Any]:
    statement = params["Statement"].strip()
    name = _table_name(statement)
    table = api.specs.find(tx, name)
    if table is None:
        raise not_found()
    rows = [item for _, _, item in storage.scan(tx, table, None, 0, codec.HASH_SPACE, None)]
    parameters = [codec.inbound_value(p) for p in params.get("Parameters") or []]
    try:
        found, changes = DynamoDBStatementParser({name: rows}).parse(statement.replace(f'"{name}"', name),
                                                                     parameters or None)
    except DocumentNotFoundException:
        raise not_found() from None
    except (ParserException, AssertionError, IndexError, ValueError, KeyError) as exc:
        raise validation(f"Statement wasn't well formed, can't be processed: {exc}") from None
    if not write:
        start = int(params["NextToken"]) if params.get("NextToken") else 0
        limit = params.get("Limit") or len(found)
        page = found[start:start + limit]
        out: dict[str, Any] = {"Items": [codec.outbound(codec.inbound(i)) for i in page]}
        if start + limit < len(found):
            out["NextToken"] = str(start + limit)
        return out
    env = items.Env(api.specs, api.region, api._clock())
    changed = changes.get(name, [])
    if statement[:6].lower() in ("update", "delete") and not changed:
        raise condition_failed()
    for old, new in changed:
        new = codec.inbound(new)
        key = storage.key_of(table, new if new is not None else old or {}, "item")
        current = storage.get(tx, table, key)
        if old is None and current is not None:
            raise DuplicateItem("Duplicate primary key exists in table")
        storage.write(tx, table, key, current, new, env.region, env.now)
    return {"Items": []}


async def execute(api: TablesApi, params: dict[str, Any]) -> dict[str, Any]:
    statement = params["Statement"].strip()
    kind = statement.split(None, 1)[0].lower() if statement else ""
    if kind not in ("select", "insert", "update", "delete"):
        raise validation("Statement wasn't well formed, can't be processed: Unexpected keyword")
    if kind == "select":
        return await api.db.read(lambda tx: _run(tx, api, params, write=False))
    return await api.db.write(lambda tx: _run(tx, api, params, write=True))
