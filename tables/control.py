"""DynamoDB's table operations: Create/Describe/Update/Delete/ListTables, TTL, tags, limits and endpoints.

Each is a plain function of a transaction. A table is ACTIVE as soon as CreateTable's transaction commits, so
CreateTable answers CREATING (as AWS does) and the next DescribeTable, the first poll of boto3's
``table_exists`` waiter, answers ACTIVE; DeleteTable answers DELETING and removes the rows in its transaction,
so ``table_not_exists`` sees ResourceNotFoundException at once.
"""

from __future__ import annotations

from typing import Any

from kambda.sql import Tx
from tables import codec, schema, storage
from tables.errors import ResourceInUse, not_found, validation
from tables.schema import Table
from tables.storage import Specs


def _save(tx: Tx, table: Table, insert: bool = False) -> None:
    if insert:
        tx.execute("INSERT INTO ddb_tables (name, tid, version, spec) VALUES (?, ?, ?, ?)",
                   (table.name, table.tid, table.version, table.dumps()))
    else:
        table.version += 1
        tx.execute("UPDATE ddb_tables SET version = ?, spec = ? WHERE name = ?",
                   (table.version, table.dumps(), table.name))


def create(tx: Tx, specs: Specs, params: dict[str, Any], region: str, account: str, now: float) -> dict[str, Any]:
    table = schema.from_create(params, now)
    if specs.find(tx, table.name) is not None:
        raise ResourceInUse(f"Table already exists: {table.name}")
    _save(tx, table, insert=True)
    return {"TableDescription": table.describe(region, account, "CREATING")}


def describe(tx: Tx, specs: Specs, params: dict[str, Any], region: str, account: str) -> dict[str, Any]:
    table = specs.get(tx, params["TableName"])
    count, size = storage.counts(tx, table.tid)
    return {"Table": table.describe(region, account, "ACTIVE", count, size)}


def delete(tx: Tx, specs: Specs, params: dict[str, Any], region: str, account: str) -> dict[str, Any]:
    table = specs.get(tx, params["TableName"])
    if table.deletion_protection:
        raise validation("Resource cannot be deleted as it is currently protected against deletion. Disable "
                         "deletion protection first.")
    count, size = storage.counts(tx, table.tid)
    tx.execute("DELETE FROM ddb_tables WHERE name = ?", (table.name,))
    storage.drop_rows(tx, table.tid)
    return {"TableDescription": table.describe(region, account, "DELETING", count, size)}


def list_tables(tx: Tx, specs: Specs, params: dict[str, Any]) -> dict[str, Any]:
    limit = params.get("Limit") or 100
    if not 1 <= limit <= 100:
        raise validation(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
                         "Member must have value less than or equal to 100")
    names = specs.names(tx, params.get("ExclusiveStartTableName") or "", limit + 1)
    out: dict[str, Any] = {"TableNames": names[:limit]}
    if len(names) > limit:
        out["LastEvaluatedTableName"] = names[limit - 1]
    return out


