"""A table's definition: what CreateTable declares (keys, indexes, stream, billing), checked as DynamoDB checks
it, kept as JSON in the database, and rendered back as DescribeTable's TableDescription."""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from tables.errors import LimitExceeded, validation

NAME_RE = re.compile(r"[a-zA-Z0-9_.-]{3,255}")
VIEW_TYPES = ("NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY")
PROJECTIONS = ("ALL", "KEYS_ONLY", "INCLUDE")
MAX_GSIS = 20
MAX_LSIS = 5


@dataclass
class Index:
    name: str
    hash: str
    range: str | None
    projection: str = "ALL"
    non_key: list[str] = field(default_factory=list)
    local: bool = False
    throughput: dict[str, int] | None = None

    def key_schema(self) -> list[dict[str, str]]:
        out = [{"AttributeName": self.hash, "KeyType": "HASH"}]
        if self.range:
            out.append({"AttributeName": self.range, "KeyType": "RANGE"})
        return out

    def schema_map(self) -> dict[str, str]:
        return {e["AttributeName"]: e["KeyType"] for e in self.key_schema()}


@dataclass
class Table:
    name: str
    tid: int
    hash: str
    range: str | None
    types: dict[str, str]
    created: float
    billing: str = "PROVISIONED"
    throughput: dict[str, int] | None = None
    indexes: list[Index] = field(default_factory=list)
    stream_view: str | None = None
    stream_label: str | None = None
    ttl_attribute: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    deletion_protection: bool = False
    table_id: str = ""
    version: int = 1

    # -- keys ---------------------------------------------------------------------------------------------------

    def key_names(self) -> list[str]:
        return [self.hash] + ([self.range] if self.range else [])

    def schema_map(self) -> dict[str, str]:
        out = {self.hash: "HASH"}
        if self.range:
            out[self.range] = "RANGE"
        return out

    def key_schema(self) -> list[dict[str, str]]:
        return [{"AttributeName": n, "KeyType": t} for n, t in self.schema_map().items()]

    def index(self, name: str) -> Index:
        for index in self.indexes:
            if index.name == name:
                return index
        raise validation(f"The table does not have the specified index: {name}")

    def all_key_names(self) -> set[str]:
        names = set(self.key_names())
        for index in self.indexes:
            names.add(index.hash)
            if index.range:
                names.add(index.range)
        return names

    # -- storage ------------------------------------------------------------------------------------------------

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def loads(cls, data: bytes | str) -> Table:
        raw = orjson.loads(data)
        raw["indexes"] = [Index(**i) for i in raw.get("indexes", [])]
        return cls(**raw)

    # -- ARNs and the description -------------------------------------------------------------------------------

    def arn(self, region: str, account: str) -> str:
        return f"arn:aws:dynamodb:{region}:{account}:table/{self.name}"

    def stream_arn(self, region: str, account: str) -> str | None:
        if not self.stream_label:
            return None
        return f"{self.arn(region, account)}/stream/{self.stream_label}"

    def describe(self, region: str, account: str, status: str = "ACTIVE", item_count: int = 0,
                 size: int = 0) -> dict[str, Any]:
        created = datetime.fromtimestamp(self.created, UTC)
        out: dict[str, Any] = {
            "TableName": self.name, "TableStatus": status, "CreationDateTime": created,
            "KeySchema": self.key_schema(),
            "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in self.types.items()],
            "ProvisionedThroughput": self._throughput(self.throughput),
            "TableSizeBytes": size, "ItemCount": item_count, "TableArn": self.arn(region, account),
            "TableId": self.table_id, "DeletionProtectionEnabled": self.deletion_protection,
            "BillingModeSummary": {"BillingMode": self.billing, "LastUpdateToPayPerRequestDateTime": created},
        }
        local = [self._index(i, region, account) for i in self.indexes if i.local]
        global_ = [self._index(i, region, account) for i in self.indexes if not i.local]
        if local:
            out["LocalSecondaryIndexes"] = local
        if global_:
            out["GlobalSecondaryIndexes"] = global_
        if self.stream_view:
            out["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": self.stream_view}
        if self.stream_label:
            out["LatestStreamLabel"] = self.stream_label
            out["LatestStreamArn"] = self.stream_arn(region, account)
        return out

    def _throughput(self, throughput: dict[str, int] | None) -> dict[str, Any]:
        throughput = throughput or {}
        return {"NumberOfDecreasesToday": 0, "ReadCapacityUnits": throughput.get("ReadCapacityUnits", 0),
                "WriteCapacityUnits": throughput.get("WriteCapacityUnits", 0)}

    def _index(self, index: Index, region: str, account: str) -> dict[str, Any]:
        projection: dict[str, Any] = {"ProjectionType": index.projection}
        if index.projection == "INCLUDE":
            projection["NonKeyAttributes"] = index.non_key
        out: dict[str, Any] = {"IndexName": index.name, "KeySchema": index.key_schema(), "Projection": projection,
                               "IndexSizeBytes": 0, "ItemCount": 0,
                               "IndexArn": f"{self.arn(region, account)}/index/{index.name}"}
        if not index.local:
            out["IndexStatus"] = "ACTIVE"
            out["ProvisionedThroughput"] = self._throughput(index.throughput)
        return out


