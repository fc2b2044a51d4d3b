"""Issue #17's acceptance: running STANDARD executions survive kill -9 of the worker, and of nats-server followed by
a restart of `kambda up` on the same state directory; each Lambda task runs exactly once per execution (the
functions append to a ledger), histories come out complete and in order; a `.waitForTaskToken` callback is
answered with SendTaskSuccess after the worker was restarted."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from kambda.procs import descendants, service_pids
from tests.conftest import Platform, alive, make_zip, unique, wait_for
from tests.test_sfn_api import ROLE, sfn_client

LEDGER = """
import json, os
def handler(event, context):
    with open(os.environ["LEDGER"], "a") as f:
        f.write(json.dumps({"id": event["id"], "step": event["step"]}) + "\\n")
    if event["step"] == "token":
        with open(os.environ["LEDGER"] + "." + event["id"], "w") as f:
            f.write(event["token"])
    return {"id": event["id"], "done": event["step"]}
"""
RUNS = 50


def machine_of(function_arn: str) -> str:
    """Task(Lambda, by its ARN) -> Wait 2 s -> Task(lambda:invoke)."""
    return json.dumps({"StartAt": "One", "States": {
        "One": {"Type": "Task", "Resource": function_arn, "Parameters": {"id.$": "$.id", "step": "one"},
                "ResultPath": "$.one", "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 2, "Next": "Two"},
        "Two": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload": {"id.$": "$.id", "step": "two"}},
                "OutputPath": "$.Payload", "End": True}}})


EXPECTED = ["ExecutionStarted", "TaskStateEntered", "LambdaFunctionScheduled", "LambdaFunctionStarted",
            "LambdaFunctionSucceeded", "TaskStateExited", "WaitStateEntered", "WaitStateExited", "TaskStateEntered",
            "TaskScheduled", "TaskStarted", "TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"]


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


def deploy(platform: Platform, ledger: Path) -> str:
    name = unique("ledger")
    platform.lambda_client().create_function(
        FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": LEDGER})}, Environment={"Variables": {"LEDGER": str(ledger)}})
    return f"arn:aws:lambda:us-east-1:000000000000:function:{name}"


def start_all(sfn, machine: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [sfn.start_execution(stateMachineArn=machine, name=f"run-{i}", input=json.dumps({"id": str(i)}))
            ["executionArn"] for i in range(RUNS)]


def waiting(sfn, arns: list[str]) -> bool:  # type: ignore[no-untyped-def]
    """Every execution is in its Wait state (its first task done, its second not started)."""
    for arn in arns:
        types = [e["type"] for e in sfn.get_execution_history(executionArn=arn)["events"]]
        if "WaitStateEntered" not in types or "WaitStateExited" in types:
            return False
    return True


def assert_all_succeeded_once(sfn, arns: list[str], ledger: Path) -> None:  # type: ignore[no-untyped-def]
    wait_for(lambda: all(sfn.describe_execution(executionArn=a)["status"] == "SUCCEEDED" for a in arns),
             timeout=90, interval=0.5, what="every execution to succeed")
    runs = Counter(tuple(json.loads(line).values()) for line in ledger.read_text().splitlines())
    assert runs == Counter({(str(i), step): 1 for i in range(RUNS) for step in ("one", "two")})
    for arn in arns:
        events = sfn.get_execution_history(executionArn=arn)["events"]
        assert [e["type"] for e in events] == EXPECTED, arn
        assert [e["id"] for e in events] == list(range(1, len(EXPECTED) + 1))
        assert [e["previousEventId"] for e in events] == list(range(len(EXPECTED)))
        assert json.loads(events[-1]["executionSucceededEventDetails"]["output"]) == {
            "id": arn.rsplit("-", 1)[1], "done": "two"}


def test_kill_9_of_the_worker_while_50_executions_run(tmp_path: Path, ledger: Path) -> None:
    platform = Platform(tmp_path / "state").start()
    try:
        assert platform.proc is not None
        sfn = sfn_client(platform)
        machine = sfn.create_state_machine(name=unique("durable"), definition=machine_of(deploy(platform, ledger)),
                                           roleArn=ROLE)["stateMachineArn"]
        arns = start_all(sfn, machine)
        wait_for(lambda: waiting(sfn, arns), timeout=60, interval=0.1, what="every execution to wait")
        [worker] = service_pids(platform.proc.pid, "worker")
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not alive(worker), timeout=10, what="the worker to die")
        assert_all_succeeded_once(sfn, arns, ledger)
        assert service_pids(platform.proc.pid, "worker") != [worker], "kambda up started another worker"
    finally:
        platform.stop()


def test_kill_9_of_nats_server_then_kambda_up_again(tmp_path: Path, ledger: Path) -> None:
    state = tmp_path / "state"
    platform = Platform(state).start()
    try:
        assert platform.proc is not None
        sfn = sfn_client(platform)
        machine = sfn.create_state_machine(name=unique("durable"), definition=machine_of(deploy(platform, ledger)),
                                           roleArn=ROLE)["stateMachineArn"]
        arns = start_all(sfn, machine)
        wait_for(lambda: waiting(sfn, arns), timeout=60, interval=0.1, what="every execution to wait")
        [nats] = [pid for pid in descendants(platform.proc.pid)
                  if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"nats-server")]
        os.kill(nats, signal.SIGKILL)
        wait_for(lambda: not alive(nats), timeout=10, what="nats-server to die")
    finally:
        platform.stop()
    platform = Platform(state).start()
    try:
        assert_all_succeeded_once(sfn_client(platform), arns, ledger)
    finally:
        platform.stop()


def test_callback_answered_after_a_worker_restart(tmp_path: Path, ledger: Path) -> None:
    platform = Platform(tmp_path / "state").start()
    try:
        assert platform.proc is not None
        sfn = sfn_client(platform)
        function = deploy(platform, ledger)
        machine = sfn.create_state_machine(name=unique("callback"), roleArn=ROLE, definition=json.dumps({
            "StartAt": "Ask", "States": {"Ask": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": function,
                               "Payload": {"id": "cb", "step": "token", "token.$": "$$.Task.Token"}},
                "End": True}}}))["stateMachineArn"]
        run = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
        token_file = Path(f"{ledger}.cb")
        wait_for(token_file.exists, timeout=60, what="the function to hand out its token")
        wait_for(lambda: sfn.get_execution_history(executionArn=run)["events"][-1]["type"] == "TaskSubmitted",
                 timeout=30, what="the task to wait for its token")
        [worker] = service_pids(platform.proc.pid, "worker")
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: service_pids(platform.proc.pid, "worker") not in ([], [worker]), timeout=30,
                 what="kambda up to start the worker again")
        sfn.send_task_success(taskToken=token_file.read_text(), output='{"answer": 42}')
        wait_for(lambda: sfn.describe_execution(executionArn=run)["status"] != "RUNNING", timeout=60,
                 what="the execution to close")
        done = sfn.describe_execution(executionArn=run)
        assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"answer": 42}
        types = [e["type"] for e in sfn.get_execution_history(executionArn=run)["events"]]
        assert types == ["ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskSubmitted",
                         "TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"]
        assert ledger.read_text().count('"token"') == 1, "the function ran once"
    finally:
        platform.stop()
