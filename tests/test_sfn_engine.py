"""The executor through boto3 against one shared `kambda up`: Map and Parallel over Lambda tasks, Retry on a durable
timer, Catch of a function's errorType, nested executions (.sync:2), EXPRESS started without waiting, HTTP tasks,
EventBridge's status change events and the worker's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.conftest import Platform, make_zip, unique, wait_for
from tests.test_sfn_api import ROLE, finished, sfn_client

FUNCTION = """
import json, os
def handler(event, context):
    with open(os.environ["LEDGER"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    if event.get("fail_until"):
        seen = [json.loads(l) for l in open(os.environ["LEDGER"])]
        if sum(1 for e in seen if e.get("key") == event["key"]) < event["fail_until"]:
            raise ValueError("not yet")
    if event.get("explode"):
        raise KeyError("boom")
    return {"doubled": event.get("n", 0) * 2}
"""


@pytest.fixture(scope="module")
def sfn(platform: Platform):  # type: ignore[no-untyped-def]
    return sfn_client(platform)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sfn-engine") / "ledger"


@pytest.fixture(scope="module")
def function(platform: Platform, ledger: Path) -> str:
    name = unique("engine")
    platform.lambda_client().create_function(
        FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": FUNCTION})}, Environment={"Variables": {"LEDGER": str(ledger)}})
    return f"arn:aws:lambda:us-east-1:000000000000:function:{name}"


def machine(sfn, definition: dict, kind: str = "STANDARD") -> str:  # type: ignore[no-untyped-def]
    return str(sfn.create_state_machine(name=unique("eng"), definition=json.dumps(definition), roleArn=ROLE,
                                        type=kind)["stateMachineArn"])


def types_of(sfn, arn: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["type"] for e in sfn.get_execution_history(executionArn=arn)["events"]]


def test_map_over_a_lambda_function(sfn, function: str) -> None:  # type: ignore[no-untyped-def]
    arn = machine(sfn, {"StartAt": "Each", "States": {"Each": {
        "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 4,
        "ItemProcessor": {"StartAt": "Double", "States": {"Double": {
            "Type": "Task", "Resource": function, "End": True}}},
        "End": True}}})
    run = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"items": [{"n": i} for i in range(10)]}))
    done = finished(sfn, run["executionArn"])
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"]) == [{"doubled": 2 * i} for i in range(10)]
    types = types_of(sfn, run["executionArn"])
    assert types[:3] == ["ExecutionStarted", "MapStateEntered", "MapStateStarted"]
    assert types.count("MapIterationStarted") == 10 and types.count("MapIterationSucceeded") == 10
    assert types.count("LambdaFunctionSucceeded") == 10
    assert types[-3:] == ["MapStateSucceeded", "MapStateExited", "ExecutionSucceeded"]


def test_parallel_failure_is_caught(sfn, function: str) -> None:  # type: ignore[no-untyped-def]
    arn = machine(sfn, {"StartAt": "Both", "States": {
        "Both": {"Type": "Parallel", "Branches": [
            {"StartAt": "Ok", "States": {"Ok": {"Type": "Pass", "Result": "fine", "End": True}}},
            {"StartAt": "Bad", "States": {"Bad": {"Type": "Task", "Resource": function,
                                                  "Parameters": {"explode": True}, "End": True}}}],
                 "Catch": [{"ErrorEquals": ["KeyError"], "ResultPath": "$.caught", "Next": "Handled"}],
                 "Next": "Unreached"},
        "Unreached": {"Type": "Fail", "Error": "Unreached"},
        "Handled": {"Type": "Pass", "End": True}}})
    run = sfn.start_execution(stateMachineArn=arn, input='{"keep": 1}')
    done = finished(sfn, run["executionArn"])
    assert done["status"] == "SUCCEEDED", done
    output = json.loads(done["output"])
    assert output["keep"] == 1 and output["caught"]["Error"] == "KeyError"
    assert json.loads(output["caught"]["Cause"])["errorType"] == "KeyError"
    types = types_of(sfn, run["executionArn"])
    assert "ParallelStateFailed" in types and "LambdaFunctionFailed" in types
    assert types[-3:] == ["PassStateEntered", "PassStateExited", "ExecutionSucceeded"]


def test_retry_waits_on_a_durable_timer_then_succeeds(sfn, function: str) -> None:  # type: ignore[no-untyped-def]
    arn = machine(sfn, {"StartAt": "Flaky", "States": {"Flaky": {
        "Type": "Task", "Resource": function, "Parameters": {"key": unique("k"), "fail_until": 2, "n": 5},
        "Retry": [{"ErrorEquals": ["ValueError"], "IntervalSeconds": 1, "MaxAttempts": 3}], "End": True}}})
    run = sfn.start_execution(stateMachineArn=arn)
    done = finished(sfn, run["executionArn"])
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"doubled": 10}
    assert types_of(sfn, run["executionArn"]) == [
        "ExecutionStarted", "TaskStateEntered", "LambdaFunctionScheduled", "LambdaFunctionStarted",
        "LambdaFunctionFailed", "LambdaFunctionScheduled", "LambdaFunctionStarted", "LambdaFunctionSucceeded",
        "TaskStateExited", "ExecutionSucceeded"]
    failed = sfn.get_execution_history(executionArn=run["executionArn"])["events"][4]
    assert failed["lambdaFunctionFailedEventDetails"]["error"] == "ValueError"


def test_unhandled_function_error_fails_the_execution(sfn, function: str) -> None:  # type: ignore[no-untyped-def]
    arn = machine(sfn, {"StartAt": "Boom", "States": {"Boom": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function, "Payload": {"explode": True}}, "End": True}}})
    done = finished(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])
    assert done["status"] == "FAILED" and done["error"] == "KeyError"
    missing = machine(sfn, {"StartAt": "Gone", "States": {"Gone": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "no-such-function"}, "End": True}}})
    done = finished(sfn, sfn.start_execution(stateMachineArn=missing)["executionArn"])
    assert done["status"] == "FAILED" and done["error"] == "Lambda.ResourceNotFoundException"


def test_nested_execution_sync(sfn, function: str) -> None:  # type: ignore[no-untyped-def]
    child = machine(sfn, {"StartAt": "Work", "States": {"Work": {
        "Type": "Task", "Resource": function, "Parameters": {"n.$": "$.n"}, "End": True}}})
    parent = machine(sfn, {"StartAt": "Call", "States": {"Call": {
        "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
        "Parameters": {"StateMachineArn": child, "Input": {"n": 21}}, "OutputPath": "$.Output",
        "End": True}}})
    run = sfn.start_execution(stateMachineArn=parent)["executionArn"]
    done = finished(sfn, run)
    assert done["status"] == "SUCCEEDED", sfn.get_execution_history(executionArn=run)["events"]
    assert json.loads(done["output"]) == {"doubled": 42}
    [child_run] = sfn.list_executions(stateMachineArn=child)["executions"]
    assert child_run["status"] == "SUCCEEDED"


def test_express_started_without_waiting_runs(sfn, function: str, ledger: Path) -> None:  # type: ignore[no-untyped-def]
    key = unique("express")
    arn = machine(sfn, {"StartAt": "Go", "States": {"Go": {
        "Type": "Task", "Resource": function, "Parameters": {"key": key}, "End": True}}}, kind="EXPRESS")
    started = sfn.start_execution(stateMachineArn=arn, input="{}")
    assert ":express:" in started["executionArn"]
    wait_for(lambda: key in ledger.read_text(), timeout=30, what="the express execution to run")


def test_http_task(sfn, platform: Platform) -> None:  # type: ignore[no-untyped-def]
    arn = machine(sfn, {"StartAt": "Get", "States": {"Get": {
        "Type": "Task", "Resource": "arn:aws:states:::http:invoke",
        "Parameters": {"ApiEndpoint": platform.url + "/_kambda/health", "Method": "GET"},
        "ResultSelector": {"status.$": "$.StatusCode", "body.$": "$.ResponseBody.status"}, "End": True}}})
    done = finished(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"status": 200, "body": "ok"}


def test_status_change_events_and_metrics(sfn, platform: Platform, function: str, ledger: Path) -> None:  # type: ignore[no-untyped-def]
    eb = boto3.client("events", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x", config=Config(retries={"max_attempts": 1}))
    arn = machine(sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    rule = unique("sfn-status")
    eb.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.states"],
                                                    "detail": {"stateMachineArn": [arn]}}))
    eb.put_targets(Rule=rule, Targets=[{"Id": "t", "Arn": function,
                                        "InputTransformer": {"InputPathsMap": {"s": "$.detail.status",
                                                                               "t": "$.detail-type"},
                                                             "InputTemplate": '{"key": "<t>", "status": "<s>"}'}}])
    run = sfn.start_execution(stateMachineArn=arn)
    assert finished(sfn, run["executionArn"])["status"] == "SUCCEEDED"

    def told() -> set[str]:
        lines = [json.loads(line) for line in ledger.read_text().splitlines()]
        return {e["status"] for e in lines if e.get("key") == "Step Functions Execution Status Change"}

    wait_for(lambda: told() >= {"RUNNING", "SUCCEEDED"}, timeout=30, what="both status changes")
    name = arn.rsplit(":", 1)[1]
    wait_for(lambda: f'kambda_sfn_executions_closed_total{{state_machine="{name}",status="SUCCEEDED"}} 1.0'
             in platform.metrics(), timeout=30, what="the execution to be counted")
    text = platform.metrics()
    assert f'kambda_sfn_executions_started_total{{state_machine="{name}"}} 1.0' in text
    assert f'kambda_sfn_state_transitions_total{{state_machine="{name}"}} 1.0' in text
    assert f'kambda_sfn_execution_duration_seconds_count{{state_machine="{name}"}} 1.0' in text