def _key_schema(schema: Any, where: str) -> tuple[str, str | None]:
    if not isinstance(schema, list) or not 1 <= len(schema) <= 2:
        raise validation(f"1 validation error detected: Value '{schema}' at '{where}' failed to satisfy constraint: "
                         "Member must have length less than or equal to 2")
    kinds = [e.get("KeyType") for e in schema]
    if kinds[0] != "HASH" or (len(kinds) == 2 and kinds[1] != "RANGE"):
        raise validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type"
                         if kinds[0] != "HASH" else "Invalid KeySchema: The second KeySchemaElement is not a "
                         "RANGE key type")
    names = [e["AttributeName"] for e in schema]
    if len(names) == 2 and names[0] == names[1]:
        raise validation("Invalid KeySchema: Some index key attribute have no definition")
    return names[0], names[1] if len(names) == 2 else None


def _projection(raw: dict[str, Any] | None) -> tuple[str, list[str]]:
    raw = raw or {}
    kind = raw.get("ProjectionType", "ALL")
    non_key = list(raw.get("NonKeyAttributes") or [])
    if kind not in PROJECTIONS:
        raise validation(f"1 validation error detected: Value '{kind}' at 'projection.projectionType' failed to "
                         "satisfy constraint: Member must satisfy enum value set: [ALL, INCLUDE, KEYS_ONLY]")
    if kind != "INCLUDE" and non_key:
        raise validation("One or more parameter values were invalid: ProjectionType is "
                         f"{kind}, but NonKeyAttributes is specified")
    return kind, non_key


def _check_billing(billing: str, throughput: dict[str, int] | None) -> dict[str, int] | None:
    if billing == "PAY_PER_REQUEST":
        if throughput:
            raise validation("One or more parameter values were invalid: Neither ReadCapacityUnits nor "
                             "WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST")
        return None
    if billing != "PROVISIONED":
        raise validation(f"1 validation error detected: Value '{billing}' at 'billingMode' failed to satisfy "
                         "constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]")
    if not throughput:
        raise validation("One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits "
                         "must both be specified when BillingMode is PROVISIONED")
    return {"ReadCapacityUnits": int(throughput["ReadCapacityUnits"]),
            "WriteCapacityUnits": int(throughput["WriteCapacityUnits"])}


def stream_view(spec: dict[str, Any] | None) -> str | None:
    if not spec or not spec.get("StreamEnabled"):
        return None
    view = spec.get("StreamViewType")
    if view not in VIEW_TYPES:
        raise validation("One or more parameter values were invalid: StreamViewType must be specified "
                         "when StreamEnabled is true" if view is None else
                         f"1 validation error detected: Value '{view}' at 'streamSpecification.streamViewType' "
                         "failed to satisfy constraint: Member must satisfy enum value set: "
                         "[NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES, KEYS_ONLY]")
    return view


