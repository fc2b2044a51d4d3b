"""DynamoDB's figures (issue #19): PutItem, GetItem, a 100-item Query from a 100,000-item partition and a 10-item
TransactWriteItems through the front door (JSON 1.0 over HTTP, as boto3 sends it), per second at 32 clients and
p50, on SQLite and on PostgreSQL; the same statements issued directly to the engine through kambda/sql.py (the
limit under the API); and the latency from a PutItem to the function mapped to the table's stream.

``python -m bench.tables`` runs these alone; ``python -m bench`` includes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench import pg
from kambda.sql import Database, Tx
from tables import codec
from tables.storage import SCHEMA, Specs, key_of, write

TARGET = "DynamoDB_20120810."
STAMP = """
import json, os, time
def handler(event, context):
    now = time.time()
    with open(os.environ["OUT"], "a") as f:
        for r in event["Records"]:
            f.write(json.dumps([float(r["dynamodb"]["NewImage"]["t"]["N"]), now]) + "\\n")
    return {}
"""


def start(state: Path, dsn: str | None) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "KAMBDA_TABLES_DSN": dsn or ""}
    proc = subprocess.Popen([sys.executable, "-m", "kambda.cli", "up", "--port", "0", "--state-dir", str(state)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("kambda is ready at "):
            return proc, line.split()[-1]
    raise SystemExit("kambda up did not start")


async def call(session: aiohttp.ClientSession, url: str, op: str, body: dict[str, Any],
               service: str = TARGET) -> dict[str, Any]:
    async with session.post(url + "/", data=json.dumps(body), headers={
            "X-Amz-Target": service + op, "Content-Type": "application/x-amz-json-1.0"}) as response:
        answer: dict[str, Any] = await response.json(content_type=None)
        if response.status != 200:
            raise RuntimeError(f"{op}: {answer}")
        return answer


async def load(work: Callable[[int], Awaitable[None]], clients: int, seconds: float) -> tuple[float, float]:
    """(operations per second, p50 in ms) of ``clients`` loops running ``work(i)`` for ``seconds``."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    counter = iter(range(10 ** 9))

    async def loop() -> None:
        while time.monotonic() < deadline:
            began = time.perf_counter()
            await work(next(counter))
            latencies.append(time.perf_counter() - began)

    began = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(clients)))
    return len(latencies) / (time.monotonic() - began), statistics.median(latencies) * 1000


def _item(i: int, pk: str = "p") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": f"{i:08d}"}, "v": {"N": str(i)}, "name": {"S": "x" * 64}}