def _backfill(tx: Tx, table: Table, index: schema.Index) -> None:
    rows = tx.execute("SELECT h, pk, sk, item FROM ddb_items WHERE tid = ?", (table.tid,))
    for h, pk, sk, data in rows:
        found = storage.index_key(table, index, codec.loads(data))
        if found is not None:
            tx.execute("INSERT INTO ddb_index (tid, idx, h, ipk, isk, pk, sk, ih) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (table.tid, index.name, *found, pk, sk, h))


def update(tx: Tx, specs: Specs, params: dict[str, Any], region: str, account: str, now: float) -> dict[str, Any]:
    table = specs.get(tx, params["TableName"])
    table = Table.loads(table.dumps())  # a copy: the cached definition stays as it is until this commits
    for definition in params.get("AttributeDefinitions") or []:
        table.types.setdefault(definition["AttributeName"], definition["AttributeType"])
    if params.get("BillingMode"):
        table.billing = params["BillingMode"]
        table.throughput = None
    if params.get("ProvisionedThroughput"):
        table.throughput = {k: int(v) for k, v in params["ProvisionedThroughput"].items()}
    if "DeletionProtectionEnabled" in params:
        table.deletion_protection = bool(params["DeletionProtectionEnabled"])
    for change in params.get("GlobalSecondaryIndexUpdates") or []:
        if "Create" in change:
            index = schema.global_index(change["Create"], table.billing)
            for name in (index.hash, index.range):
                if name and name not in table.types:
                    raise validation("One or more parameter values were invalid: Some index key attributes are "
                                     f"not defined in AttributeDefinitions. Keys: [{name}]")
            table.indexes.append(index)
            schema.check_indexes(table)
            _backfill(tx, table, index)
        elif "Delete" in change:
            name = change["Delete"]["IndexName"]
            index = table.index(name)
            if index.local:
                raise validation("One or more parameter values were invalid: Local secondary indexes cannot be "
                                 "deleted")
            table.indexes.remove(index)
            tx.execute("DELETE FROM ddb_index WHERE tid = ? AND idx = ?", (table.tid, name))
        elif "Update" in change:
            table.index(change["Update"]["IndexName"]).throughput = change["Update"].get("ProvisionedThroughput")
    if "StreamSpecification" in params:
        spec = params["StreamSpecification"]
        view = schema.stream_view(spec)
        if view is not None and table.stream_view is not None:
            raise validation(f"Table already has an enabled stream: {table.stream_arn(region, account)}")
        table.stream_view = view
        if view is not None:
            table.stream_label = schema.stream_label(now)
    _save(tx, table)
    return {"TableDescription": table.describe(region, account, "UPDATING", *storage.counts(tx, table.tid))}


def update_ttl(tx: Tx, specs: Specs, params: dict[str, Any]) -> dict[str, Any]:
    table = Table.loads(specs.get(tx, params["TableName"]).dumps())
    spec = params["TimeToLiveSpecification"]
    attribute, enabled = spec["AttributeName"], spec["Enabled"]
    if enabled and table.ttl_attribute:
        raise validation("TimeToLive is already enabled")
    if not enabled and not table.ttl_attribute:
        raise validation("TimeToLive is already disabled")
    if not enabled and attribute != table.ttl_attribute:
        raise validation("TimeToLive is active on a different AttributeName: current AttributeName is "
                         f"{table.ttl_attribute}")
    table.ttl_attribute = attribute if enabled else None
    _save(tx, table)
    if enabled:
        for h, pk, sk, data in tx.execute("SELECT h, pk, sk, item FROM ddb_items WHERE tid = ?", (table.tid,)):
            ttl = storage.ttl_of(table, codec.loads(data))
            if ttl is not None:
                tx.execute("UPDATE ddb_items SET ttl = ? WHERE tid = ? AND h = ? AND pk = ? AND sk = ?",
                           (ttl, table.tid, h, pk, sk))
    else:
        tx.execute("UPDATE ddb_items SET ttl = NULL WHERE tid = ? AND ttl IS NOT NULL", (table.tid,))
    return {"TimeToLiveSpecification": {"AttributeName": attribute, "Enabled": enabled}}


def describe_ttl(tx: Tx, specs: Specs, params: dict[str, Any]) -> dict[str, Any]:
    table = specs.get(tx, params["TableName"])
    if table.ttl_attribute:
        return {"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED", "AttributeName": table.ttl_attribute}}
    return {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}


def table_of_arn(arn: str) -> str:
    if ":table/" not in arn:
        raise validation(f"Invalid TableArn: Invalid ResourceArn provided as input {arn}")
    return arn.split(":table/", 1)[1].split("/", 1)[0]


def tag(tx: Tx, specs: Specs, params: dict[str, Any]) -> dict[str, Any]:
    table = specs.find(tx, table_of_arn(params["ResourceArn"]))
    if table is None:
        raise not_found()
    table = Table.loads(table.dumps())
    table.tags.update({t["Key"]: t["Value"] for t in params["Tags"]})
    _save(tx, table)
    return {}


def untag(tx: Tx, specs: Specs, params: dict[str, Any]) -> dict[str, Any]:
    table = specs.find(tx, table_of_arn(params["ResourceArn"]))
    if table is None:
        raise not_found()
    table = Table.loads(table.dumps())
    for key in params["TagKeys"]:
        table.tags.pop(key, None)
    _save(tx, table)
    return {}


def list_tags(tx: Tx, specs: Specs, params: dict[str, Any]) -> dict[str, Any]:
    table = specs.find(tx, table_of_arn(params["ResourceArn"]))
    if table is None:
        raise not_found()
    return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(table.tags.items())]}


LIMITS = {"AccountMaxReadCapacityUnits": 80000, "AccountMaxWriteCapacityUnits": 80000,
          "TableMaxReadCapacityUnits": 40000, "TableMaxWriteCapacityUnits": 40000}
