"""kill -9 of the processes that hold the tables' database (the gateway and the worker) mid-load: no acknowledged
write is lost, and every acknowledged change reaches the stream and a function mapped to it, in order per key."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from kambda.procs import service_pids
from tests.conftest import Platform, make_zip, unique, wait_for
from tests.ddb import clients

LEDGER = """
import json, os
def handler(event, context):
    with open(os.environ["LEDGER"], "a") as f:
        for r in event["Records"]:
            f.write(json.dumps([r["dynamodb"]["SequenceNumber"], r["dynamodb"]["Keys"]["pk"]["S"],
                                int(r["dynamodb"]["NewImage"]["n"]["N"])]) + "\\n")
    return {}
"""
WRITERS = 4
WRITES = 120


def test_kill_9_mid_load_loses_no_acknowledged_write_or_record(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "state").start()
    try:
        ddb, _, streams = clients(platform)
        lam = platform.lambda_client()
        name = unique("crash")
        ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
        arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
        ledger = tmp_path / "ledger.jsonl"
        fname = unique("crashfn")
        lam.create_function(FunctionName=fname, Runtime="python3.12", Handler="app.handler",
                            Role="arn:aws:iam::000000000000:role/test",
                            Code={"ZipFile": make_zip({"app.py": LEDGER})},
                            Environment={"Variables": {"LEDGER": str(ledger)}})
        lam.create_event_source_mapping(FunctionName=fname, EventSourceArn=arn, StartingPosition="TRIM_HORIZON",
                                        BatchSize=20, MaximumBatchingWindowInSeconds=0)
        acked: dict[str, list[int]] = {f"k{w}": [] for w in range(WRITERS)}
        items: set[str] = set()
        stop = threading.Event()

        def writer(w: int) -> None:
            client = clients(platform)[0]
            for n in range(WRITES):
                if stop.is_set():
                    return
                key = f"k{w}"
                while not stop.is_set():
                    try:
                        client.put_item(TableName=name, Item={"pk": {"S": key}, "n": {"N": str(n)}})
                        client.put_item(TableName=name, Item={"pk": {"S": f"{key}-{n}"}, "n": {"N": str(n)}})
                        acked[key].append(n)
                        items.add(f"{key}-{n}")
                        break
                    except (ClientError, BotoCoreError):
                        time.sleep(0.05)  # the gateway is down: this write was not acknowledged; again

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        wait_for(lambda: sum(map(len, acked.values())) >= WRITERS * WRITES // 3, timeout=60, what="load")
        assert platform.proc is not None
        (gateway,) = service_pids(platform.proc.pid, "gateway")
        (worker,) = service_pids(platform.proc.pid, "worker")
        os.kill(gateway, signal.SIGKILL)
        os.kill(worker, signal.SIGKILL)
        for t in threads:
            t.join(timeout=120)
        stop.set()
        assert all(len(v) == WRITES for v in acked.values()), {k: len(v) for k, v in acked.items()}
        for key in sorted(items):  # every acknowledged write is there
            assert "Item" in ddb.get_item(TableName=name, Key={"pk": {"S": key}}, ConsistentRead=True), key
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        recorded: set[str] = set()
        while True:
            page = streams.get_records(ShardIterator=iterator)
            recorded |= {r["dynamodb"]["Keys"]["pk"]["S"] for r in page["Records"]}
            if not page["Records"]:
                break
            iterator = page["NextShardIterator"]
        assert items <= recorded

        def delivered() -> dict[str, list[int]]:
            first: dict[str, tuple[str, int]] = {}
            lines = ledger.read_text().splitlines() if ledger.exists() else []
            for seq, key, n in map(json.loads, lines):
                first.setdefault(seq, (key, n))  # at least once across the kill: the first delivery counts
            per_key: dict[str, list[int]] = {}
            for seq in sorted(first, key=int):
                key, n = first[seq]
                per_key.setdefault(key, []).append(n)
            return per_key

        # What the dead worker held comes back once its ack wait (30 s) has passed.
        wait_for(lambda: all(set(v) <= set(delivered().get(k, [])) for k, v in acked.items())
                 and items <= set(delivered()), timeout=120, what="every record to reach the function")
        for key, values in delivered().items():
            if key in acked:
                assert values == sorted(values), key  # in order per key
        assert platform.proc.poll() is None
    finally:
        platform.stop()
