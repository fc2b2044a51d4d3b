"""The worker tier: replicas share the async, event and mapping consumers, and a dead one's work
goes to the others (real nats-server, controller, invoker, gateway and worker processes)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import aiohttp
import boto3
import nats
from botocore.config import Config

from kambda import bus
from kambda.procs import descendants, service_pids
from tests.conftest import REPO, Platform, alive, free_port, make_zip, unique, wait_for
from worker.settings import WorkerSettings

RECORD_REQUEST_ID = """
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    with open(os.path.join(event["dir"], "ledger"), "a") as ledger:
        ledger.write(context.aws_request_id + "\\n")
"""
RECORD_BODIES = """
import os
def handler(event, context):
    with open(os.environ["OUT"], "a") as ledger:
        ledger.write("".join(record["body"] + "\\n" for record in event["Records"]))
"""
FAST = {"KAMBDA_ASYNC_RETRY_BASE": "0.05", "KAMBDA_QUEUE_TIMEOUT": "5"}


def deploy(lam) -> str:  # type: ignore[no-untyped-def]
    name = unique("worker")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": RECORD_REQUEST_ID})})
    return name


async def send_events(url: str, name: str, events: list[dict]) -> list[tuple[int, str]]:
    """Event invokes, 32 at a time: (status, request id) of each."""
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession() as session:
        async def one(event: dict) -> tuple[int, str]:
            async with sem, session.post(f"{url}/2015-03-31/functions/{name}/invocations",
                                         data=json.dumps(event), headers={"X-Amz-Invocation-Type": "Event"}) as r:
                return r.status, r.headers.get("x-amzn-RequestId", "")

        return await asyncio.gather(*(one(e) for e in events))


def ledger(directory: Path) -> Counter[str]:
    path = directory / "ledger"
    return Counter(path.read_text().split()) if path.exists() else Counter()


def metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def async_settled(url: str) -> bool:
    """Whether the async consumer has nothing left to deliver and nothing unacknowledged (the events
    a dead worker held have come back and run again)."""
    async def look() -> bool:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().consumer_info(bus.ASYNC_STREAM, bus.ASYNC_POLLER)
            return not info.num_pending and not info.num_ack_pending
        finally:
            await nc.close()

    return asyncio.run(look())


async def publish_records(url: str, stream: str, n: int) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[stream.lower()])
        await asyncio.gather(*(js.publish(stream.lower(), str(i).encode()) for i in range(n)))
    finally:
        await nc.close()


def consumer_waiting(url: str, stream: str, consumer: str) -> int:
    """Pull requests waiting on a consumer (a batch loop of some worker each)."""
    async def look() -> int:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().consumer_info(stream, consumer)
            return int(info.num_waiting or 0)
        finally:
            await nc.close()

    return asyncio.run(look())


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


class Worker:
    """A worker replica this test starts itself (beside kambda up's own), so that it can kill it."""

    def __init__(self, platform: Platform, controller: str, log: Path) -> None:
        env = {**os.environ, **FAST, "KAMBDA_NATS_URL": platform.nats_address(), "KAMBDA_CONTROLLER": controller,
               "KAMBDA_WORKER_LISTEN": "127.0.0.1:0", "KAMBDA_NATS_CREDS": platform.nats_creds("worker"),
               "KAMBDA_CONTROLLER_TOKEN_FILE": str(platform.state_dir / "controller" / "token")}
        self._log = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "worker"], stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, env=env, cwd=REPO)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the ready line, or "" when it exits first
        assert line.startswith("kambda-worker ready metrics="), (line, log.read_text())
        self.metrics_url = line.split("=", 1)[1].strip() + "/metrics"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._log.close()


