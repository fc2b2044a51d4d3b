"""The reads of DynamoDB's item API: GetItem, Query, Scan, BatchGetItem and TransactGetItems.

Each is a plain function of a read transaction (a snapshot). A Query is one range of the clustered key (or of an
index's rows), walked in order a chunk at a time until Limit items were evaluated or 1 MB was read; the filter
applies after that, as DynamoDB's does, so ``Count`` may be below ``ScannedCount``. The resume point is the last
evaluated item's key, handed back as LastEvaluatedKey in DynamoDB's shape (table keys, plus the index keys).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kambda.sql import Tx
from tables import codec, expressions, storage
from tables.codec import Item
from tables.errors import validation
from tables.items import _names_values, key_paths, wrap
from tables.schema import Index, Table
from tables.storage import Specs

MAX_BATCH_GET = 100


def _projection(params: dict[str, Any]) -> expressions.Projection | None:
    if params.get("ProjectionExpression") is not None and params.get("AttributesToGet") is not None:
        raise validation("Can not use both expression and non-expression parameters in the same request: "
                         "Non-expression parameters: {AttributesToGet} Expression parameters: "
                         "{ProjectionExpression}")
    try:
        if params.get("ProjectionExpression") is not None:
            return expressions.projection(params["ProjectionExpression"], params.get("ExpressionAttributeNames"))
        if params.get("AttributesToGet"):
            return expressions.from_attributes_to_get(params["AttributesToGet"])
    except expressions.ValidationException as exc:
        raise wrap(exc) from None
    return None


def _placeholders(params: dict[str, Any], texts: list[str | None]) -> None:
    names, values = _names_values(params)
    try:
        expressions.check_placeholders(texts, names, values)
    except expressions.ValidationException as exc:
        raise wrap(exc) from None


def _capacity(params: dict[str, Any], table: Table, out: dict[str, Any]) -> dict[str, Any]:
    if params.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
        out["ConsumedCapacity"] = {"TableName": table.name, "CapacityUnits": 0.5}
    return out


def get(tx: Tx, specs: Specs, params: dict[str, Any]) -> dict[str, Any]:
    table = specs.get(tx, params["TableName"])
    projection = _projection(params)
    _placeholders(params, [params.get("ProjectionExpression")])
    key_paths(table, projection)
    item = storage.get(tx, table, storage.key_of(table, codec.inbound(params["Key"]) or {}))
    out: dict[str, Any] = {}
    if item is not None:
        out["Item"] = codec.outbound(projection.apply(item) if projection is not None else item)
    return _capacity(params, table, out)


def _successor(prefix: bytes) -> bytes | None:
    """The least byte string above every string that starts with ``prefix`` (None: there is none)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def _range(table: Table, kc: expressions.KeyCondition, forward: bool) -> storage.Range:
    pk = codec.key_bytes(kc.partition[1])
    rng = storage.Range(h=codec.partition_hash(pk), pk=pk, forward=forward)
    if kc.sort is None:
        return rng
    _, op, values = kc.sort
    encoded = [codec.key_bytes(v) for v in values]
    if op == "=":
        rng.low = rng.high = encoded[0]
    elif op in ("<", "<="):
        rng.high, rng.high_open = encoded[0], op == "<"
    elif op in (">", ">="):
        rng.low, rng.low_open = encoded[0], op == ">"
    elif op == "BETWEEN":
        rng.low, rng.high = encoded
        if rng.low > rng.high:
            raise validation("Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be "
                             "greater than or equal to lower bound; lower bound operand: AttributeValue: "
                             f"{values[0]}, upper bound operand: AttributeValue: {values[1]}")
    elif op == "begins_with":
        rng.low = encoded[0]
        successor = _successor(encoded[0])
        if successor is not None:
            rng.high, rng.high_open = successor, True
    return rng


def _start(table: Table, index: Index | None, start: Item | None, scan: bool) -> tuple[Any, ...] | None:
    """The resume point of an ExclusiveStartKey in the order the rows are walked."""
    if start is None:
        return None
    key = storage.key_of(table, {k: v for k, v in start.items() if k in table.key_names()}, "key")
    if index is None:
        return (key.h, key.pk, key.sk) if scan else (key.sk,)
    found = storage.index_key(table, index, start)
    if found is None:
        raise validation("The provided starting key is invalid: The provided key element does not match the schema")
    h, ipk, isk = found
    return (h, ipk, isk, key.pk, key.sk) if scan else (isk, key.pk, key.sk)


def _last_key(table: Table, index: Index | None, item: Item) -> Item:
    names = set(table.key_names())
    if index is not None:
        names |= {index.hash} | ({index.range} if index.range else set())
    return {k: v for k, v in item.items() if k in names}


