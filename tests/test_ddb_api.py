"""DynamoDB's API through boto3's client and resource, on SQLite and on PostgreSQL (one platform per engine)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from tests.conftest import Platform, unique
from tests.ddb import ENGINES, clients, make_table, start_platform

__all__ = ["make_table"]


@pytest.fixture(scope="module", params=ENGINES)
def ddb_platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with contextlib.ExitStack() as stack:
        # A small item collection limit (DynamoDB's is 10 GB), so that a test reaches it.
        yield start_platform(request.param, tmp_path_factory.mktemp("ddb"), stack,
                             {"KAMBDA_TABLES_COLLECTION_LIMIT": "20000"})


@pytest.fixture(scope="module")
def ddb(ddb_platform: Platform) -> Any:
    return clients(ddb_platform)[0]


@pytest.fixture(scope="module")
def resource(ddb_platform: Platform) -> Any:
    return clients(ddb_platform)[1]


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return exc.value.response["Error"]["Code"], exc.value.response["Error"]["Message"]


# -- tables -------------------------------------------------------------------------------------------------------

def test_table_lifecycle_with_waiters(ddb: Any) -> None:
    name = unique("life")
    created = ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                               AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                               ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
                               Tags=[{"Key": "team", "Value": "a"}])["TableDescription"]
    assert created["TableStatus"] == "CREATING"
    assert created["TableArn"] == f"arn:aws:dynamodb:us-east-1:000000000000:table/{name}"
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    table = ddb.describe_table(TableName=name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert name in ddb.list_tables()["TableNames"]
    with pytest.raises(ClientError) as exc:
        ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
    assert error(exc) == ("ResourceInUseException", f"Table already exists: {name}")
    arn = table["TableArn"]
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "dev"}])
    ddb.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "dev"}]
    updated = ddb.update_table(TableName=name, BillingMode="PAY_PER_REQUEST")["TableDescription"]
    assert updated["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert ddb.delete_table(TableName=name)["TableDescription"]["TableStatus"] == "DELETING"
    ddb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    with pytest.raises(ClientError) as exc:
        ddb.describe_table(TableName=name)
    assert error(exc) == ("ResourceNotFoundException", f"Requested resource not found: Table: {name} not found")


def test_create_table_validation(ddb: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ddb.create_table(TableName=unique("v"), KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                                               {"AttributeName": "x", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
    assert error(exc) == ("ValidationException", "One or more parameter values were invalid: Number of attributes "
                          "in KeySchema does not exactly match number of attributes defined in AttributeDefinitions")
    with pytest.raises(ClientError) as exc:
        ddb.create_table(TableName=unique("v"), KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    assert "ReadCapacityUnits and WriteCapacityUnits must both be specified" in error(exc)[1]


def test_limits_endpoints_and_list_paging(ddb: Any, make_table: Any) -> None:
    assert ddb.describe_limits()["TableMaxReadCapacityUnits"] == 40000
    assert ddb.describe_endpoints()["Endpoints"][0]["CachePeriodInMinutes"] == 1440
    names = sorted(make_table(range_key=None) for _ in range(3))
    seen: list[str] = []
    start: dict[str, Any] = {}
    while True:
        page = ddb.list_tables(Limit=2, **start)
        seen += page["TableNames"]
        if "LastEvaluatedTableName" not in page:
            break
        start = {"ExclusiveStartTableName": page["LastEvaluatedTableName"]}
    assert set(names) <= set(seen) and seen == sorted(seen)


def test_ttl_settings(ddb: Any, make_table: Any) -> None:
    name = make_table()
    assert ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"] == {"TimeToLiveStatus": "DISABLED"}
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    assert ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "exp"}
    with pytest.raises(ClientError) as exc:
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    assert error(exc) == ("ValidationException", "TimeToLive is already enabled")


# -- items --------------------------------------------------------------------------------------------------------

def test_put_get_delete_with_every_type(ddb: Any, make_table: Any) -> None:
    name = make_table()
    item = {"pk": {"S": "a"}, "sk": {"S": "1"}, "n": {"N": "1.50"}, "b": {"B": b"\x00\xff"},
            "ss": {"SS": ["x", "y"]}, "ns": {"NS": ["1", "2"]}, "bs": {"BS": [b"\x01"]},
            "m": {"M": {"deep": {"L": [{"S": "v"}, {"NULL": True}, {"BOOL": False}]}}}}
    assert "Attributes" not in ddb.put_item(TableName=name, Item=item)
    got = ddb.get_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"S": "1"}}, ConsistentRead=True)["Item"]
    assert got["n"] == {"N": "1.5"} and got["b"] == {"B": b"\x00\xff"} and got["bs"] == {"BS": [b"\x01"]}
    assert got["m"] == item["m"] and sorted(got["ss"]["SS"]) == ["x", "y"]
    projected = ddb.get_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"S": "1"}},
                             ProjectionExpression="#n, m.deep[0]", ExpressionAttributeNames={"#n": "n"})["Item"]
    assert projected == {"n": {"N": "1.5"}, "m": {"M": {"deep": {"L": [{"S": "v"}]}}}}
    old = ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"S": "1"}}, ReturnValues="ALL_OLD")
    assert old["Attributes"]["n"] == {"N": "1.5"}
    gone = ddb.delete_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"S": "1"}}, ReturnValues="ALL_OLD")
    assert gone["Attributes"] == {"pk": {"S": "a"}, "sk": {"S": "1"}}
    assert "Item" not in ddb.get_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"S": "1"}})


def test_key_errors(ddb: Any, make_table: Any) -> None:
    name = make_table()
    cases = [
        ({"pk": {"S": "a"}}, "One or more parameter values were invalid: Missing the key sk in the item"),
        ({"pk": {"N": "1"}, "sk": {"S": "x"}},
         "One or more parameter values were invalid: Type mismatch for key pk expected: S actual: N"),
    ]
    for item, message in cases:
        with pytest.raises(ClientError) as exc:
            ddb.put_item(TableName=name, Item=item)
        assert error(exc) == ("ValidationException", message)
    with pytest.raises(ClientError) as exc:
        ddb.get_item(TableName=name, Key={"pk": {"S": "a"}})
    assert error(exc) == ("ValidationException", "The provided key element does not match the schema")
    with pytest.raises(ClientError) as exc:
        ddb.get_item(TableName=unique("missing"), Key={"pk": {"S": "a"}})
    assert error(exc)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"S": "b"}, "big": {"S": "x" * 410_000}})
    assert error(exc) == ("ValidationException", "Item size has exceeded the maximum allowed size")


def test_conditions_and_return_values(ddb: Any, make_table: Any) -> None:
    name = make_table()
    key = {"pk": {"S": "c"}, "sk": {"S": "1"}}
    ddb.put_item(TableName=name, Item={**key, "v": {"N": "1"}}, ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=name, Item={**key, "v": {"N": "2"}}, ConditionExpression="attribute_not_exists(pk)",
                     ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert error(exc) == ("ConditionalCheckFailedException", "The conditional request failed")
    assert exc.value.response["Item"] == {**key, "v": {"N": "1"}}
    out = ddb.update_item(TableName=name, Key=key, UpdateExpression="SET v = v + :one, l = list_append("
                          "if_not_exists(l, :empty), :x) ADD s :s REMOVE gone",
                          ConditionExpression="v = :v", ReturnValues="UPDATED_NEW",
                          ExpressionAttributeValues={":one": {"N": "1"}, ":v": {"N": "1"}, ":empty": {"L": []},
                                                     ":x": {"L": [{"S": "x"}]}, ":s": {"SS": ["a"]}})
    assert out["Attributes"] == {"v": {"N": "2"}, "l": {"L": [{"S": "x"}]}, "s": {"SS": ["a"]}}
    old = ddb.update_item(TableName=name, Key=key, UpdateExpression="DELETE s :s",
                          ExpressionAttributeValues={":s": {"SS": ["a"]}}, ReturnValues="ALL_OLD")
    assert old["Attributes"]["s"] == {"SS": ["a"]}
    with pytest.raises(ClientError) as exc:
        ddb.update_item(TableName=name, Key=key, UpdateExpression="SET pk = :x",
                        ExpressionAttributeValues={":x": {"S": "y"}})
    assert error(exc) == ("ValidationException", "One or more parameter values were invalid: Cannot update "
                          "attribute pk. This attribute is part of the key")
    with pytest.raises(ClientError) as exc:
        ddb.delete_item(TableName=name, Key=key, ConditionExpression="v = :v",
                        ExpressionAttributeValues={":v": {"N": "99"}})
    assert error(exc)[0] == "ConditionalCheckFailedException"
    new = ddb.update_item(TableName=name, Key={"pk": {"S": "new"}, "sk": {"S": "1"}},
                          UpdateExpression="SET c = :c", ExpressionAttributeValues={":c": {"N": "5"}},
                          ReturnValues="ALL_NEW")
    assert new["Attributes"] == {"pk": {"S": "new"}, "sk": {"S": "1"}, "c": {"N": "5"}}


def test_legacy_parameters(ddb: Any, make_table: Any) -> None:
    name = make_table()
    key = {"pk": {"S": "l"}, "sk": {"S": "1"}}
    ddb.put_item(TableName=name, Item={**key, "v": {"N": "1"}}, Expected={"pk": {"Exists": False}})
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=name, Item=key, Expected={"pk": {"Exists": False}})
    assert error(exc)[0] == "ConditionalCheckFailedException"
    ddb.update_item(TableName=name, Key=key, AttributeUpdates={"v": {"Action": "ADD", "Value": {"N": "4"}}})
    assert ddb.get_item(TableName=name, Key=key, AttributesToGet=["v"])["Item"] == {"v": {"N": "5"}}
    found = ddb.query(TableName=name, KeyConditions={
        "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "l"}]}},
        QueryFilter={"v": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "3"}]}})
    assert found["Count"] == 1
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=name, Item=key, Expected={"pk": {"Exists": False}},
                     ConditionExpression="attribute_not_exists(pk)")
    assert error(exc)[1].startswith("Can not use both expression and non-expression parameters")


# -- Query and Scan -----------------------------------------------------------------------------------------------

def test_query_key_conditions_order_and_paging(ddb: Any, make_table: Any) -> None:
    name = make_table(range_key=("n", "N"))
    numbers = ["-1000", "-2.5", "-1", "0", "0.001", "1", "2", "10", "1e3"]
    for i, n in enumerate(numbers):
        ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "n": {"N": n}, "i": {"N": str(i)}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "other"}, "n": {"N": "0"}})

    def query(cond: str, **kw: Any) -> list[Decimal]:
        values = {":p": {"S": "p"}, ":a": {"N": "-2"}, ":b": {"N": "5"}}
        used = {k: v for k, v in values.items() if k in cond}
        items = ddb.query(TableName=name, KeyConditionExpression=cond, ExpressionAttributeValues=used, **kw)["Items"]
        return [Decimal(i["n"]["N"]) for i in items]

    every = sorted(Decimal(n) for n in numbers)
    assert query("pk = :p") == every
    assert query("pk = :p", ScanIndexForward=False) == every[::-1]
    assert query("pk = :p AND n BETWEEN :a AND :b") == [d for d in every if -2 <= d <= 5]
    assert query("pk = :p AND n < :a") == [d for d in every if d < -2]
    assert query("pk = :p AND n >= :b") == [d for d in every if d >= 5]
    pages, start = [], {}
    while True:
        page = ddb.query(TableName=name, KeyConditionExpression="pk = :p", Limit=4,
                         ExpressionAttributeValues={":p": {"S": "p"}}, **start)
        pages.append([Decimal(i["n"]["N"]) for i in page["Items"]])
        if "LastEvaluatedKey" not in page:
            break
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
    assert [d for p in pages for d in p] == every and len(pages) >= 3
    counted = ddb.query(TableName=name, KeyConditionExpression="pk = :p", Select="COUNT",
                        FilterExpression="i > :b", ExpressionAttributeValues={":p": {"S": "p"}, ":b": {"N": "5"}})
    assert (counted["Count"], counted["ScannedCount"]) == (3, 9) and "Items" not in counted
    with pytest.raises(ClientError) as exc:
        ddb.query(TableName=name, KeyConditionExpression="pk = :p", FilterExpression="n > :a",
                  ExpressionAttributeValues={":p": {"S": "p"}, ":a": {"N": "1"}})
    assert error(exc) == ("ValidationException", "Filter Expression can only contain non-primary key attributes: "
                          "Primary key attribute: n")


def test_begins_with_on_strings(ddb: Any, make_table: Any) -> None:
    name = make_table()
    for sk in ["a", "ab", "abc", "abd", "b", "a\xff", "ac"]:
        ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": sk}})
    items = ddb.query(TableName=name, KeyConditionExpression="pk = :p AND begins_with(sk, :x)",
                      ExpressionAttributeValues={":p": {"S": "p"}, ":x": {"S": "ab"}})["Items"]
    assert [i["sk"]["S"] for i in items] == ["ab", "abc", "abd"]


def test_indexes(ddb: Any, make_table: Any) -> None:
    name = make_table(extra_types={"g": "S", "when": "N"},
                      GlobalSecondaryIndexes=[{"IndexName": "byg", "KeySchema": [
                          {"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "when", "KeyType": "RANGE"}],
                          "Projection": {"ProjectionType": "KEYS_ONLY"}}],
                      LocalSecondaryIndexes=[{"IndexName": "bywhen", "KeySchema": [
                          {"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "when", "KeyType": "RANGE"}],
                          "Projection": {"ProjectionType": "ALL"}}])
    for i in range(6):
        item = {"pk": {"S": f"p{i % 2}"}, "sk": {"S": f"s{i}"}, "when": {"N": str(10 - i)}, "x": {"N": str(i)}}
        if i != 5:
            item["g"] = {"S": "G"}
        ddb.put_item(TableName=name, Item=item)
    gsi = ddb.query(TableName=name, IndexName="byg", KeyConditionExpression="g = :g",
                    ExpressionAttributeValues={":g": {"S": "G"}})["Items"]
    assert [i["when"]["N"] for i in gsi] == ["6", "7", "8", "9", "10"]
    assert all(set(i) == {"pk", "sk", "g", "when"} for i in gsi)
    lsi = ddb.query(TableName=name, IndexName="bywhen", KeyConditionExpression="pk = :p AND #w > :w",
                    ExpressionAttributeNames={"#w": "when"},
                    ExpressionAttributeValues={":p": {"S": "p1"}, ":w": {"N": "4"}}, ScanIndexForward=False)["Items"]
    assert [i["x"]["N"] for i in lsi] == ["1", "3", "5"]
    ddb.delete_item(TableName=name, Key={"pk": {"S": "p0"}, "sk": {"S": "s0"}})
    ddb.update_item(TableName=name, Key={"pk": {"S": "p1"}, "sk": {"S": "s1"}}, UpdateExpression="REMOVE g")
    gsi = ddb.query(TableName=name, IndexName="byg", KeyConditionExpression="g = :g",
                    ExpressionAttributeValues={":g": {"S": "G"}})["Items"]
    assert [i["sk"]["S"] for i in gsi] == ["s4", "s3", "s2"]
    scanned = ddb.scan(TableName=name, IndexName="byg")["Items"]
    assert sorted(i["sk"]["S"] for i in scanned) == ["s2", "s3", "s4"]
    with pytest.raises(ClientError) as exc:
        ddb.query(TableName=name, IndexName="byg", KeyConditionExpression="g = :g", ConsistentRead=True,
                  ExpressionAttributeValues={":g": {"S": "G"}})
    assert error(exc) == ("ValidationException", "Consistent reads are not supported on global secondary indexes")
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": "s"}, "g": {"N": "1"}})
    assert error(exc)[1] == ("One or more parameter values were invalid: Type mismatch for Index Key g Expected: S "
                             "Actual: N IndexName: byg")
    ddb.update_table(TableName=name, AttributeDefinitions=[{"AttributeName": "x", "AttributeType": "N"}],
                     GlobalSecondaryIndexUpdates=[{"Create": {"IndexName": "byx", "KeySchema": [
                         {"AttributeName": "x", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}}}])
    assert ddb.query(TableName=name, IndexName="byx", KeyConditionExpression="x = :x",
                     ExpressionAttributeValues={":x": {"N": "3"}})["Items"][0]["sk"] == {"S": "s3"}


def test_scan_segments_filters_and_paging(ddb: Any, make_table: Any) -> None:
    name = make_table(hash_key=("id", "N"), range_key=None)
    for i in range(60):
        ddb.put_item(TableName=name, Item={"id": {"N": str(i)}, "even": {"BOOL": i % 2 == 0}})
    segments = []
    for segment in range(3):
        ids, start = [], {}
        while True:
            page = ddb.scan(TableName=name, Segment=segment, TotalSegments=3, Limit=7, **start)
            ids += [int(i["id"]["N"]) for i in page["Items"]]
            if "LastEvaluatedKey" not in page:
                break
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
        segments.append(ids)
    assert sorted(i for s in segments for i in s) == list(range(60))
    assert all(segments)
    even = ddb.scan(TableName=name, FilterExpression="even = :t", ExpressionAttributeValues={":t": {"BOOL": True}})
    assert sorted(int(i["id"]["N"]) for i in even["Items"]) == list(range(0, 60, 2))
    with pytest.raises(ClientError) as exc:
        ddb.scan(TableName=name, Segment=3, TotalSegments=3)
    assert error(exc)[1] == ("The Segment parameter is zero-based and must be less than parameter TotalSegments: "
                             "Segment: 3 is not less than TotalSegments: 3")


# -- batches and transactions -------------------------------------------------------------------------------------

def test_batch_get_and_write(ddb: Any, make_table: Any) -> None:
    name = make_table()
    out = ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": {"pk": {"S": "b"}, "sk": {"S": str(i)}}}}
                                                    for i in range(25)]})
    assert out["UnprocessedItems"] == {}
    ddb.batch_write_item(RequestItems={name: [{"DeleteRequest": {"Key": {"pk": {"S": "b"}, "sk": {"S": "0"}}}}]})
    got = ddb.batch_get_item(RequestItems={name: {"Keys": [{"pk": {"S": "b"}, "sk": {"S": str(i)}} for i in range(3)],
                                                  "ProjectionExpression": "sk"}})
    assert sorted(i["sk"]["S"] for i in got["Responses"][name]) == ["1", "2"] and got["UnprocessedKeys"] == {}
    with pytest.raises(ClientError) as exc:
        ddb.batch_get_item(RequestItems={name: {"Keys": [{"pk": {"S": "b"}, "sk": {"S": "1"}}] * 2}})
    assert error(exc) == ("ValidationException", "Provided list of item keys contains duplicates")


def test_transactions(ddb: Any, make_table: Any) -> None:
    name = make_table()
    a, b = {"pk": {"S": "acct"}, "sk": {"S": "a"}}, {"pk": {"S": "acct"}, "sk": {"S": "b"}}
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": name, "Item": {**a, "bal": {"N": "10"}}}},
                                            {"Put": {"TableName": name, "Item": {**b, "bal": {"N": "0"}}}}])

    def transfer(amount: int, token: str | None = None) -> Any:
        values = {":amt": {"N": str(amount)}}
        extra = {"ClientRequestToken": token} if token else {}
        return ddb.transact_write_items(TransactItems=[
            {"Update": {"TableName": name, "Key": a, "UpdateExpression": "SET bal = bal - :amt",
                        "ConditionExpression": "bal >= :amt", "ExpressionAttributeValues": values,
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
            {"Update": {"TableName": name, "Key": b, "UpdateExpression": "SET bal = bal + :amt",
                        "ExpressionAttributeValues": values}}], **extra)

    transfer(4, token="t1")
    transfer(4, token="t1")  # the same token within 10 minutes: applied once
    with pytest.raises(ClientError) as exc:
        transfer(5, token="t1")
    assert error(exc)[0] == "IdempotentParameterMismatchException"
    with pytest.raises(ClientError) as exc:
        transfer(100)
    assert error(exc)[0] == "TransactionCanceledException"
    reasons = exc.value.response["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["ConditionalCheckFailed", "None"]
    assert reasons[0]["Item"]["bal"] == {"N": "6"}
    got = ddb.transact_get_items(TransactItems=[{"Get": {"TableName": name, "Key": k}} for k in (a, b)])
    assert [r["Item"]["bal"]["N"] for r in got["Responses"]] == ["6", "4"]
    with pytest.raises(ClientError) as exc:
        ddb.transact_write_items(TransactItems=[
            {"ConditionCheck": {"TableName": name, "Key": a, "ConditionExpression": "attribute_exists(pk)"}},
            {"Delete": {"TableName": name, "Key": a}}])
    assert error(exc) == ("ValidationException", "Transaction request cannot include multiple operations on one item")


# -- the resource API ---------------------------------------------------------------------------------------------

def test_resource_api(resource: Any, make_table: Any) -> None:
    table = resource.Table(make_table(hash_key=("user", "S"), range_key=("ts", "N")))
    with table.batch_writer() as batch:
        for i in range(30):
            batch.put_item(Item={"user": "u1", "ts": i, "score": Decimal(i) / 2, "tags": {"a", "b"}})
    assert table.get_item(Key={"user": "u1", "ts": 3})["Item"]["score"] == Decimal("1.5")
    found = table.query(KeyConditionExpression=Key("user").eq("u1") & Key("ts").between(5, 9),
                        FilterExpression=Attr("score").gt(3))
    assert [int(i["ts"]) for i in found["Items"]] == [7, 8, 9]
    table.update_item(Key={"user": "u1", "ts": 3}, UpdateExpression="ADD score :d",
                      ExpressionAttributeValues={":d": Decimal("0.25")})
    assert table.get_item(Key={"user": "u1", "ts": 3})["Item"]["score"] == Decimal("1.75")
    table.delete_item(Key={"user": "u1", "ts": 3})
    assert table.scan(Select="COUNT")["Count"] == 29


def test_partiql_statements(ddb: Any, make_table: Any) -> None:
    name = make_table(range_key=None)
    ddb.execute_statement(Statement=f"INSERT INTO \"{name}\" VALUE {{'pk': 'a', 'v': 1}}")
    ddb.execute_statement(Statement=f"INSERT INTO \"{name}\" VALUE {{'pk': 'b', 'v': 2}}")
    with pytest.raises(ClientError) as exc:
        ddb.execute_statement(Statement=f"INSERT INTO \"{name}\" VALUE {{'pk': 'a', 'v': 9}}")
    assert error(exc) == ("DuplicateItemException", "Duplicate primary key exists in table")
    got = ddb.execute_statement(Statement=f"SELECT * FROM \"{name}\" WHERE pk = ?", Parameters=[{"S": "a"}])
    assert got["Items"] == [{"pk": {"S": "a"}, "v": {"N": "1"}}]
    ddb.execute_statement(Statement=f"UPDATE \"{name}\" SET v = ? WHERE pk = ?", Parameters=[{"N": "5"}, {"S": "a"}])
    assert ddb.get_item(TableName=name, Key={"pk": {"S": "a"}})["Item"]["v"] == {"N": "5"}
    ddb.execute_statement(Statement=f"DELETE FROM \"{name}\" WHERE pk = 'b'")
    assert [i["pk"]["S"] for i in ddb.execute_statement(Statement=f"SELECT pk FROM \"{name}\"")["Items"]] == ["a"]
    with pytest.raises(ClientError) as exc:
        ddb.execute_statement(Statement="DROP TABLE x")
    assert error(exc)[0] == "ValidationException"


def test_item_collection_limit_of_local_indexes(ddb: Any, make_table: Any) -> None:
    name = make_table(extra_types={"when": "N"}, LocalSecondaryIndexes=[{"IndexName": "bywhen", "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "when", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"}}])
    for i in range(3):
        ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": str(i)}, "when": {"N": str(i)},
                                           "pad": {"S": "x" * 5000}})
    with pytest.raises(ClientError) as exc:
        for i in range(3, 6):
            ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": str(i)}, "pad": {"S": "x" * 5000}})
    assert error(exc) == ("ItemCollectionSizeLimitExceededException", "Item collection size limit exceeded")
    ddb.put_item(TableName=name, Item={"pk": {"S": "other"}, "sk": {"S": "0"}, "pad": {"S": "x" * 5000}})
    count = ddb.query(TableName=name, KeyConditionExpression="pk = :p", Select="COUNT",
                      ExpressionAttributeValues={":p": {"S": "p"}})["Count"]
    assert count == 3  # the refused write left nothing


def test_placeholder_maps_and_key_paths(ddb: Any, make_table: Any) -> None:
    name = make_table()
    key = {"pk": {"S": "a"}, "sk": {"S": "1"}}
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=name, Item=key, ConditionExpression="attribute_not_exists(pk)",
                     ExpressionAttributeNames={})
    assert error(exc) == ("ValidationException", "ExpressionAttributeNames must not be empty")
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=name, Item=key, ConditionExpression="attribute_not_exists(pk)",
                     ExpressionAttributeValues={":unused": {"S": "x"}})
    assert error(exc)[1].startswith("Value provided in ExpressionAttributeValues unused in expressions")
    with pytest.raises(ClientError) as exc:
        ddb.get_item(TableName=name, Key=key, ProjectionExpression="pk.x")
    assert error(exc)[0] == "ValidationException" and "Key attributes must be scalars" in error(exc)[1]
