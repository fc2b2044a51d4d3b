"""Asynchronous (Event) invocations: durable acceptance, retries, destinations, restarts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import nats
import pytest
from botocore.exceptions import ClientError

from kambda.procs import service_pids
from tests.conftest import Platform, make_zip, unique, wait_for

FLAKY = """
import os
def handler(event, context):
    i, d = event["i"], event["dir"]
    if i % 3 == 0 and not os.path.exists(os.path.join(d, f"failed-{i}")):
        open(os.path.join(d, f"failed-{i}"), "w").close()
        raise RuntimeError("the first attempt of every third event fails")
    with open(os.path.join(d, "ledger"), "a") as ledger:
        ledger.write(f"{i}\\n")
    return i
"""
RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["RECORDS"], "a") as out:
        out.write(json.dumps(event) + "\\n")
"""
LEDGER = """
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    with open(os.path.join(event["dir"], "ledger"), "a") as f:
        f.write(str(event["i"]) + "\\n")
"""
FAILING = """
import os
def handler(event, context):
    with open(event["runs"], "a") as runs:
        runs.write("x")
    raise RuntimeError("always")
"""


@pytest.fixture(scope="module")
def async_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Short retry delays and queue waits, so retries happen within a test's time."""
    running = Platform(tmp_path_factory.mktemp("async"),
                       env={"KAMBDA_ASYNC_RETRY_BASE": "0.05", "KAMBDA_QUEUE_TIMEOUT": "5"}).start()
    yield running
    running.stop()


def deploy(lam, code: str, **params: object) -> str:  # type: ignore[no-untyped-def]
    name = unique("async")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": code})}, **params)
    return name


async def send_events(url: str, name: str, events: list[dict]) -> list[int]:
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession() as session:
        async def one(event: dict) -> int:
            async with sem, session.post(f"{url}/2015-03-31/functions/{name}/invocations",
                                         data=json.dumps(event), headers={"X-Amz-Invocation-Type": "Event"}) as r:
                return r.status

        return await asyncio.gather(*(one(e) for e in events))


def ledger(directory: Path) -> Counter[int]:
    path = directory / "ledger"
    return Counter(int(line) for line in path.read_text().split()) if path.exists() else Counter()


def metric(platform: Platform, line_start: str) -> float:
    for line in platform.metrics().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_thousand_events_with_failures_all_succeed_exactly_once(async_platform, tmp_path) -> None:
    lam = async_platform.lambda_client()
    name = deploy(lam, FLAKY)
    statuses = asyncio.run(send_events(async_platform.url, name,
                                       [{"i": i, "dir": str(tmp_path)} for i in range(1000)]))
    assert statuses == [202] * 1000
    wait_for(lambda: len(ledger(tmp_path)) == 1000, timeout=180, what="every event to succeed")
    assert ledger(tmp_path) == Counter(range(1000))  # each succeeded exactly once
    assert len(list(tmp_path.glob("failed-*"))) == 334
    wait_for(lambda: metric(async_platform, f'kambda_async_retries_total{{function="{name}"}}') == 334,
             what="the retries to be counted")


def test_no_retries_sends_the_failure_to_the_destination(async_platform, tmp_path) -> None:
    lam = async_platform.lambda_client()
    records = tmp_path / "records"
    recorder = deploy(lam, RECORDER, Environment={"Variables": {"RECORDS": str(records)}})
    failing = deploy(lam, FAILING)
    recorder_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{recorder}"
    answer = lam.put_function_event_invoke_config(
        FunctionName=failing, MaximumRetryAttempts=0, DestinationConfig={"OnFailure": {"Destination": recorder_arn}})
    assert answer["MaximumRetryAttempts"] == 0
    assert answer["DestinationConfig"]["OnFailure"]["Destination"] == recorder_arn
    runs = tmp_path / "runs"
    response = lam.invoke(FunctionName=failing, InvocationType="Event", Payload=json.dumps({"runs": str(runs)}))
    assert response["StatusCode"] == 202
    wait_for(lambda: records.exists() and records.read_text().strip(), timeout=60, what="the failure record")
    record = json.loads(records.read_text().splitlines()[0])
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    assert record["requestContext"] == {
        "requestId": response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"],
        "functionArn": f"arn:aws:lambda:us-east-1:000000000000:function:{failing}:$LATEST",
        "condition": "RetriesExhausted", "approximateInvokeCount": 1}
    assert record["requestPayload"] == {"runs": str(runs)}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    assert runs.read_text() == "x"  # run once: no retries
    wait_for(lambda: metric(async_platform, f'kambda_async_dropped_total{{function="{failing}",reason="retries"}}')
             == 1, what="the drop to be counted")


def test_success_goes_to_a_nats_subject_destination(async_platform) -> None:
    lam = async_platform.lambda_client()
    name = deploy(lam, "def handler(event, context):\n    return {'doubled': event['n'] * 2}\n")
    subject = f"test.{unique('done')}"
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": f"arn:kambda:nats:::{subject}"}})
    url = async_platform.nats_url()

    async def receive() -> dict:
        nc = await nats.connect(url)
        try:
            sub = await nc.subscribe(subject)
            await nc.flush()
            lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": 21}))
            msg = await sub.next_msg(timeout=30)
            return json.loads(msg.data)
        finally:
            await nc.close()

    record = asyncio.run(receive())
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestPayload"] == {"n": 21} and record["responsePayload"] == {"doubled": 42}