async def api_figures(url: str, clients: int, seconds: float, seed: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=clients * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        table = {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                 "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                          {"AttributeName": "sk", "AttributeType": "S"}],
                 "BillingMode": "PAY_PER_REQUEST"}
        await call(session, url, "CreateTable", {"TableName": "bench", **table})
        out: dict[str, Any] = {}

        async def put(i: int) -> None:
            await call(session, url, "PutItem", {"TableName": "bench", "Item": _item(i, f"w{i % 1000}")})

        async def get(i: int) -> None:
            await call(session, url, "GetItem", {"TableName": "bench", "Key": {
                "pk": {"S": f"w{i % 1000}"}, "sk": {"S": f"{i % 1000:08d}"}}})

        async def transact(i: int) -> None:
            await call(session, url, "TransactWriteItems", {"TransactItems": [
                {"Put": {"TableName": "bench", "Item": _item(i * 10 + j, f"t{i}")}} for j in range(10)]})

        for name, work in (("PutItem", put), ("GetItem", get), ("TransactWriteItems_10", transact)):
            await load(work, 4, min(1.0, seconds))  # warm
            rate, p50_32 = await load(work, clients, seconds)
            _, p50_1 = await load(work, 1, seconds / 2)
            out[name] = {"per_second_32": rate, "p50_ms_32": p50_32, "p50_ms_1": p50_1}
        return out


async def bank(url: str, transfers: int, clients: int = 8) -> dict[str, Any]:
    """Random TransactWriteItems transfers between 10 accounts from ``clients`` writers; the total must hold."""
    rng = random.Random(11)
    async with aiohttp.ClientSession() as session:
        await call(session, url, "CreateTable", {
            "TableName": "bank", "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}]})
        for i in range(10):
            await call(session, url, "PutItem", {"TableName": "bank", "Item": {"id": {"S": f"a{i}"},
                                                                               "bal": {"N": "1000"}}})
        left = iter(range(transfers))
        done = refused = 0
        deadline = time.monotonic() + 90  # bounded: PostgreSQL retries conflicting transfers of 10 hot rows

        async def writer() -> None:
            nonlocal done, refused
            for _ in left:
                if time.monotonic() > deadline:
                    return
                src, dst = rng.sample(range(10), 2)
                amount = {":a": {"N": str(rng.randint(1, 400))}}
                async with session.post(url + "/", data=json.dumps({"TransactItems": [
                        {"Update": {"TableName": "bank", "Key": {"id": {"S": f"a{src}"}},
                                    "UpdateExpression": "SET bal = bal - :a", "ConditionExpression": "bal >= :a",
                                    "ExpressionAttributeValues": amount}},
                        {"Update": {"TableName": "bank", "Key": {"id": {"S": f"a{dst}"}},
                                    "UpdateExpression": "SET bal = bal + :a", "ExpressionAttributeValues": amount}}]}),
                        headers={"X-Amz-Target": TARGET + "TransactWriteItems",
                                 "Content-Type": "application/x-amz-json-1.0"}) as response:
                    answer = await response.json(content_type=None)
                    if response.status == 200:
                        done += 1
                    elif answer.get("__type") == "TransactionCanceledException":
                        refused += 1
                    else:
                        raise RuntimeError(answer)

        began = time.monotonic()
        await asyncio.gather(*(writer() for _ in range(clients)))
        seconds = time.monotonic() - began
        scanned = await call(session, url, "Scan", {"TableName": "bank", "ConsistentRead": True})
        balances = [int(i["bal"]["N"]) for i in scanned["Items"]]
        return {"transfers": done + refused, "applied": done, "refused": refused,
                "per_second": (done + refused) / seconds,
                "total_kept": sum(balances) == 10_000 and min(balances) >= 0}


async def query_figures(url: str, clients: int, seconds: float, partition: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients * 2)) as session:
        rng = random.Random(3)

        async def query(i: int) -> None:
            start = rng.randrange(partition - 100)
            answer = await call(session, url, "Query", {
                "TableName": "big", "KeyConditionExpression": "pk = :p AND sk >= :s", "Limit": 100,
                "ExpressionAttributeValues": {":p": {"S": "big"}, ":s": {"S": f"{start:08d}"}}})
            assert answer["Count"] == 100, answer["Count"]

        await load(query, 2, 1.0)
        _, p50_1 = await load(query, 1, seconds)
        rate, p50_32 = await load(query, clients, seconds)
        return {"items_in_partition": partition, "p50_ms_1": p50_1, "per_second_32": rate, "p50_ms_32": p50_32}


def seed_partition(db: Database, n: int) -> None:
    """100,000 items in one partition of table ``big``, written straight through the storage layer."""
    specs = Specs()
    for start in range(0, n, 5000):
        def batch(tx: Tx, start: int = start) -> None:
            table = specs.get(tx, "big")
            for i in range(start, min(n, start + 5000)):
                item = _item(i, "big")
                write(tx, table, key_of(table, item, "item"), None, item, "us-east-1", time.time())
        db.write_sync(batch)


async def engine_figures(db: Database, clients: int, seconds: float) -> dict[str, Any]:
    """The same statements as PutItem and GetItem issue, straight to the engine through kambda/sql.py."""
    await db.migrate("tables-1", SCHEMA)
    tid = 424242
    blob = codec.dumps(_item(0))

    async def put(i: int) -> None:
        def work(tx: Tx) -> None:
            pk, sk = f"w{i % 1000}".encode(), f"{i:08d}".encode()
            tx.execute("SELECT tid, version, spec FROM ddb_tables WHERE name = ?", ("bench",))
            old = tx.execute("SELECT item FROM ddb_items WHERE tid = ? AND h = ? AND pk = ? AND sk = ?",
                             (tid, i % 1000, pk, sk))
            if old:
                tx.execute("UPDATE ddb_items SET item = ?, size = ?, ttl = ? WHERE tid = ? AND h = ? AND pk = ?"
                           " AND sk = ?", (blob, 100, None, tid, i % 1000, pk, sk))
            else:
                tx.execute("INSERT INTO ddb_items (tid, h, pk, sk, item, size, ttl) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (tid, i % 1000, pk, sk, blob, 100, None))
        await db.write(work)

    async def get(i: int) -> None:
        def work(tx: Tx) -> None:
            tx.execute("SELECT tid, version, spec FROM ddb_tables WHERE name = ?", ("bench",))
            tx.execute("SELECT item FROM ddb_items WHERE tid = ? AND h = ? AND pk = ? AND sk = ?",
                       (tid, i % 1000, f"w{i % 1000}".encode(), f"{i % 1000:08d}".encode()))
        await db.read(work)

    out = {}
    for name, work in (("PutItem", put), ("GetItem", get)):
        await load(work, 4, min(1.0, seconds))
        rate, p50 = await load(work, clients, seconds)
        _, p50_1 = await load(work, 1, seconds / 2)
        out[name] = {"per_second_32": rate, "p50_ms_32": p50, "p50_ms_1": p50_1}
    return out


async def stream_latency(url: str, shared: Path, records: int) -> dict[str, Any]:
    import base64
    import io
    import zipfile

    out = shared / "stamps"
    out.touch()
    out.chmod(0o666)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", STAMP)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/2015-03-31/functions", json={
                "FunctionName": "bench-stream", "Runtime": "python3.12", "Handler": "app.handler", "Role": "r",
                "Environment": {"Variables": {"OUT": str(out)}},
                "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()}}) as response:
            assert response.status == 201, await response.text()
        described = await call(session, url, "CreateTable", {
            "TableName": "streamed", "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}})
        arn = described["TableDescription"]["LatestStreamArn"]
        async with session.post(f"{url}/2015-03-31/event-source-mappings", json={
                "FunctionName": "bench-stream", "EventSourceArn": arn, "StartingPosition": "LATEST",
                "BatchSize": 1, "MaximumBatchingWindowInSeconds": 0}) as response:
            assert response.status in (200, 201, 202), await response.text()
        await asyncio.sleep(2)  # the workers start the mapping's loops
        for i in range(records):
            await call(session, url, "PutItem", {"TableName": "streamed", "Item": {
                "pk": {"S": f"k{i}"}, "t": {"N": repr(time.time())}}})
            await asyncio.sleep(0.02)
        deadline = time.monotonic() + 60
        while len(out.read_text().splitlines()) < records and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    stamps = [json.loads(line) for line in out.read_text().splitlines()]
    delays = sorted((seen - put) * 1000 for put, seen in stamps)
    return {"records": len(delays), "p50_ms": statistics.median(delays) if delays else float("nan"),
            "p90_ms": delays[int(len(delays) * 0.9)] if delays else float("nan")}


async def one_engine(engine: str, clients: int, seconds: float, partition: int, records: int,
                     transfers: int) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        dsn = None
        if engine == "postgresql":
            server = stack.enter_context(pg.postgres_server())
            dsn = pg.fresh_database(server, "bench")
        proc, url = start(tmp / "state", dsn)
        stack.callback(lambda: (proc.terminate(), proc.wait(30)))
        result: dict[str, Any] = {"api": await api_figures(url, clients, seconds, 0)}
        result["bank"] = await bank(url, transfers)
        db = Database.open(dsn, tmp / "state" / "tables" / "tables.db")
        try:
            async with aiohttp.ClientSession() as session:
                await call(session, url, "CreateTable", {
                    "TableName": "big", "BillingMode": "PAY_PER_REQUEST",
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}],
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                             {"AttributeName": "sk", "AttributeType": "S"}]})
            await asyncio.get_running_loop().run_in_executor(None, seed_partition, db, partition)
            result["query_100"] = await query_figures(url, clients, seconds, partition)
            result["engine"] = await engine_figures(db, clients, seconds)
        finally:
            await db.close()
        shared = Path(tempfile.mkdtemp(prefix="kambda-bench-tables-"))
        try:
            shared.chmod(0o777)
            result["stream_to_function"] = await stream_latency(url, shared, records)
        finally:
            shutil.rmtree(shared, ignore_errors=True)
        return result


async def figures(clients: int = 32, seconds: float = 5.0, partition: int = 100_000,
                  records: int = 100, transfers: int = 10_000) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for engine in ("sqlite", "postgresql"):
        try:
            out[engine] = await one_engine(engine, clients, seconds, partition, records, transfers)
        except pg.Unavailable as exc:
            out[engine] = {"unavailable": str(exc)}
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = ["| DynamoDB (32 clients) | SQLite | PostgreSQL |", "|---|---|---|"]

    def cell(engine: str, *path: str, fmt: str = "{:,.0f}") -> str:
        node: Any = result.get(engine, {})
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return "-"
            node = node[part]
        return fmt.format(node)

    for op in ("PutItem", "GetItem", "TransactWriteItems_10"):
        lines.append(f"| {op}: per second / p50 ms (32) / p50 ms (1) | " + " | ".join(
            f"{cell(e, 'api', op, 'per_second_32')} / {cell(e, 'api', op, 'p50_ms_32', fmt='{:.2f}')} / "
            f"{cell(e, 'api', op, 'p50_ms_1', fmt='{:.2f}')}" for e in ("sqlite", "postgresql")) + " |")
    for op in ("PutItem", "GetItem"):
        lines.append(f"| {op}, the engine directly: per second / p50 ms (32) / p50 ms (1) | " + " | ".join(
            f"{cell(e, 'engine', op, 'per_second_32')} / {cell(e, 'engine', op, 'p50_ms_32', fmt='{:.2f}')} / "
            f"{cell(e, 'engine', op, 'p50_ms_1', fmt='{:.2f}')}" for e in ("sqlite", "postgresql")) + " |")
    lines.append("| Query 100 of 100,000: p50 ms (1) / per second (32) | " + " | ".join(
        f"{cell(e, 'query_100', 'p50_ms_1', fmt='{:.2f}')} / {cell(e, 'query_100', 'per_second_32')}"
        for e in ("sqlite", "postgresql")) + " |")
    lines.append("| bank: random 2-item TransactWriteItems from 8 clients: per second / total kept | " + " | ".join(
        f"{cell(e, 'bank', 'per_second')} / {cell(e, 'bank', 'total_kept', fmt='{}')}"
        for e in ("sqlite", "postgresql")) + " |")
    lines.append("| stream to function: p50 / p90 ms | " + " | ".join(
        f"{cell(e, 'stream_to_function', 'p50_ms', fmt='{:.1f}')} / "
        f"{cell(e, 'stream_to_function', 'p90_ms', fmt='{:.1f}')}" for e in ("sqlite", "postgresql")) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tables")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--partition", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--transfers", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.clients, args.partition, args.records, args.transfers = 0.5, 4, 500, 5, 50
    result = asyncio.run(figures(args.clients, args.seconds, args.partition, args.records, args.transfers))
    print(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