def stream_label(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def from_create(params: dict[str, Any], now: float) -> Table:
    """The table CreateTable's params declare, or ValidationException with DynamoDB's message."""
    name = params["TableName"]
    if not NAME_RE.fullmatch(name):
        raise validation(f"1 validation error detected: Value '{name}' at 'tableName' failed to satisfy "
                         "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+")
    hash_key, range_key = _key_schema(params["KeySchema"], "keySchema")
    types = {d["AttributeName"]: d["AttributeType"] for d in params["AttributeDefinitions"]}
    for kind in types.values():
        if kind not in ("S", "N", "B"):
            raise validation(f"1 validation error detected: Value '{kind}' at 'attributeDefinitions.member."
                             "attributeType' failed to satisfy constraint: Member must satisfy enum value set: "
                             "[B, N, S]")
    billing = params.get("BillingMode") or "PROVISIONED"
    table = Table(name=name, tid=random.getrandbits(62), hash=hash_key, range=range_key, types=types,
                  created=now, billing=billing, throughput=_check_billing(billing, params.get("ProvisionedThroughput")),
                  table_id=str(uuid.uuid4()), deletion_protection=bool(params.get("DeletionProtectionEnabled")))
    for raw in params.get("LocalSecondaryIndexes") or []:
        ih, ir = _key_schema(raw["KeySchema"], "localSecondaryIndexes.member.keySchema")
        if ih != hash_key:
            raise validation("One or more parameter values were invalid: Index KeySchema does not have the same "
                             "leading hash key as table KeySchema for index: " + raw["IndexName"] +
                             ". index hash key: " + ih + ", table hash key: " + hash_key)
        if ir is None or range_key is None:
            raise validation("One or more parameter values were invalid: Table KeySchema does not have a range "
                             "key, which is required when specifying a LocalSecondaryIndex")
        kind, non_key = _projection(raw.get("Projection"))
        table.indexes.append(Index(raw["IndexName"], ih, ir, kind, non_key, local=True))
    for raw in params.get("GlobalSecondaryIndexes") or []:
        table.indexes.append(global_index(raw, billing))
    check_indexes(table)
    used = set(table.key_names())
    for index in table.indexes:
        used |= {index.hash} | ({index.range} if index.range else set())
    if used != set(types):
        missing = used - set(types)
        if missing:
            raise validation("One or more parameter values were invalid: Some index key attributes are not defined "
                             "in AttributeDefinitions. Keys: [" + ", ".join(sorted(missing)) +
                             "], AttributeDefinitions: [" + ", ".join(types) + "]")
        raise validation("One or more parameter values were invalid: Number of attributes in KeySchema does not "
                         "exactly match number of attributes defined in AttributeDefinitions")
    table.stream_view = stream_view(params.get("StreamSpecification"))
    if table.stream_view:
        table.stream_label = stream_label(now)
    table.tags = {t["Key"]: t["Value"] for t in params.get("Tags") or []}
    return table


def global_index(raw: dict[str, Any], billing: str) -> Index:
    ih, ir = _key_schema(raw["KeySchema"], "globalSecondaryIndexes.member.keySchema")
    kind, non_key = _projection(raw.get("Projection"))
    throughput = raw.get("ProvisionedThroughput")
    if billing == "PROVISIONED" and not throughput:
        raise validation("One or more parameter values were invalid: ProvisionedThroughput must be specified for "
                         f"index: {raw['IndexName']}")
    return Index(raw["IndexName"], ih, ir, kind, non_key, local=False, throughput=throughput)


def check_indexes(table: Table) -> None:
    names = [i.name for i in table.indexes]
    if len(set(names)) != len(names):
        raise validation("One or more parameter values were invalid: Duplicate index name: " +
                         next(n for n in names if names.count(n) > 1))
    if sum(1 for i in table.indexes if i.local) > MAX_LSIS:
        raise validation("One or more parameter values were invalid: Table has more than 5 local secondary "
                         "indexes")
    if sum(1 for i in table.indexes if not i.local) > MAX_GSIS:
        raise LimitExceeded("Subscriber limit exceeded: The number of global secondary indexes exceeds 20")
