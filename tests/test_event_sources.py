"""Event source mappings: NATS JetStream streams and subjects feeding functions in batches."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from botocore.exceptions import ClientError

from tests.conftest import Platform, make_zip, unique, wait_for

PARTIAL = """
import json, os
def handler(event, context):
    d = os.environ["OUT"]
    failures, done = [], []
    for record in event["Records"]:
        i = json.loads(record["body"])["i"]
        if i % 7 == 0 and not os.path.exists(os.path.join(d, f"failed-{i}")):
            open(os.path.join(d, f"failed-{i}"), "w").close()
            failures.append({"itemIdentifier": record["messageId"]})
        else:
            done.append(str(i))
    if done:
        with open(os.path.join(d, "ledger"), "a") as ledger:
            ledger.write("\\n".join(done) + "\\n")
    return {"batchItemFailures": failures}
"""
POISONED = """
import os
def handler(event, context):
    for record in event["Records"]:
        if record["body"] == "poison":
            raise ValueError("cannot digest this")
        with open(os.path.join(os.environ["OUT"], "ledger"), "a") as ledger:
            ledger.write(record["body"] + "\\n")
"""


@pytest.fixture(scope="module")
def esm_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(tmp_path_factory.mktemp("esm"), env={"KAMBDA_ASYNC_RETRY_BASE": "0.05"}).start()
    yield running
    running.stop()


def nats_url(platform: Platform) -> str:
    return platform.nats_url()


def deploy(lam, code: str, out: Path) -> str:  # type: ignore[no-untyped-def]
    name = unique("esm")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": code})}, Environment={"Variables": {"OUT": str(out)}},
                        Timeout=30)
    return name


def ledger(out: Path) -> Counter[str]:
    path = out / "ledger"
    return Counter(path.read_text().split()) if path.exists() else Counter()


async def make_stream(url: str, stream: str, subject: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(name=stream, subjects=[subject])
    finally:
        await nc.close()


async def publish(url: str, subject: str, payloads: list[bytes], jetstream: bool = True) -> None:
    nc = await nats.connect(url)
    try:
        if jetstream:
            js = nc.jetstream()
            for start in range(0, len(payloads), 500):
                await asyncio.gather(*(js.publish(subject, p) for p in payloads[start:start + 500]))
        else:
            for p in payloads:
                await nc.publish(subject, p)
            await nc.flush()
    finally:
        await nc.close()


def test_ten_thousand_messages_with_partial_batch_failures_each_succeed_once(esm_platform, tmp_path) -> None:
    lam = esm_platform.lambda_client()
    name = deploy(lam, PARTIAL, tmp_path)
    stream = f"ORDERS_{unique('s').replace('-', '_').upper()}"
    url = nats_url(esm_platform)
    asyncio.run(make_stream(url, stream, f"{stream.lower()}.>"))
    asyncio.run(publish(url, f"{stream.lower()}.new", [json.dumps({"i": i}).encode() for i in range(10_000)]))
    mapping = lam.create_event_source_mapping(
        FunctionName=name, EventSourceArn=f"arn:kambda:nats:::stream/{stream}", BatchSize=100,
        FunctionResponseTypes=["ReportBatchItemFailures"], ScalingConfig={"MaximumConcurrency": 2})
    assert mapping["ResponseMetadata"]["HTTPStatusCode"] == 202 and mapping["State"] == "Creating"
    wait_for(lambda: len(ledger(tmp_path)) == 10_000, timeout=240, what="every message to succeed")
    assert ledger(tmp_path) == Counter(str(i) for i in range(10_000))  # each exactly once
    assert len(list(tmp_path.glob("failed-*"))) == len(range(0, 10_000, 7))  # each failure retried
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_a_poison_message_goes_to_the_failure_destination(esm_platform, tmp_path) -> None:
    lam = esm_platform.lambda_client()
    name = deploy(lam, POISONED, tmp_path)
    stream = f"POISON_{unique('s').replace('-', '_').upper()}"
    subject = f"test.failed.{unique('f')}"
    url = nats_url(esm_platform)
    asyncio.run(make_stream(url, stream, f"{stream.lower()}.>"))

    async def run() -> dict:
        nc = await nats.connect(url)
        try:
            failures = await nc.subscribe(subject)
            await nc.flush()
            await publish(url, f"{stream.lower()}.in", [b"ok-1", b"poison", b"ok-2"])
            lam.create_event_source_mapping(
                FunctionName=name, EventSourceArn=f"arn:kambda:nats:::stream/{stream}", BatchSize=1,
                MaximumRetryAttempts=1,
                DestinationConfig={"OnFailure": {"Destination": f"arn:kambda:nats:::{subject}"}})
            return json.loads((await failures.next_msg(timeout=60)).data)
        finally:
            await nc.close()

    failure = asyncio.run(run())
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["record"]["body"] == "poison"
    wait_for(lambda: set(ledger(tmp_path)) == {"ok-1", "ok-2"}, what="the good messages")


def test_plain_subject_mapping(esm_platform, tmp_path) -> None:
    lam = esm_platform.lambda_client()
    name = deploy(lam, POISONED, tmp_path)
    subject = f"test.plain.{unique('p')}"
    mapping = lam.create_event_source_mapping(FunctionName=name, EventSourceArn=f"arn:kambda:nats:::subject/{subject}",
                                              BatchSize=5, MaximumBatchingWindowInSeconds=1)
    url = nats_url(esm_platform)
    asyncio.run(publish(url, subject, [f"m{i}".encode() for i in range(12)], jetstream=False))
    wait_for(lambda: set(ledger(tmp_path)) == {f"m{i}" for i in range(12)}, what="the subject's messages")
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_mapping_api(esm_platform, tmp_path) -> None:
    lam = esm_platform.lambda_client()
    name = deploy(lam, POISONED, tmp_path)
    stream = f"API_{unique('s').replace('-', '_').upper()}"
    asyncio.run(make_stream(nats_url(esm_platform), stream, f"{stream.lower()}.>"))
    arn = f"arn:kambda:nats:::stream/{stream}"
    created = lam.create_event_source_mapping(FunctionName=name, EventSourceArn=arn, BatchSize=7)
    uid = created["UUID"]
    got = lam.get_event_source_mapping(UUID=uid)
    assert (got["State"], got["BatchSize"], got["EventSourceArn"]) == ("Enabled", 7, arn)
    assert got["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    listed = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uid]
    updated = lam.update_event_source_mapping(UUID=uid, Enabled=False, BatchSize=3)
    assert (updated["State"], updated["BatchSize"]) == ("Disabled", 3)
    assert lam.delete_event_source_mapping(UUID=uid)["State"] == "Deleting"
    with pytest.raises(ClientError) as excinfo:
        lam.get_event_source_mapping(UUID=uid)
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
    for source in ("arn:kambda:nats:::stream/NO_SUCH_STREAM", "arn:aws:sqs:us-east-1:000000000000:q",
                   "arn:kambda:nats:::subject/kambda.sync.x"):
        with pytest.raises(ClientError) as excinfo:
            lam.create_event_source_mapping(FunctionName=name, EventSourceArn=source)
        assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValueException", source
    with pytest.raises(ClientError) as excinfo:
        lam.create_event_source_mapping(FunctionName="no-such-function", EventSourceArn=arn)
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