def test_event_invoke_config_api(async_platform) -> None:
    lam = async_platform.lambda_client()
    name = deploy(lam, "def handler(e, c):\n    return 1\n")
    with pytest.raises(ClientError) as excinfo:
        lam.get_function_event_invoke_config(FunctionName=name)
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=120)
    updated = lam.update_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=300)
    assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (1, 300)
    got = lam.get_function_event_invoke_config(FunctionName=name)
    assert (got["MaximumRetryAttempts"], got["MaximumEventAgeInSeconds"]) == (1, 300)
    for destination in ("arn:aws:lambda:us-east-1:000000000000:function:no-such-fn", "arn:aws:sqs:x:y:z",
                        "arn:kambda:nats:::kambda.sync.evil"):
        with pytest.raises(ClientError) as excinfo:
            lam.put_function_event_invoke_config(
                FunctionName=name, DestinationConfig={"OnFailure": {"Destination": destination}})
        assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValueException", destination
    lam.delete_function_event_invoke_config(FunctionName=name)
    with pytest.raises(ClientError):
        lam.get_function_event_invoke_config(FunctionName=name)


def test_async_payload_limit(async_platform) -> None:
    lam = async_platform.lambda_client()
    name = deploy(lam, "def handler(e, c):\n    return 1\n")
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"s": "x" * 262144}))
    assert excinfo.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert lam.invoke(FunctionName=name, InvocationType="Event",
                      Payload=json.dumps({"s": "x" * 200000}))["StatusCode"] == 202


def test_kill_9_of_the_invoker_loses_nothing(async_platform, tmp_path) -> None:
    lam = async_platform.lambda_client()
    name = deploy(lam, LEDGER)
    statuses = asyncio.run(send_events(async_platform.url, name,
                                       [{"i": i, "dir": str(tmp_path), "sleep": 0.05} for i in range(200)]))
    assert statuses == [202] * 200
    wait_for(lambda: len(ledger(tmp_path)) >= 30, what="work under way")
    assert async_platform.proc is not None
    invokers = service_pids(async_platform.proc.pid, "invoker")
    assert len(invokers) == 1
    os.kill(invokers[0], signal.SIGKILL)
    wait_for(lambda: set(ledger(tmp_path)) == set(range(200)), timeout=180, what="every event to run")
    runs = ledger(tmp_path)
    assert max(runs.values()) <= 2  # at least once; twice only for what was running at the kill


def test_events_accepted_before_a_restart_run_after_it(tmp_path) -> None:
    state = tmp_path / "state"
    env = {"KAMBDA_ASYNC_RETRY_BASE": "0.05", "KAMBDA_QUEUE_TIMEOUT": "5"}
    platform = Platform(state, env=env).start()
    try:
        lam = platform.lambda_client()
        name = deploy(lam, LEDGER)
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)  # nothing runs yet
        statuses = asyncio.run(send_events(platform.url, name, [{"i": i, "dir": str(tmp_path)} for i in range(50)]))
        assert statuses == [202] * 50
    finally:
        assert platform.stop() == 0
    assert not ledger(tmp_path)
    platform = Platform(state, env=env).start()
    try:
        platform.lambda_client().delete_function_concurrency(FunctionName=name)
        wait_for(lambda: ledger(tmp_path) == Counter(range(50)), timeout=120, what="the stored events to run")
    finally:
        platform.stop()


def test_dead_letter_target_gets_the_event_after_the_retries(async_platform, tmp_path) -> None:
    lam = async_platform.lambda_client()
    records = tmp_path / "dlq"
    dlq = deploy(lam, RECORDER, Environment={"Variables": {"RECORDS": str(records)}})
    runs = tmp_path / "runs"
    dlq_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{dlq}"
    failing = deploy(lam, FAILING, DeadLetterConfig={"TargetArn": dlq_arn})
    assert lam.get_function_configuration(FunctionName=failing)["DeadLetterConfig"]["TargetArn"].endswith(dlq)
    lam.put_function_event_invoke_config(FunctionName=failing, MaximumRetryAttempts=1)
    lam.invoke(FunctionName=failing, InvocationType="Event", Payload=json.dumps({"runs": str(runs)}))
    wait_for(lambda: records.exists() and records.read_text().strip(), timeout=60, what="the dead letter")
    assert json.loads(records.read_text().splitlines()[0]) == {"runs": str(runs)}  # the event itself
    assert runs.read_text() == "xx"  # the first attempt and one retry


def test_events_survive_a_kill_9_of_the_worker_and_the_controller(tmp_path) -> None:
    """The worker holds the async events it runs, the controller the environments: kill -9 both mid-run;
    kambda up starts them again, and every event runs, none more than twice."""
    out = tmp_path / "out"
    out.mkdir()
    env = {"KAMBDA_ASYNC_RETRY_BASE": "0.05", "KAMBDA_QUEUE_TIMEOUT": "5"}
    platform = Platform(tmp_path / "state", env=env).start()
    try:
        lam = platform.lambda_client()
        name = deploy(lam, LEDGER)
        statuses = asyncio.run(send_events(platform.url, name,
                                           [{"i": i, "dir": str(out), "sleep": 0.1} for i in range(100)]))
        assert statuses == [202] * 100
        wait_for(lambda: len(ledger(out)) >= 10, what="work under way")
        assert platform.proc is not None
        (worker,) = service_pids(platform.proc.pid, "worker")
        (controller,) = service_pids(platform.proc.pid, "controller")
        os.kill(worker, signal.SIGKILL)
        os.kill(controller, signal.SIGKILL)
        assert len(ledger(out)) < 100
        # Events the dead worker held come back once their ack wait (30 s) has passed.
        wait_for(lambda: set(ledger(out)) == set(range(100)), timeout=120, what="every event to run")
        assert max(ledger(out).values()) <= 2
        assert platform.proc.poll() is None  # kambda up lived through it
        assert service_pids(platform.proc.pid, "worker") != [worker]
    finally:
        assert platform.stop() == 0
