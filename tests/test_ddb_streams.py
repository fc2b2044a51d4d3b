"""DynamoDB Streams: the Streams API, event source mappings from a table's stream, and TTL deletions, on a real
platform (the worker forwards the outbox and sweeps expired items), on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Platform, make_zip, unique, wait_for
from tests.ddb import ENGINES, clients, make_table, start_platform

__all__ = ["make_table"]

LEDGER_FUNCTION = """
import json, os
def handler(event, context):
    with open(os.environ["LEDGER"], "a") as f:
        for r in event["Records"]:
            f.write(json.dumps({"name": r["eventName"], "seq": r["dynamodb"]["SequenceNumber"],
                                "key": r["dynamodb"]["Keys"]["pk"]["S"], "arn": r["eventSourceARN"],
                                "new": r["dynamodb"].get("NewImage"), "batch": len(event["Records"])}) + "\\n")
    return {}
"""


@pytest.fixture(scope="module", params=ENGINES)
def ddb_platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with contextlib.ExitStack() as stack:
        yield start_platform(request.param, tmp_path_factory.mktemp("ddbs"), stack,
                             {"KAMBDA_TABLES_TTL_INTERVAL": "0.2", "KAMBDA_ASYNC_RETRY_BASE": "0.05"})


@pytest.fixture(scope="module")
def ddb(ddb_platform: Platform) -> Any:
    return clients(ddb_platform)[0]


@pytest.fixture(scope="module")
def streams(ddb_platform: Platform) -> Any:
    return clients(ddb_platform)[2]


def records(streams: Any, arn: str, kind: str = "TRIM_HORIZON", **kw: Any) -> list[dict[str, Any]]:
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType=kind, **kw)["ShardIterator"]
    return list(streams.get_records(ShardIterator=iterator)["Records"])


def test_streams_api_images_and_iterators(ddb: Any, streams: Any, make_table: Any) -> None:
    name = make_table(StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    table = ddb.describe_table(TableName=name)["Table"]
    arn = table["LatestStreamArn"]
    assert arn == f"arn:aws:dynamodb:us-east-1:000000000000:table/{name}/stream/{table['LatestStreamLabel']}"
    assert {"StreamArn": arn, "TableName": name, "StreamLabel": table["LatestStreamLabel"]} in \
        streams.list_streams(TableName=name)["Streams"]
    key = {"pk": {"S": "k"}, "sk": {"S": "1"}}
    ddb.put_item(TableName=name, Item={**key, "v": {"N": "1"}, "b": {"B": b"\x01"}})
    ddb.put_item(TableName=name, Item={**key, "v": {"N": "1"}, "b": {"B": b"\x01"}})  # unchanged: no record
    ddb.update_item(TableName=name, Key=key, UpdateExpression="SET v = :two",
                    ExpressionAttributeValues={":two": {"N": "2"}})
    ddb.delete_item(TableName=name, Key=key)
    got = records(streams, arn)
    assert [r["eventName"] for r in got] == ["INSERT", "MODIFY", "REMOVE"]
    insert, modify, remove = (r["dynamodb"] for r in got)
    assert got[0]["eventSource"] == "aws:dynamodb" and got[0]["awsRegion"] == "us-east-1"
    assert insert["Keys"] == key and insert["NewImage"]["b"] == {"B": b"\x01"} and "OldImage" not in insert
    assert modify["OldImage"]["v"] == {"N": "1"} and modify["NewImage"]["v"] == {"N": "2"}
    assert remove["OldImage"]["v"] == {"N": "2"} and "NewImage" not in remove
    assert insert["StreamViewType"] == "NEW_AND_OLD_IMAGES" and insert["SizeBytes"] > 0
    numbers = [r["SequenceNumber"] for r in (insert, modify, remove)]
    assert numbers == sorted(numbers, key=int) and len(set(numbers)) == 3
    assert [r["dynamodb"]["SequenceNumber"] for r in records(streams, arn, "AT_SEQUENCE_NUMBER",
                                                             SequenceNumber=numbers[1])] == numbers[1:]
    assert [r["dynamodb"]["SequenceNumber"] for r in records(streams, arn, "AFTER_SEQUENCE_NUMBER",
                                                             SequenceNumber=numbers[1])] == numbers[2:]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    latest = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    assert streams.get_records(ShardIterator=latest)["Records"] == []
    ddb.put_item(TableName=name, Item={"pk": {"S": "late"}, "sk": {"S": "1"}})
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in streams.get_records(ShardIterator=latest)["Records"]] == \
        ["late"]
    with pytest.raises(ClientError) as exc:
        streams.describe_stream(StreamArn=arn.rsplit("/", 1)[0] + "/2000-01-01T00:00:00.000")
    assert exc.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_keys_only_view_and_enabling_later(ddb: Any, streams: Any, make_table: Any) -> None:
    name = make_table()
    ddb.put_item(TableName=name, Item={"pk": {"S": "before"}, "sk": {"S": "1"}})
    described = ddb.update_table(TableName=name, StreamSpecification={"StreamEnabled": True,
                                                                      "StreamViewType": "KEYS_ONLY"})
    arn = described["TableDescription"]["LatestStreamArn"]
    ddb.put_item(TableName=name, Item={"pk": {"S": "after"}, "sk": {"S": "1"}, "x": {"S": "y"}})
    got = records(streams, arn)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in got] == ["after"]
    assert "NewImage" not in got[0]["dynamodb"] and got[0]["dynamodb"]["StreamViewType"] == "KEYS_ONLY"
    with pytest.raises(ClientError) as exc:
        ddb.update_table(TableName=name, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    assert exc.value.response["Error"]["Message"] == f"Table already has an enabled stream: {arn}"
    ddb.update_table(TableName=name, StreamSpecification={"StreamEnabled": False})
    assert streams.describe_stream(StreamArn=arn)["StreamDescription"]["StreamStatus"] == "DISABLED"
    ddb.put_item(TableName=name, Item={"pk": {"S": "disabled"}, "sk": {"S": "1"}})
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in records(streams, arn)] == ["after"]


def test_ttl_removes_expired_items_with_a_service_record(ddb: Any, streams: Any, make_table: Any) -> None:
    name = make_table(StreamSpecification={"StreamEnabled": True, "StreamViewType": "OLD_IMAGE"})
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    now = int(time.time())
    ddb.put_item(TableName=name, Item={"pk": {"S": "old"}, "sk": {"S": "1"}, "exp": {"N": str(now - 5)}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "new"}, "sk": {"S": "1"}, "exp": {"N": str(now + 3600)}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "none"}, "sk": {"S": "1"}})
    key = {"pk": {"S": "old"}, "sk": {"S": "1"}}
    wait_for(lambda: "Item" not in ddb.get_item(TableName=name, Key=key), timeout=60, what="the TTL sweep")
    removed = [r for r in records(streams, ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"])
               if r["eventName"] == "REMOVE"]
    assert len(removed) == 1 and removed[0]["dynamodb"]["Keys"] == key
    assert removed[0]["userIdentity"] == {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    assert ddb.scan(TableName=name, Select="COUNT")["Count"] == 2


def _ledger(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_mappings_each_get_every_record_once_in_order(ddb_platform: Platform, ddb: Any, make_table: Any,
                                                          tmp_path: Path) -> None:
    lam = ddb_platform.lambda_client()
    name = make_table(StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    ledgers, uuids, functions = [], [], []
    for i, factor in enumerate((1, 3)):
        ledger = tmp_path / f"ledger-{i}.jsonl"
        fname = unique("esm")
        lam.create_function(FunctionName=fname, Runtime="python3.12", Handler="app.handler",
                            Role="arn:aws:iam::000000000000:role/test", Code={"ZipFile": make_zip(
                                {"app.py": LEDGER_FUNCTION})}, Environment={"Variables": {"LEDGER": str(ledger)}})
        mapping = lam.create_event_source_mapping(FunctionName=fname, EventSourceArn=arn,
                                                  StartingPosition="TRIM_HORIZON", BatchSize=7,
                                                  ParallelizationFactor=factor,
                                                  MaximumBatchingWindowInSeconds=0)
        assert mapping["StartingPosition"] == "TRIM_HORIZON" and mapping["ParallelizationFactor"] == factor
        ledgers.append(ledger)
        uuids.append(mapping["UUID"])
        functions.append(fname)
    try:
        writes = 0
        for round_ in range(6):
            for k in range(8):
                ddb.put_item(TableName=name, Item={"pk": {"S": f"k{k}"}, "sk": {"S": "1"}, "n": {"N": str(round_)}})
                writes += 1
        for ledger in ledgers:
            wait_for(lambda ledger=ledger: len(_ledger(ledger)) >= writes, timeout=90, what="every record")
        for ledger in ledgers:
            got = _ledger(ledger)
            assert len(got) == writes and len({r["seq"] for r in got}) == writes  # each once
            assert {r["arn"] for r in got} == {arn} and max(r["batch"] for r in got) <= 7
            for k in range(8):
                mine = [r for r in got if r["key"] == f"k{k}"]
                assert [int(r["new"]["n"]["N"]) for r in mine] == list(range(6))  # in order per key
                assert [r["name"] for r in mine] == ["INSERT"] + ["MODIFY"] * 5
    finally:
        for uid in uuids:
            lam.delete_event_source_mapping(UUID=uid)
        for fname in functions:
            lam.delete_function(FunctionName=fname)


def test_mapping_validation(ddb_platform: Platform, ddb: Any, make_table: Any) -> None:
    lam = ddb_platform.lambda_client()
    name = make_table(StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    fname = unique("esmv")
    lam.create_function(FunctionName=fname, Runtime="python3.12", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/test",
                        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return {}\n"})})
    try:
        with pytest.raises(ClientError) as exc:
            lam.create_event_source_mapping(FunctionName=fname, EventSourceArn=arn)
        assert exc.value.response["Error"]["Message"] == "StartingPosition is required for a DynamoDB stream"
        with pytest.raises(ClientError) as exc:
            lam.create_event_source_mapping(FunctionName=fname, EventSourceArn=arn, StartingPosition="LATEST",
                                            ParallelizationFactor=11)
        assert exc.value.response["Error"]["Code"] == "InvalidParameterValueException"
        uid = lam.create_event_source_mapping(FunctionName=fname, EventSourceArn=arn, StartingPosition="LATEST",
                                              BatchSize=50)["UUID"]
        lam.update_event_source_mapping(UUID=uid, BatchSize=5, MaximumRecordAgeInSeconds=120)
        got = lam.get_event_source_mapping(UUID=uid)
        assert (got["BatchSize"], got["MaximumRecordAgeInSeconds"], got["MaximumRetryAttempts"]) == (5, 120, -1)
        lam.delete_event_source_mapping(UUID=uid)
    finally:
        lam.delete_function(FunctionName=fname)


PICKY = """
import json, os
def handler(event, context):
    ledger = os.environ["LEDGER"]
    with open(ledger, "a") as f:
        for r in event.get("Records", []):
            f.write(json.dumps([r["dynamodb"]["SequenceNumber"], int(r["dynamodb"]["NewImage"]["n"]["N"])]) + "\\n")
        if "DDBStreamBatchInfo" in event:
            f.write(json.dumps(event["DDBStreamBatchInfo"]) + "\\n")
    bad = [r for r in event.get("Records", []) if "bad" in r["dynamodb"]["NewImage"]]
    if os.environ["MODE"] == "report":
        if bad and not os.path.exists(ledger + ".reported"):
            open(ledger + ".reported", "w").close()
            return {"batchItemFailures": [{"itemIdentifier": bad[0]["dynamodb"]["SequenceNumber"]}]}
        return {}
    if bad and os.environ["MODE"] == "raise":
        raise Exception("a bad record")
    return {}
