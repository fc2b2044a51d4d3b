"""Query and Scan against a brute-force model over random items (keys of all three types), and transactions
under 8 concurrent writers (a bank whose money neither appears nor vanishes), on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import random
import threading
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Platform, unique
from tests.ddb import ENGINES, clients, start_platform


@pytest.fixture(scope="module", params=ENGINES)
def ddb_platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with contextlib.ExitStack() as stack:
        yield start_platform(request.param, tmp_path_factory.mktemp("ddbm"), stack)


@pytest.fixture(scope="module")
def ddb(ddb_platform: Platform) -> Any:
    return clients(ddb_platform)[0]


def _number() -> st.SearchStrategy[str]:
    digits = st.integers(min_value=-(10 ** 12), max_value=10 ** 12)
    return st.builds(lambda d, e: str(Decimal(d).scaleb(e)), digits, st.integers(min_value=-20, max_value=20))


SORT_VALUES = {
    "S": st.text(alphabet="ab\x00\x7f\xe9\u20ac\U0001f600", min_size=1, max_size=4),
    "N": _number(),
    "B": st.binary(min_size=1, max_size=4),
}


def _order(kind: str, value: Any) -> Any:
    return value.encode() if kind == "S" else Decimal(value) if kind == "N" else value


def _wire(kind: str, value: Any) -> dict[str, Any]:
    return {kind: value}


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, list[tuple[str, Any, int]], list[dict[str, Any]]]:
    kind = draw(st.sampled_from(sorted(SORT_VALUES)))
    values = SORT_VALUES[kind]
    raw = draw(st.lists(st.tuples(st.sampled_from(["p", "q", "r"]), values, st.integers(0, 9)), max_size=40))
    items: dict[tuple[str, Any], tuple[str, Any, int]] = {}
    for pk, sk, v in raw:
        items[(pk, _order(kind, sk))] = (pk, sk, v)
    queries = []
    for _ in range(draw(st.integers(1, 4))):
        ops = ["=", "<", "<=", ">", ">=", "BETWEEN", None] + (["begins_with"] if kind != "N" else [])
        op = draw(st.sampled_from(ops))
        bounds = sorted([draw(values), draw(values)], key=lambda x: _order(kind, x))
        queries.append({"pk": draw(st.sampled_from(["p", "q", "r"])), "op": op, "bounds": bounds,
                        "forward": draw(st.booleans()), "limit": draw(st.integers(1, 8) | st.none()),
                        "min_v": draw(st.integers(0, 9) | st.none())})
    return kind, list(items.values()), queries


def _matches(kind: str, op: str | None, bounds: list[Any], sk: Any) -> bool:
    value, low, high = _order(kind, sk), _order(kind, bounds[0]), _order(kind, bounds[1])
    if op is None:
        return True
    if op == "BETWEEN":
        return bool(low <= value <= high)
    if op == "begins_with":
        return bool(value[:len(low)] == low)
    return {"=": value == low, "<": value < low, "<=": value <= low, ">": value > low, ">=": value >= low}[op]


def _pages(call: Any, **params: Any) -> list[dict[str, Any]]:
    items, start = [], {}
    while True:
        page = call(**params, **start)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(case=cases())
def test_query_and_scan_equal_the_model(ddb: Any, case: tuple[str, list[tuple[str, Any, int]], list[Any]]) -> None:
    kind, items, queries = case
    name = unique("model")
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": kind}])
    try:
        for i in range(0, len(items), 25):
            ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": {
                "pk": {"S": pk}, "sk": _wire(kind, sk), "v": {"N": str(v)}}}} for pk, sk, v in items[i:i + 25]]})
        for q in queries:
            cond, values = "pk = :p", {":p": {"S": q["pk"]}}
            if q["op"] == "BETWEEN":
                cond += " AND sk BETWEEN :a AND :b"
                values.update({":a": _wire(kind, q["bounds"][0]), ":b": _wire(kind, q["bounds"][1])})
            elif q["op"] == "begins_with":
                cond += " AND begins_with(sk, :a)"
                values[":a"] = _wire(kind, q["bounds"][0])
            elif q["op"] is not None:
                cond += f" AND sk {q['op']} :a"
                values[":a"] = _wire(kind, q["bounds"][0])
            params: dict[str, Any] = {"TableName": name, "KeyConditionExpression": cond,
                                      "ScanIndexForward": q["forward"]}
            if q["limit"]:
                params["Limit"] = q["limit"]
            if q["min_v"] is not None:
                params["FilterExpression"] = "v >= :m"
                values[":m"] = {"N": str(q["min_v"])}
            got = _pages(ddb.query, ExpressionAttributeValues=values, **params)
            expected = sorted((i for i in items if i[0] == q["pk"] and _matches(kind, q["op"], q["bounds"], i[1])
                               and (q["min_v"] is None or i[2] >= q["min_v"])),
                              key=lambda i: _order(kind, i[1]), reverse=not q["forward"])
            norm = (lambda x: Decimal(x)) if kind == "N" else (lambda x: x)
            assert [(norm(g["sk"][kind]), int(g["v"]["N"])) for g in got] == [(norm(i[1]), i[2]) for i in expected]
        every = {(pk, _order(kind, sk), v) for pk, sk, v in items}

        def seen(found: list[dict[str, Any]]) -> list[tuple[str, Any, int]]:
            return [(f["pk"]["S"], _order(kind, f["sk"][kind]), int(f["v"]["N"])) for f in found]

        scanned = seen(_pages(ddb.scan, TableName=name, Limit=5))
        assert len(scanned) == len(every) and set(scanned) == every
        segments = [seen(_pages(ddb.scan, TableName=name, Segment=s, TotalSegments=3, Limit=4)) for s in range(3)]
        assert Counter(x for s in segments for x in s) == Counter(every)
        filtered = seen(_pages(ddb.scan, TableName=name, Limit=3, FilterExpression="v < :m",
                               ExpressionAttributeValues={":m": {"N": "5"}}))
        assert set(filtered) == {e for e in every if e[2] < 5} and len(filtered) == len(set(filtered))
    finally:
        ddb.delete_table(TableName=name)


def test_bank_transfers_from_8_threads_keep_the_total(ddb: Any) -> None:
    name = unique("bank")
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    accounts = [f"a{i}" for i in range(10)]
    ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": {"id": {"S": a}, "bal": {"N": "100"}}}}
                                              for a in accounts] + [
        {"PutRequest": {"Item": {"id": {"S": "count"}, "n": {"N": "0"}}}}]})
    done = [0] * 8
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        rng = random.Random(index)
        try:
            for _ in range(60):
                src, dst = rng.sample(accounts, 2)
                amount = {":a": {"N": str(rng.randint(1, 60))}}
                try:
                    ddb.transact_write_items(TransactItems=[
                        {"Update": {"TableName": name, "Key": {"id": {"S": src}}, "UpdateExpression":
                                    "SET bal = bal - :a", "ConditionExpression": "bal >= :a",
                                    "ExpressionAttributeValues": amount}},
                        {"Update": {"TableName": name, "Key": {"id": {"S": dst}}, "UpdateExpression":
                                    "SET bal = bal + :a", "ExpressionAttributeValues": amount}},
                        {"Update": {"TableName": name, "Key": {"id": {"S": "count"}},
                                    "UpdateExpression": "ADD n :one",
                                    "ExpressionAttributeValues": {":one": {"N": "1"}}}}])
                    done[index] += 1
                except ClientError as exc:
                    assert exc.response["Error"]["Code"] == "TransactionCanceledException"
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    items = {i["id"]["S"]: i for i in _pages(ddb.scan, TableName=name, ConsistentRead=True)}
    balances = [int(items[a]["bal"]["N"]) for a in accounts]
    assert sum(balances) == 1000 and min(balances) >= 0
    assert int(items["count"]["n"]["N"]) == sum(done) > 0
    ddb.delete_table(TableName=name)
