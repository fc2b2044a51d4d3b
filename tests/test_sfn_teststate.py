"""TestState through boto3 against the shared `kambda up`: each state type, inspection data, the mock, retriers
and catchers judged without retrying, a real Lambda task, and the errors for what TestState does not run."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Platform, make_zip, unique
from tests.test_sfn_api import ROLE, sfn_client

DOUBLE = "def handler(event, context):\n    return {'doubled': event['n'] * 2}\n"


@pytest.fixture(scope="module")
def sfn(platform: Platform):  # type: ignore[no-untyped-def]
    return sfn_client(platform)


def test(sfn, state: dict, given: object = None, **extra: object) -> dict:  # type: ignore[no-untyped-def]
    return sfn.test_state(definition=json.dumps(state), roleArn=ROLE,
                          input=json.dumps({} if given is None else given), **extra)


test.__test__ = False  # type: ignore[attr-defined]


def test_a_pass_state_with_every_processing_step_inspected(sfn) -> None:  # type: ignore[no-untyped-def]
    state = {"Type": "Pass", "InputPath": "$.order", "Parameters": {"id.$": "$.id", "fixed": 1},
             "ResultPath": "$.out", "OutputPath": "$.out", "Next": "Ship"}
    answer = test(sfn, state, {"order": {"id": 7, "other": True}}, inspectionLevel="DEBUG")
    assert answer["status"] == "SUCCEEDED" and answer["nextState"] == "Ship"
    assert json.loads(answer["output"]) == {"id": 7, "fixed": 1}
    data = {k: json.loads(v) for k, v in answer["inspectionData"].items()}
    assert data["input"] == {"order": {"id": 7, "other": True}}
    assert data["afterInputPath"] == {"id": 7, "other": True}
    assert data["afterParameters"] == {"id": 7, "fixed": 1}
    # ResultPath places the result into the state's own input, not into what InputPath selected
    assert data["afterResultPath"] == {"order": {"id": 7, "other": True}, "out": {"id": 7, "fixed": 1}}
    plain = test(sfn, state, {"order": {"id": 7}})
    assert "inspectionData" not in plain and json.loads(plain["output"]) == {"id": 7, "fixed": 1}


def test_choice_wait_succeed_and_fail(sfn) -> None:  # type: ignore[no-untyped-def]
    choice = {"Type": "Choice", "Default": "Small",
              "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}]}
    assert test(sfn, choice, {"n": 11})["nextState"] == "Big"
    assert test(sfn, choice, {"n": 1})["nextState"] == "Small"
    waited = test(sfn, {"Type": "Wait", "Seconds": 3600, "Next": "After"}, {"a": 1})  # answered without waiting
    assert waited["status"] == "SUCCEEDED" and waited["nextState"] == "After" and json.loads(waited["output"]) == {
        "a": 1}
    done = test(sfn, {"Type": "Succeed"}, {"b": 2})
    assert done["status"] == "SUCCEEDED" and "nextState" not in done
    failed = test(sfn, {"Type": "Fail", "Error": "Broke", "Cause": "on purpose"})
    assert (failed["status"], failed["error"], failed["cause"]) == ("FAILED", "Broke", "on purpose")


def test_a_mocked_task_is_judged_once_against_its_retriers_and_catchers(sfn) -> None:  # type: ignore[no-untyped-def]
    task = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True,
            "Parameters": {"FunctionName": "nowhere", "Payload.$": "$"}, "ResultSelector": {"code.$": "$.code"}}
    ok = test(sfn, task, {"x": 1}, mock={"result": json.dumps({"code": 200, "noise": 1})}, inspectionLevel="DEBUG")
    assert ok["status"] == "SUCCEEDED" and json.loads(ok["output"]) == {"code": 200}
    assert json.loads(ok["inspectionData"]["result"]) == {"code": 200, "noise": 1}
    assert json.loads(ok["inspectionData"]["afterResultSelector"]) == {"code": 200}
    error = {"errorOutput": {"error": "Lambda.TooManyRequestsException", "cause": "busy"}}
    retried = {**task, "Retry": [{"ErrorEquals": ["States.Timeout"]},
                                 {"ErrorEquals": ["Lambda.TooManyRequestsException"], "IntervalSeconds": 3}]}
    answer = test(sfn, retried, mock=error, inspectionLevel="DEBUG")
    assert (answer["status"], answer["error"], answer["cause"]) == ("RETRIABLE", "Lambda.TooManyRequestsException",
                                                                    "busy")
    assert answer["inspectionData"]["errorDetails"] == {"retryIndex": 1, "retryBackoffIntervalSeconds": 3}
    caught = {**task, "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recover"}]}
    answer = test(sfn, caught, {"keep": True}, mock=error, inspectionLevel="DEBUG")
    assert answer["status"] == "CAUGHT_ERROR" and answer["nextState"] == "Recover"
    assert json.loads(answer["output"]) == {"keep": True, "error": {"Error": "Lambda.TooManyRequestsException",
                                                                    "Cause": "busy"}}
    assert answer["inspectionData"]["errorDetails"] == {"catchIndex": 0}
    plain = test(sfn, task, mock=error)
    assert (plain["status"], plain["error"]) == ("FAILED", "Lambda.TooManyRequestsException")


def test_a_task_calls_the_real_function(sfn, platform: Platform) -> None:  # type: ignore[no-untyped-def]
    name = unique("teststate")
    lam = platform.lambda_client()
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"app.py": DOUBLE})})
    try:
        answer = test(sfn, {"Type": "Task", "Resource": f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
                            "End": True}, {"n": 21})
        assert answer["status"] == "SUCCEEDED" and json.loads(answer["output"]) == {"doubled": 42}
    finally:
        lam.delete_function(FunctionName=name)


def test_jsonata_assign_sees_the_given_variables(sfn) -> None:  # type: ignore[no-untyped-def]
    state = {"Type": "Pass", "QueryLanguage": "JSONata", "Assign": {"total": "{% $total + $states.input.n %}"},
             "Output": "{% $total + $states.input.n %}", "End": True}
    answer = test(sfn, state, {"n": 5}, variables=json.dumps({"total": 10}), inspectionLevel="DEBUG")
    assert answer["status"] == "SUCCEEDED" and json.loads(answer["output"]) == 15
    assert json.loads(answer["inspectionData"]["variables"]) == {"total": 15}


def test_a_state_of_a_whole_machine_by_name(sfn) -> None:  # type: ignore[no-untyped-def]
    machine = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"},
                                          "B": {"Type": "Pass", "Result": "from B", "End": True}}}
    answer = sfn.test_state(definition=json.dumps(machine), stateName="B", roleArn=ROLE, input="{}")
    assert json.loads(answer["output"]) == "from B"


@pytest.mark.parametrize("definition", [
    json.dumps({"Type": "Map", "ItemProcessor": {"StartAt": "X", "States": {"X": {"Type": "Succeed"}}},
                "End": True}),
    json.dumps({"Type": "Pass", "Nxt": "typo"}),
    "not json",
])
def test_what_teststate_does_not_run_is_refused(sfn, definition: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as caught:
        sfn.test_state(definition=definition, roleArn=ROLE, input="{}")
    assert caught.value.response["Error"]["Code"] in ("InvalidDefinition", "ValidationException")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
