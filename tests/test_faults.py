"""Faults that used to lose or delay requests (issue #24): each test asserts exact counts."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from kambda.procs import descendants, service_pids
from tests.conftest import Platform, make_zip, unique, wait_for

ECHO = "def handler(event, context):\n    return event\n"
SLOW_ECHO = "import time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return event\n"

QUEUE_TIMEOUT = 5.0
#: What "at once" allows on a loaded 2-core test machine.
MARGIN_S = 2.0


@pytest.fixture(scope="module")
def one_env_platform(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A platform that runs at most one environment per function, with a 5 s queue timeout."""
    running = Platform(tmp_path_factory.mktemp("faults"),
                       env={"KAMBDA_QUEUE_TIMEOUT": str(QUEUE_TIMEOUT), "KAMBDA_MAX_ENVIRONMENTS": "1"}).start()
    yield running
    running.stop()


def no_retry_client(platform: Platform):  # type: ignore[no-untyped-def]
    """A Lambda client that sends each call once (botocore retries a 429 by default)."""
    return boto3.client("lambda", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x",
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=120, max_pool_connections=32))


def test_a_request_that_cannot_start_in_time_gets_its_429_when_the_queue_timeout_passes(one_env_platform) -> None:
    lam = no_retry_client(one_env_platform)
    name = unique("slow")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Timeout=3,
                        Role="arn:aws:iam::000000000000:role/test",
                        Code={"ZipFile": make_zip({"app.py": "import time\ndef handler(e, c):\n"
                                                             "    time.sleep(2)\n    return e\n"})})
    lam.invoke(FunctionName=name, Payload=b'{"warm": true}')  # one warm environment, no cold start below

    def call(i: int) -> tuple[int, float]:
        sent = time.monotonic()
        try:
            status = lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"]
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "TooManyRequestsException", exc.response
            status = 429
        return status, time.monotonic() - sent

    # One environment, 2 s per run: runs start at about 0, 2 and 4 s; the other three cannot start
    # within the 5 s queue timeout.
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(call, range(6)))
    throttled = [elapsed for status, elapsed in answers if status == 429]
    served = [elapsed for status, elapsed in answers if status == 200]
    assert len(throttled) + len(served) == 6
    assert len(served) >= 2 and len(throttled) >= 2, answers
    late = [elapsed for elapsed in throttled if elapsed > QUEUE_TIMEOUT + MARGIN_S]
    assert late == [], answers
    assert all(elapsed < QUEUE_TIMEOUT + 2 + MARGIN_S for elapsed in served), answers


def _rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def _services_rss_mb(platform: Platform) -> int:
    assert platform.proc is not None
    return sum(_rss_mb(pid) for module in ("gateway", "invoker") for pid in service_pids(platform.proc.pid, module))


SIX_MB = 6291456