"""


def test_partial_failures_bisection_destinations_and_filters(ddb_platform: Platform, ddb: Any, make_table: Any,
                                                             tmp_path: Path) -> None:
    lam = ddb_platform.lambda_client()
    name = make_table(StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    made: list[str] = []
    mappings: list[str] = []

    def function(mode: str) -> tuple[str, Path]:
        fname, ledger = unique(f"esm-{mode}"), tmp_path / f"{mode}.jsonl"
        lam.create_function(FunctionName=fname, Runtime="python3.12", Handler="app.handler",
                            Role="arn:aws:iam::000000000000:role/test", Code={"ZipFile": make_zip({"app.py": PICKY})},
                            Environment={"Variables": {"LEDGER": str(ledger), "MODE": mode}})
        made.append(fname)
        return fname, ledger

    def mapping(fname: str, **params: Any) -> None:
        mappings.append(lam.create_event_source_mapping(
            FunctionName=fname, EventSourceArn=arn, StartingPosition="TRIM_HORIZON", BatchSize=10,
            MaximumBatchingWindowInSeconds=1, **params)["UUID"])

    try:
        report, report_ledger = function("report")
        mapping(report, FunctionResponseTypes=["ReportBatchItemFailures"])
        raising, raising_ledger = function("raise")
        dlq, dlq_ledger = function("dlq")
        destination = f"arn:aws:lambda:us-east-1:000000000000:function:{dlq}"
        mapping(raising, BisectBatchOnFunctionError=True, MaximumRetryAttempts=0,
                DestinationConfig={"OnFailure": {"Destination": destination}})
        filtered, filtered_ledger = function("plain")
        mapping(filtered, FilterCriteria={"Filters": [{"Pattern": json.dumps(
            {"dynamodb": {"NewImage": {"n": {"N": ["7"]}}}})}]})
        ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": {
            "pk": {"S": f"k{n}"}, "sk": {"S": "1"}, "n": {"N": str(n)}, **({"bad": {"BOOL": True}} if n == 4 else {})}}}
            for n in range(10)]})
        wait_for(lambda: dlq_ledger.exists() and dlq_ledger.read_text().strip(), timeout=90, what="the failure")
        info = json.loads(dlq_ledger.read_text().splitlines()[0])
        assert info["batchSize"] == 1 and info["streamArn"] == arn  # bisected down to the bad record alone
        assert info["startSequenceNumber"] == info["endSequenceNumber"]
        wait_for(lambda: {n for _, n in _lines(raising_ledger)} == set(range(10)), timeout=60, what="the rest")
        wait_for(lambda: [n for _, n in _lines(report_ledger)].count(4) == 2 and
                 {n for _, n in _lines(report_ledger)} == set(range(10)), timeout=60, what="the reported retry")
        seen = [n for _, n in _lines(report_ledger)]
        assert seen.count(4) == 2 and all(seen.count(n) == 1 for n in range(4))  # only 4 and after are retried
        firsts = list(dict.fromkeys(seen))
        assert firsts == sorted(firsts)
        wait_for(lambda: _lines(filtered_ledger), timeout=60, what="the filtered record")
        assert [n for _, n in _lines(filtered_ledger)] == [7]
    finally:
        for uid in mappings:
            lam.delete_event_source_mapping(UUID=uid)
        for fname in made:
            lam.delete_function(FunctionName=fname)


def _lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
