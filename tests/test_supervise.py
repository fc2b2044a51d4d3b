"""`kambda up` supervises its parts: the restart policy (pure), and real parts killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from kambda.cli.supervise import RESTART_BACKOFF_S, RestartPolicy, supervise
from kambda.procs import descendants, service_pids
from tests.conftest import Platform, make_zip, unique, wait_for

ECHO = "def handler(event, context):\n    return event\n"


def test_restarts_back_off_along_the_sequence_then_give_up() -> None:
    policy = RestartPolicy()
    t0 = 1000.0
    delays = [policy.failed(t0 + i) for i in range(len(RESTART_BACKOFF_S))]
    assert delays == list(RESTART_BACKOFF_S)
    assert policy.failed(t0 + len(RESTART_BACKOFF_S)) is None


def test_failures_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy(backoff=(0.1, 1.0), window_s=60.0)
    assert policy.failed(0.0) == 0.1
    assert policy.failed(30.0) == 1.0
    assert policy.failed(59.0) is None  # three within a minute
    assert policy.failed(200.0) == 0.1  # a quiet minute later, it starts over
    assert policy.recent == 1


class CrashingPart:
    """A platform whose gateway exits again at once after every restart (a port taken, say)."""

    def __init__(self, restart_fails: bool = False) -> None:
        self.restarts = 0
        self.restart_fails = restart_fails

    async def wait_for_failure(self) -> tuple[str, int]:
        return "gateway", 1

    async def restart(self, name: str) -> None:
        self.restarts += 1
        if self.restart_fails:
            raise RuntimeError(f"the {name} exited during start-up with code 1")

    def why(self, name: str) -> str:
        return "cannot listen"

    def log_of(self, name: str) -> Path:
        return Path(f"/state/logs/{name}.log")


def _supervised(part: CrashingPart, stop: asyncio.Event | None = None) -> tuple[int, list[float], list[str]]:
    slept: list[float] = []
    said: list[str] = []
    now = [1000.0]

    async def sleep(delay: float) -> None:
        slept.append(delay)
        now[0] += delay

    code = asyncio.run(supervise(part, stop or asyncio.Event(), clock=lambda: now[0], sleep=sleep, say=said.append))
    return code, slept, said


@pytest.mark.parametrize("restart_fails", [False, True])
def test_a_part_that_keeps_failing_is_given_up_after_the_backoff_runs_out(restart_fails: bool) -> None:
    part = CrashingPart(restart_fails)
    code, slept, said = _supervised(part)
    assert code == 1
    assert slept == list(RESTART_BACKOFF_S) and part.restarts == len(RESTART_BACKOFF_S)
    assert said[0] == "the gateway exited with code 1: cannot listen; restarting it in 0.1 s " \
                      "(see /state/logs/gateway.log)"
    assert said[-1] == f"the gateway failed {len(RESTART_BACKOFF_S) + 1} times within 60 s; shutting down " \
                       "(see /state/logs/gateway.log)"


def test_a_stop_request_ends_supervision_at_once() -> None:
    stop = asyncio.Event()
    stop.set()
    part = CrashingPart()
    code, slept, said = _supervised(part, stop)
    assert code == 0 and part.restarts == 0


def _answers(lam, name: str) -> object:  # type: ignore[no-untyped-def]
    try:
        return json.loads(lam.invoke(FunctionName=name, Payload=b'{"n": 1}')["Payload"].read())
    except Exception:
        return None


def _nats_pid(up_pid: int) -> int:
    for pid in descendants(up_pid):
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if argv0.endswith(b"nats-server"):
            return pid
    raise AssertionError("no nats-server below kambda up")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_gateway_controller_or_nats_server_is_restarted_and_calls_work_again(tmp_path) -> None:
    platform = Platform(tmp_path / "state").start()
    assert platform.proc is not None
    up = platform.proc.pid
    lam = boto3.client("lambda", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x",
                       config=Config(retries={"total_max_attempts": 1}, read_timeout=10, connect_timeout=2))
    name = unique("survivor")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": ECHO})})

    def echoes() -> bool:
        try:
            payload = lam.invoke(FunctionName=name, Payload=b'{"n": 1}')["Payload"].read()
        except Exception:
            return False
        return json.loads(payload) == {"n": 1}

    try:
        wait_for(echoes, timeout=60, interval=0.2, what="the first call")
        for victim in ("gateway", "controller", "nats-server"):
            pid = _nats_pid(up) if victim == "nats-server" else service_pids(up, victim)[0]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda p=pid: not _alive(p), timeout=10, what=f"the {victim} to die")
            wait_for(echoes, timeout=60, interval=0.2, what=f"a call to work after the {victim} was killed")
            assert platform.proc.poll() is None, platform.logs()
        # The restarted gateway is where it was: the URL printed at start-up still answers.
        assert platform.get_json("/_kambda/health")[0] == 200
        # And the registry still reaches the gateway: a new function, and new code of an old one.
        fresh = unique("after")
        lam.create_function(FunctionName=fresh, Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": make_zip({"app.py": ECHO})})
        wait_for(lambda: _answers(lam, fresh) == {"n": 1}, timeout=30, interval=0.2, what="the new function")
        lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 2\n"}))
        wait_for(lambda: _answers(lam, name) == 2, timeout=30, interval=0.2, what="the new code")
        tree = descendants(up)
    finally:
        code = platform.stop(timeout=20)
    text = "".join(platform.output)
    for victim in ("gateway", "controller", "nats-server"):
        assert f"the {victim} exited with code -9" in text, text
    assert code == 0, text
    wait_for(lambda: not any(_alive(pid) for pid in tree), timeout=10, what="every child to exit")
    assert "Traceback" not in text


def test_kambda_up_still_stops_at_once_while_a_part_is_restarting(tmp_path) -> None:
    platform = Platform(tmp_path / "state").start()
    assert platform.proc is not None
    up = platform.proc.pid
    victim = service_pids(up, "controller")[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not _alive(victim), timeout=10, what="the controller to die")
    wait_for(lambda: len(service_pids(up, "controller")) == 1 and service_pids(up, "controller"),
             timeout=10, what="a new controller")
    tree = descendants(up)
    started = time.monotonic()
    assert platform.stop(timeout=20) == 0
    assert time.monotonic() - started < 10
    wait_for(lambda: not any(_alive(pid) for pid in tree), timeout=10, what="every child to exit")