def test_sixteen_concurrent_6_mb_calls_lose_nothing_and_hold_no_memory(platform) -> None:
    lam = no_retry_client(platform)
    big, small = unique("big"), unique("small")
    for name, memory in ((big, 1024), (small, 128)):
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                            MemorySize=memory, Timeout=30, Code={"ZipFile": make_zip({"app.py": SLOW_ECHO})})
        lam.invoke(FunctionName=name, Payload=b"{}")
    # Ten warm environments, each with its pull waiting: the large calls below reach them at once.
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: lam.invoke(FunctionName=big, Payload=b'{"sleep": 1}'), range(16)))
    wait_for(lambda: platform.status(big)["environments"] == 10, what="ten environments")
    payload = json.dumps({"s": "x" * (SIX_MB - len(json.dumps({"s": ""})))}).encode()
    assert len(payload) == SIX_MB
    before = _services_rss_mb(platform)

    def call_big(i: int) -> tuple[str, float]:
        sent = time.monotonic()
        try:
            response = lam.invoke(FunctionName=big, Payload=payload)
            body = response["Payload"].read()
            outcome = "ok" if body == payload and "FunctionError" not in response else f"wrong answer {body[:100]!r}"
        except ClientError as exc:
            outcome = exc.response["Error"]["Code"]
        return outcome, time.monotonic() - sent

    small_answers: list[tuple[str, float]] = []
    stop = threading.Event()

    def call_small() -> None:
        for n in range(10_000):  # bounded; stops when the large rounds are done
            if stop.is_set():
                return
            sent = time.monotonic()
            try:
                body = json.loads(lam.invoke(FunctionName=small, Payload=json.dumps({"n": n}))["Payload"].read())
                small_answers.append(("ok" if body == {"n": n} else f"wrong answer {body!r}", time.monotonic() - sent))
            except ClientError as exc:
                small_answers.append((exc.response["Error"]["Code"], time.monotonic() - sent))

    beside = threading.Thread(target=call_small)
    beside.start()
    rounds = 3
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = [answer for _ in range(rounds) for answer in pool.map(call_big, range(16))]
    finally:
        stop.set()
        beside.join(60)
    lost = [answer for answer in answers if answer[0] != "ok"]
    assert len(answers) == 16 * rounds and lost == []
    assert all(elapsed < 30 for _, elapsed in answers), answers
    assert small_answers and [a for a in small_answers if a[0] != "ok"] == []
    assert all(elapsed < 10 for _, elapsed in small_answers), max(small_answers, key=lambda a: a[1])
    nats_log = (platform.state_dir / "nats" / "nats.log").read_text(errors="replace")
    assert "Slow Consumer" not in nats_log
    assert 'kambda_nats_disconnects_total{connection="gateway"} 0.0' in platform.metrics()
    assert 'kambda_nats_disconnects_total{connection="invokers"} 0.0' in platform.metrics()
    # Payload buffers are given back once the calls are answered (they grew by 800 MB and stayed).
    grown = _services_rss_mb(platform) - before
    assert grown < 400, f"gateway and invoker grew by {grown} MB"


def _nats_pid(up_pid: int) -> int:
    for pid in descendants(up_pid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"nats-server"):
                return pid
        except OSError:
            continue
    raise AssertionError("no nats-server below kambda up")


def test_a_request_whose_connection_dropped_is_answered_at_once_and_the_drop_is_logged_and_counted(
        tmp_path) -> None:
    platform = Platform(tmp_path / "state").start()
    try:
        assert platform.proc is not None
        lam = no_retry_client(platform)
        name = unique("long")
        marker = tmp_path / "running"
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r", Timeout=60,
                            Code={"ZipFile": make_zip({"app.py": (
                                "import pathlib, time\n"
                                "def handler(event, context):\n"
                                f"    pathlib.Path({str(marker)!r}).write_text('x')\n"
                                "    time.sleep(50)\n")})})
        answer: list[tuple[str, float]] = []

        def call() -> None:
            try:
                lam.invoke(FunctionName=name, Payload=b"{}")
                answer.append(("ok", time.monotonic()))
            except ClientError as exc:
                answer.append((exc.response["Error"]["Code"], time.monotonic()))

        caller = threading.Thread(target=call)
        caller.start()
        wait_for(marker.exists, timeout=30, what="the function to run")
        os.kill(_nats_pid(platform.proc.pid), signal.SIGKILL)
        killed = time.monotonic()
        caller.join(40)
        assert answer and answer[0][0] == "ServiceException", answer
        assert answer[0][1] - killed < MARGIN_S + 3, "not answered at once"
        log = (platform.state_dir / "logs" / "gateway.log").read_text(errors="replace")
        assert '"level": "WARNING"' in log and "NATS connection of kambda-gateway lost (" in log
        wait_for(lambda: 'kambda_nats_disconnects_total{connection="gateway"} 1.0' in platform.metrics(), timeout=30,
                 what="the disconnect in the gateway's metrics")
    finally:
        platform.stop()
