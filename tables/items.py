"""The writes of DynamoDB's item API: PutItem, UpdateItem, DeleteItem, BatchWriteItem and TransactWriteItems.

Each is a plain function of an open write transaction (kambda/sql.py runs it on its writer thread): it reads the
item, checks the condition, computes the new item, and writes it with its index rows and stream record
(tables/storage.py), all in one transaction, so a concurrent writer never sees half of it. Parameters arrive as
the front door parsed them and leave through :mod:`tables.codec`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kambda.sql import Tx
from tables import codec, expressions, storage
from tables.codec import Item
from tables.errors import (
    IdempotentParameterMismatch,
    ItemCollectionSizeLimitExceeded,
    TransactionCanceled,
    condition_failed,
    validation,
)
from tables.schema import Table
from tables.storage import Key, Specs

TOKEN_TTL_S = 600.0
MAX_TRANSACT = 100
MAX_BATCH_WRITE = 25


@dataclass
class Env:
    """What a write needs besides its params: the table definitions, the region for records, the time."""

    specs: Specs
    region: str
    now: float
    #: The size an item collection (a partition of a table with local secondary indexes) may reach: 10 GB.
    collection_limit: int = 10 * 1024 ** 3


def wrap(exc: expressions.ValidationException) -> Exception:
    return validation(exc.message)


def _names_values(params: dict[str, Any]) -> tuple[dict[str, str] | None, dict[str, Item] | None]:
    """The placeholder maps, checked as DynamoDB checks them before any expression."""
    names, raw = params.get("ExpressionAttributeNames"), params.get("ExpressionAttributeValues")
    try:
        expressions.check_placeholder_maps(names, {k: codec.wire_value(v) for k, v in raw.items()}
                                           if raw is not None else None)
    except expressions.ValidationException as exc:
        raise wrap(exc) from None
    return names, codec.inbound(raw)


def key_paths(table: Table, *parsed: Any) -> None:
    """Refuse a document path into a key attribute (``pk.x``) in any of a request's parsed expressions."""
    paths = [p for e in parsed if e is not None
             for p in (getattr(e, "targets", None) or getattr(e, "paths", None) or ())]
    try:
        expressions.check_key_paths(paths, table.key_names())
    except expressions.ValidationException as exc:
        raise wrap(exc) from None


def _both(params: dict[str, Any], legacy: str, modern: str) -> None:
    if params.get(legacy) is not None and params.get(modern) is not None:
        raise validation("Can not use both expression and non-expression parameters in the same request: "
                         f"Non-expression parameters: {{{legacy}}} Expression parameters: {{{modern}}}")