def test_kill_9_of_one_of_two_workers_runs_every_event_at_least_once_and_at_most_twice(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    controller = f"127.0.0.1:{free_port()}"
    platform = Platform(tmp_path / "state", env={**FAST, "KAMBDA_CONTROLLER_LISTEN": controller}).start()
    second: Worker | None = None
    try:
        second = Worker(platform, controller, tmp_path / "worker-2.log")
        lam = platform.lambda_client()
        name = deploy(lam)
        answers = asyncio.run(send_events(platform.url, name,
                                          [{"dir": str(out), "sleep": 0.02} for _ in range(2000)]))
        assert [status for status, _ in answers] == [202] * 2000
        ids = {request_id for _, request_id in answers}
        assert len(ids) == 2000
        succeeded = f'kambda_async_succeeded_total{{function="{name}"}}'
        # Both replicas are taking events when one of them dies.
        wait_for(lambda: metric(scrape(second.metrics_url), succeeded) >= 50, timeout=120,
                 what="the second worker to run events")
        before_kill = sum(ledger(out).values())
        assert before_kill < 2000, "every event ran before the kill: nothing was under way"
        second.proc.send_signal(signal.SIGKILL)
        second.proc.wait(10)
        # What the dead worker held comes back to the other one once its ack wait (30 s) has passed.
        wait_for(lambda: set(ledger(out)) >= ids, timeout=180, what="every event to run")
        wait_for(lambda: async_settled(platform.nats_url()), timeout=120, interval=0.5,
                 what="the dead worker's events to be redelivered and acknowledged")
        runs = ledger(out)
        assert set(runs) == ids
        twice = sorted(n for n in runs.values() if n > 1)
        print(f"\nkill -9 of one of two workers: {len(ids)} events, {before_kill} runs before the kill, "
              f"{sum(runs.values())} runs in all, {len(twice)} events ran twice, most runs of one event "
              f"{max(runs.values())}")
        assert min(runs.values()) >= 1 and max(runs.values()) <= 2  # at least once, at most twice
        assert platform.proc is not None and platform.proc.poll() is None  # kambda up's own worker carried on
    finally:
        if second is not None:
            second.close()
        platform.stop()


def test_up_with_two_workers_splits_events_and_stops_them_all(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    platform = Platform(tmp_path / "state", extra_args=["--workers", "2"], env=FAST).start()
    try:
        assert platform.proc is not None
        workers = service_pids(platform.proc.pid, "worker")
        assert len(workers) == 2
        lam = platform.lambda_client()
        name = deploy(lam)
        answers = asyncio.run(send_events(platform.url, name, [{"dir": str(out)} for _ in range(300)]))
        assert [status for status, _ in answers] == [202] * 300
        wait_for(lambda: sum(ledger(out).values()) >= 300, timeout=120, what="every event to run")
        # The gateway's /metrics holds one series per name: the two workers' counts, added up.
        succeeded = f'kambda_async_succeeded_total{{function="{name}"}}'
        wait_for(lambda: metric(platform.metrics(), succeeded) == 300, what="the runs to be counted")
        assert platform.metrics().count(f"{succeeded} ") == 1

        # The event bus through the same two workers: each event routed once, its target run once.
        events = boto3.client("events", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                              aws_secret_access_key="x", config=Config(retries={"max_attempts": 1}))
        rule = unique("split")
        events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["split"]}))
        events.put_targets(Rule=rule, Targets=[{"Id": "fn", "Arn": f"arn:aws:lambda:us-east-1:000000000000:function:"
                                                                  f"{name}", "Input": json.dumps({"dir": str(out)})}])
        for start in range(0, 200, 10):
            answer = events.put_events(Entries=[{"Source": "split", "DetailType": "t", "Detail": "{}"}] * 10)
            assert answer["FailedEntryCount"] == 0, start
        wait_for(lambda: sum(ledger(out).values()) >= 500, timeout=120, what="every routed event to run")
        wait_for(lambda: async_settled(platform.nats_url()), timeout=60, interval=0.5, what="the async queue to empty")
        assert sum(ledger(out).values()) == 500 and set(ledger(out).values()) == {1}

        # An event source mapping: both workers pull from its one durable consumer; each record once.
        records = tmp_path / "records"
        mapped = unique("esm")
        lam.create_function(FunctionName=mapped, Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": make_zip({"app.py": RECORD_BODIES})},
                            Environment={"Variables": {"OUT": str(records)}})
        stream = f"SPLIT_{mapped.replace('-', '_').upper()}"
        asyncio.run(publish_records(platform.nats_url(), stream, 1000))
        mapping = lam.create_event_source_mapping(
            FunctionName=mapped, EventSourceArn=f"arn:kambda:nats:::stream/{stream}", BatchSize=10,
            ScalingConfig={"MaximumConcurrency": 2})
        wait_for(lambda: records.exists() and len(records.read_text().split()) >= 1000, timeout=120,
                 what="every record to be delivered")
        # Idle again, every loop of both workers waits on the consumer: 2 replicas x 2 loops.
        wait_for(lambda: consumer_waiting(platform.nats_url(), stream, f"esm-{mapping['UUID']}") >= 4, timeout=30,
                 interval=0.2, what="both workers' batch loops to wait on the one consumer")
        assert Counter(records.read_text().split()) == Counter(str(i) for i in range(1000))
        tree = descendants(platform.proc.pid)
        started = time.monotonic()
        assert platform.stop(timeout=20) == 0
        assert time.monotonic() - started < 10
        wait_for(lambda: not any(alive(pid) for pid in tree), timeout=5, what="every child to exit")
    finally:
        platform.stop()


def test_settings_from_a_plain_mapping() -> None:
    settings = WorkerSettings.from_env({"KAMBDA_WORKER_LISTEN": "0.0.0.0:9102", "KAMBDA_WORKER_CONCURRENCY": "8",
                                        "KAMBDA_CONTROLLER": "kambda-controller:50051"})
    assert (settings.listen, settings.concurrency) == ("0.0.0.0:9102", 8)
    assert settings.controller == "kambda-controller:50051"
    for bad, named in (({"KAMBDA_WORKER_LISTEN": "nowhere"}, "KAMBDA_WORKER_LISTEN"),
                       ({"KAMBDA_WORKER_CONCURRENCY": "0"}, "KAMBDA_WORKER_CONCURRENCY")):
        try:
            WorkerSettings.from_env(bad)
        except ValueError as exc:
            assert named in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