def _select(params: dict[str, Any], table: Table, index: Index | None,
            projection: expressions.Projection | None) -> str:
    select = params.get("Select")
    if select is None:
        return "SPECIFIC_ATTRIBUTES" if projection is not None else \
            "ALL_PROJECTED_ATTRIBUTES" if index is not None else "ALL_ATTRIBUTES"
    if select == "SPECIFIC_ATTRIBUTES" and projection is None:
        raise validation("1 validation error detected: Value 'SPECIFIC_ATTRIBUTES' at 'select' requires "
                         "ProjectionExpression or AttributesToGet")
    if select != "SPECIFIC_ATTRIBUTES" and projection is not None:
        raise validation("Cannot specify the AttributesToGet when choosing to get only the Count"
                         if select == "COUNT" else
                         f"Cannot use ProjectionExpression or AttributesToGet with Select type {select}")
    if select == "ALL_PROJECTED_ATTRIBUTES" and index is None:
        raise validation("ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
    if select == "ALL_ATTRIBUTES" and index is not None and not index.local and index.projection != "ALL":
        raise validation(f"One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported "
                         f"for global secondary index {index.name} because its projection type is not ALL")
    return str(select)


def _page(params: dict[str, Any], table: Table, index: Index | None,
          rows: Iterator[tuple[tuple[Any, ...], int, Item]], filter_: expressions.Condition | None,
          projection: expressions.Projection | None, select: str) -> dict[str, Any]:
    limit = params.get("Limit")
    if limit is not None and limit < 1:
        raise validation(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
                         "Member must have value greater than or equal to 1")
    items: list[Item] = []
    scanned = count = read = 0
    last: Item | None = None
    for _, size, item in rows:
        scanned += 1
        read += size
        if index is not None and index.projection != "ALL" and not index.local:
            item = storage.project(table, index, item)
        if filter_ is None or filter_.evaluate(item):
            count += 1
            if select != "COUNT":
                if projection is not None:
                    items.append(projection.apply(item))
                elif index is not None and select == "ALL_PROJECTED_ATTRIBUTES":
                    items.append(storage.project(table, index, item))
                else:
                    items.append(item)
        if (limit is not None and scanned >= limit) or read >= storage.PAGE_BYTES:
            last = item
            break
    out: dict[str, Any] = {"Count": count, "ScannedCount": scanned}
    if select != "COUNT":
        out["Items"] = [codec.outbound(i) for i in items]
    if last is not None:
        out["LastEvaluatedKey"] = codec.outbound(_last_key(table, index, last))
    return _capacity(params, table, out)


def _filter(params: dict[str, Any], legacy: str) -> expressions.Condition | None:
    if params.get("FilterExpression") is not None and params.get(legacy) is not None:
        raise validation("Can not use both expression and non-expression parameters in the same request: "
                         f"Non-expression parameters: {{{legacy}}} Expression parameters: {{FilterExpression}}")
    names, values = _names_values(params)
    try:
        if params.get("FilterExpression") is not None:
            return expressions.filter_(params["FilterExpression"], names, values)
        if params.get(legacy):
            conds = {name: {**spec, "AttributeValueList": [codec.inbound_value(v) for v in
                                                           spec.get("AttributeValueList") or []]}
                     for name, spec in params[legacy].items()}
            return expressions.from_query_filter(conds, params.get("ConditionalOperator"))
    except expressions.ValidationException as exc:
        raise wrap(exc) from None
    return None


def query(tx: Tx, specs: Specs, params: dict[str, Any]) -> dict[str, Any]:
    table = specs.get(tx, params["TableName"])
    index = table.index(params["IndexName"]) if params.get("IndexName") else None
    if index is not None and not index.local and params.get("ConsistentRead"):
        raise validation("Consistent reads are not supported on global secondary indexes")
    schema = index.schema_map() if index is not None else table.schema_map()
    names, values = _names_values(params)
    if params.get("KeyConditionExpression") is not None and params.get("KeyConditions") is not None:
        raise validation("Can not use both expression and non-expression parameters in the same request: "
                         "Non-expression parameters: {KeyConditions} Expression parameters: "
                         "{KeyConditionExpression}")
    try:
        if params.get("KeyConditionExpression") is not None:
            kc = expressions.key_condition(params["KeyConditionExpression"], names, values, schema,
                                           {name: table.types[name] for name in schema})
        elif params.get("KeyConditions"):
            conds = {name: {**spec, "AttributeValueList": [codec.inbound_value(v) for v in
                                                           spec.get("AttributeValueList") or []]}
                     for name, spec in params["KeyConditions"].items()}
            kc = expressions.from_key_conditions(conds, schema, {name: table.types[name] for name in schema})
        else:
            raise validation("Either the KeyConditions or KeyConditionExpression parameter must be specified in the "
                             "request.")
    except expressions.ValidationException as exc:
        raise wrap(exc) from None
    filter_ = _filter(params, "QueryFilter")
    projection = _projection(params)
    _placeholders(params, [params.get("KeyConditionExpression"), params.get("FilterExpression"),
                           params.get("ProjectionExpression")])
    if filter_ is not None:
        keys = set(schema)
        for name in sorted(filter_.attributes):
            if name in keys:
                raise validation("Filter Expression can only contain non-primary key attributes: Primary key "
                                 f"attribute: {name}")
    for name, value in (kc.partition, *([(kc.sort[0], kc.sort[2][0])] if kc.sort else [])):
        if codec.type_of(value) != table.types[name]:
            raise validation("One or more parameter values were invalid: Condition parameter type does not match "
                             "schema type")
    key_paths(table, filter_, projection)
    select = _select(params, table, index, projection)
    rng = _range(table, kc, params.get("ScanIndexForward", True) is not False)
    start = codec.inbound(params.get("ExclusiveStartKey"))
    rng.after = _start(table, index, start, scan=False)
    return _page(params, table, index, storage.query(tx, table, index, rng), filter_, projection, select)


def scan(tx: Tx, specs: Specs, params: dict[str, Any]) -> dict[str, Any]:
    table = specs.get(tx, params["TableName"])
    index = table.index(params["IndexName"]) if params.get("IndexName") else None
    segment, total = params.get("Segment"), params.get("TotalSegments")
    if segment is not None and total is None:
        raise validation("The TotalSegments parameter is required but was not present in the request when "
                         "Segment parameter is present")
    if total is not None and segment is None:
        raise validation("The Segment parameter is required but was not present in the request when parameter "
                         "TotalSegments is present")
    if total is not None and segment is not None:
        if not 1 <= total <= 1_000_000:
            raise validation(f"1 validation error detected: Value '{total}' at 'totalSegments' failed to satisfy "
                             "constraint: Member must have value less than or equal to 1000000")
        if segment >= total:
            raise validation(f"The Segment parameter is zero-based and must be less than parameter TotalSegments: "
                             f"Segment: {segment} is not less than TotalSegments: {total}")
        low, high = codec.segment_range(segment, total)
    else:
        low, high = 0, codec.HASH_SPACE
    filter_ = _filter(params, "ScanFilter")
    projection = _projection(params)
    _placeholders(params, [params.get("FilterExpression"), params.get("ProjectionExpression")])
    key_paths(table, filter_, projection)
    select = _select(params, table, index, projection)
    start = _start(table, index, codec.inbound(params.get("ExclusiveStartKey")), scan=True)
    return _page(params, table, index, storage.scan(tx, table, index, low, high, start), filter_, projection,
                 select)


def batch_get(tx: Tx, specs: Specs, params: dict[str, Any]) -> dict[str, Any]:
    requests = params["RequestItems"]
    if sum(len(r.get("Keys") or []) for r in requests.values()) > MAX_BATCH_GET:
        raise validation("Too many items requested for the BatchGetItem call")
    responses: dict[str, list[Item]] = {}
    for name, request in requests.items():
        table = specs.get(tx, name)
        projection = _projection(request)
        _placeholders(request, [request.get("ProjectionExpression")])
        keys = [storage.key_of(table, codec.inbound(k) or {}) for k in request["Keys"]]
        if len(set(keys)) != len(keys):
            raise validation("Provided list of item keys contains duplicates")
        found = responses.setdefault(name, [])
        for key in keys:
            item = storage.get(tx, table, key)
            if item is not None:
                found.append(codec.outbound(projection.apply(item) if projection is not None else item) or {})
    return {"Responses": responses, "UnprocessedKeys": {}}


def transact_get(tx: Tx, specs: Specs, params: dict[str, Any]) -> dict[str, Any]:
    entries = params["TransactItems"]
    if not 1 <= len(entries) <= 100:
        raise validation("1 validation error detected: Value at 'transactItems' failed to satisfy constraint: "
                         "Member must have length less than or equal to 100")
    out = []
    for entry in entries:
        get_ = entry["Get"]
        table = specs.get(tx, get_["TableName"])
        projection = _projection(get_)
        _placeholders(get_, [get_.get("ProjectionExpression")])
        item = storage.get(tx, table, storage.key_of(table, codec.inbound(get_["Key"]) or {}))
        out.append({"Item": codec.outbound(projection.apply(item) if projection is not None else item)}
                   if item is not None else {})
    return {"Responses": out}