def _expected_inbound(expected: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, spec in expected.items():
        spec = dict(spec)
        if "Value" in spec:
            spec["Value"] = codec.inbound_value(spec["Value"])
        if "AttributeValueList" in spec:
            spec["AttributeValueList"] = [codec.inbound_value(v) for v in spec["AttributeValueList"]]
        out[name] = spec
    return out


def parse_condition(params: dict[str, Any]) -> expressions.Condition | None:
    """The ConditionExpression (or legacy Expected) of one write; placeholders are checked by the caller."""
    _both(params, "Expected", "ConditionExpression")
    names, values = _names_values(params)
    try:
        if params.get("ConditionExpression") is not None:
            return expressions.condition(params["ConditionExpression"], names, values)
        if params.get("Expected"):
            return expressions.from_expected(_expected_inbound(params["Expected"]), params.get("ConditionalOperator"))
    except expressions.ValidationException as exc:
        raise wrap(exc) from None
    return None


def _check(cond: expressions.Condition | None, old: Item | None, params: dict[str, Any]) -> None:
    if cond is not None and not cond.evaluate(old):
        wanted = params.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
        raise condition_failed(old if wanted and old is not None else None)


def _returns(params: dict[str, Any], allowed: tuple[str, ...]) -> str:
    value = params.get("ReturnValues") or "NONE"
    if value not in allowed:
        if allowed == ("NONE", "ALL_OLD"):
            raise validation("ReturnValues can only be ALL_OLD or NONE")
        raise validation(f"1 validation error detected: Value '{value}' at 'returnValues' failed to satisfy "
                         "constraint: Member must satisfy enum value set: [ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, "
                         "UPDATED_NEW]")
    return value


def _answer(attributes: Item | None, params: dict[str, Any], table: Table) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if attributes:
        out["Attributes"] = codec.outbound(attributes)
    if params.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
        out["ConsumedCapacity"] = {"TableName": table.name, "CapacityUnits": 1.0}
    return out


# -- the single-item writes ---------------------------------------------------------------------------------------

def put(tx: Tx, env: Env, params: dict[str, Any]) -> dict[str, Any]:
    table = env.specs.get(tx, params["TableName"])
    returns = _returns(params, ("NONE", "ALL_OLD"))
    item = codec.inbound(params["Item"]) or {}
    cond = parse_condition(params)
    _no_placeholders(params, [params.get("ConditionExpression")])
    key_paths(table, cond)
    key = storage.key_of(table, item, "item")
    old = storage.get(tx, table, key)
    _check(cond, old, params)
    _write(tx, env, table, key, old, item)
    return _answer(old if returns == "ALL_OLD" else None, params, table)


def _no_placeholders(params: dict[str, Any], texts: list[str | None]) -> None:
    names, values = _names_values(params)
    try:
        expressions.check_placeholders(texts, names, values)
    except expressions.ValidationException as exc:
        raise wrap(exc) from None


def _write(tx: Tx, env: Env, table: Table, key: Key, old: Item | None, new: Item | None) -> None:
    try:
        storage.write(tx, table, key, old, new, env.region, env.now)
    except expressions.ValidationException as exc:
        raise wrap(exc) from None
    if new is not None and any(i.local for i in table.indexes):
        size = storage.collection_size(tx, table, key)
        if size > env.collection_limit:
            raise ItemCollectionSizeLimitExceeded("Item collection size limit exceeded", ItemCollectionMetrics={
                "ItemCollectionKey": {table.hash: new[table.hash]},
                "SizeEstimateRangeGB": [size / 1024 ** 3, size / 1024 ** 3]})


def delete(tx: Tx, env: Env, params: dict[str, Any]) -> dict[str, Any]:
    table = env.specs.get(tx, params["TableName"])
    returns = _returns(params, ("NONE", "ALL_OLD"))
    cond = parse_condition(params)
    _no_placeholders(params, [params.get("ConditionExpression")])
    key_paths(table, cond)
    key = storage.key_of(table, codec.inbound(params["Key"]) or {})
    old = storage.get(tx, table, key)
    _check(cond, old, params)
    if old is not None:
        _write(tx, env, table, key, old, None)
    return _answer(old if returns == "ALL_OLD" else None, params, table)


def parse_update(params: dict[str, Any]) -> expressions.Update | None:
    _both(params, "AttributeUpdates", "UpdateExpression")
    names, values = _names_values(params)
    try:
        if params.get("UpdateExpression") is not None:
            return expressions.update(params["UpdateExpression"], names, values)
        if params.get("AttributeUpdates"):
            updates = {}
            for name, spec in params["AttributeUpdates"].items():
                spec = dict(spec)
                if "Value" in spec:
                    spec["Value"] = codec.inbound_value(spec["Value"])
                updates[name] = spec
            return expressions.from_attribute_updates(updates)
    except expressions.ValidationException as exc:
        raise wrap(exc) from None
    return None


def update(tx: Tx, env: Env, params: dict[str, Any]) -> dict[str, Any]:
    table = env.specs.get(tx, params["TableName"])
    returns = _returns(params, ("NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"))
    key_item = codec.inbound(params["Key"]) or {}
    key = storage.key_of(table, key_item)
    change = parse_update(params)
    cond = parse_condition(params)
    _no_placeholders(params, [params.get("UpdateExpression"), params.get("ConditionExpression")])
    key_paths(table, change, cond)
    if change is not None:
        for name in table.key_names():
            if name in change.updated_paths:
                raise validation(f"One or more parameter values were invalid: Cannot update attribute {name}. "
                                 "This attribute is part of the key")
    old = storage.get(tx, table, key)
    _check(cond, old, params)
    try:
        new = change.apply(old if old is not None else dict(key_item)) if change is not None else \
            (dict(old) if old is not None else dict(key_item))
        if expressions.item_size(new) > storage.MAX_ITEM:
            raise validation("Item size to update has exceeded the maximum allowed size")
    except expressions.ValidationException as exc:
        raise wrap(exc) from None
    _write(tx, env, table, key, old, new)
    attributes: Item | None = None
    if returns == "ALL_OLD":
        attributes = old
    elif returns == "ALL_NEW":
        attributes = new
    elif returns == "UPDATED_OLD" and old is not None and change is not None:
        attributes = change.updated(old)
    elif returns == "UPDATED_NEW" and change is not None:
        attributes = change.updated(new)
    return _answer(attributes, params, table)


# -- many items ---------------------------------------------------------------------------------------------------

def batch_write(tx: Tx, env: Env, params: dict[str, Any]) -> dict[str, Any]:
    requests = params["RequestItems"]
    total = sum(len(v) for v in requests.values())
    if total > MAX_BATCH_WRITE or total == 0:
        raise validation("1 validation error detected: Value at 'requestItems' failed to satisfy constraint: "
                         "Map value must satisfy constraint: [Member must have length less than or equal to 25, "
                         "Member must have length greater than or equal to 1]")
    plan: list[tuple[Table, Key, Item | None]] = []
    seen: set[tuple[int, Key]] = set()
    for name, entries in requests.items():
        table = env.specs.get(tx, name)
        for entry in entries:
            if "PutRequest" in entry:
                item = codec.inbound(entry["PutRequest"]["Item"]) or {}
                key, new = storage.key_of(table, item, "item"), item
            else:
                key, new = storage.key_of(table, codec.inbound(entry["DeleteRequest"]["Key"]) or {}), None
            if (table.tid, key) in seen:
                raise validation("Provided list of item keys contains duplicates")
            seen.add((table.tid, key))
            plan.append((table, key, new))
    for table, key, new in plan:
        old = storage.get(tx, table, key)
        if old is not None or new is not None:
            _write(tx, env, table, key, old, new)
    return {"UnprocessedItems": {}}


@dataclass
class _Action:
    kind: str
    table: Table
    key: Key
    params: dict[str, Any]
    cond: expressions.Condition | None
    item: Item | None = None
    change: expressions.Update | None = None


def _plan(tx: Tx, env: Env, entry: dict[str, Any]) -> _Action:
    kinds = [k for k in ("ConditionCheck", "Put", "Delete", "Update") if entry.get(k) is not None]
    if len(kinds) != 1:
        raise validation("TransactItems can only contain one of Check, Put, Update or Delete")
    kind = kinds[0]
    op = entry[kind]
    table = env.specs.get(tx, op["TableName"])
    cond = parse_condition(op)
    _no_placeholders(op, [op.get("ConditionExpression"), op.get("UpdateExpression")])
    if kind == "ConditionCheck" and cond is None:
        raise validation("The ConditionCheck operation requires a ConditionExpression")
    if kind == "Put":
        item = codec.inbound(op["Item"]) or {}
        return _Action(kind, table, storage.key_of(table, item, "item"), op, cond, item=item)
    key_item = codec.inbound(op["Key"]) or {}
    action = _Action(kind, table, storage.key_of(table, key_item), op, cond, item=key_item)
    if kind == "Update":
        action.change = parse_update(op)
        if action.change is None:
            raise validation("The Update operation requires an UpdateExpression")
        for name in table.key_names():
            if name in action.change.updated_paths:
                raise validation(f"One or more parameter values were invalid: Cannot update attribute {name}. "
                                 "This attribute is part of the key")
    return action


def digest(params: dict[str, Any]) -> str:
    body = {k: v for k, v in params.items() if k != "ClientRequestToken"}
    return hashlib.sha256(orjson.dumps(body, default=_bytes, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _bytes(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return value.hex()
    raise TypeError(type(value).__name__)


def transact_write(tx: Tx, env: Env, params: dict[str, Any]) -> dict[str, Any]:
    entries = params["TransactItems"]
    if not 1 <= len(entries) <= MAX_TRANSACT:
        raise validation(f"1 validation error detected: Value '{entries}'"[:100] + " at 'transactItems' failed to "
                         "satisfy constraint: Member must have length less than or equal to 100")
    token = params.get("ClientRequestToken")
    if token:
        tx.execute("DELETE FROM ddb_tokens WHERE created < ?", (env.now - TOKEN_TTL_S,))
        rows = tx.execute("SELECT digest, answer FROM ddb_tokens WHERE token = ?", (token,))
        if rows:
            if rows[0][0] != digest(params):
                raise IdempotentParameterMismatch("Cannot reuse the same client token with different parameters")
            answer: dict[str, Any] = orjson.loads(rows[0][1])
            return answer
    actions = [_plan(tx, env, entry) for entry in entries]
    seen: set[tuple[int, Key]] = set()
    for action in actions:
        if (action.table.tid, action.key) in seen:
            raise validation("Transaction request cannot include multiple operations on one item")
        seen.add((action.table.tid, action.key))
    olds = [storage.get(tx, a.table, a.key) for a in actions]
    reasons: list[dict[str, Any]] = []
    failed = False
    for action, old in zip(actions, olds, strict=True):
        if action.cond is not None and not action.cond.evaluate(old):
            failed = True
            reason: dict[str, Any] = {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
            if action.params.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and old is not None:
                reason["Item"] = old
            reasons.append(reason)
        else:
            reasons.append({"Code": "None"})
    if failed:
        codes = ", ".join(r["Code"] for r in reasons)
        raise TransactionCanceled(f"Transaction cancelled, please refer cancellation reasons for specific reasons "
                                  f"[{codes}]", CancellationReasons=reasons)
    for action, old in zip(actions, olds, strict=True):
        if action.kind == "Put":
            _write(tx, env, action.table, action.key, old, action.item)
        elif action.kind == "Delete" and old is not None:
            _write(tx, env, action.table, action.key, old, None)
        elif action.kind == "Update":
            assert action.change is not None
            try:
                new = action.change.apply(old if old is not None else dict(action.item or {}))
            except expressions.ValidationException as exc:
                raise wrap(exc) from None
            _write(tx, env, action.table, action.key, old, new)
    answer = {}
    if token:
        tx.execute("INSERT INTO ddb_tokens (token, digest, created, answer) VALUES (?, ?, ?, ?)",
                   (token, digest(params), env.now, orjson.dumps(answer)))
    return answer


Write = Callable[[Tx, Env, dict[str, Any]], dict[str, Any]]
