"""Step Functions' API through boto3's stepfunctions client against one shared `kambda up`: state machines,
versions, aliases, executions and their histories, activities, task tokens, and AWS's errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import Platform, unique, wait_for

ROLE = "arn:aws:iam::000000000000:role/sfn"
PASS = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.r",
                                                    "Next": "B"},
                                              "B": {"Type": "Succeed"}}})
FAIL = json.dumps({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "it broke"}}})
WAIT = json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}})
CALLBACK = json.dumps({"StartAt": "T", "States": {"T": {
    "Type": "Task", "Resource": "arn:aws:states:::events:putEvents.waitForTaskToken",
    "Parameters": {"Entries": [{"Source": "sfn.test", "DetailType": "cb",
                                "Detail": {"token.$": "$$.Task.Token"}}]},
    "HeartbeatSeconds": 2, "End": True}}})


def sfn_client(platform: Platform):  # type: ignore[no-untyped-def]
    return boto3.client("stepfunctions", endpoint_url=platform.url, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 1}, read_timeout=120,
                                      inject_host_prefix=False))  # StartSyncExecution: no "sync-" host


@pytest.fixture(scope="module")
def sfn(platform: Platform):  # type: ignore[no-untyped-def]
    return sfn_client(platform)


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture
def machine(sfn) -> Iterator:  # type: ignore[no-untyped-def]
    made: list[str] = []

    def make(definition: str = PASS, kind: str = "STANDARD", **params: object) -> str:
        arn = sfn.create_state_machine(name=unique("sm"), definition=definition, roleArn=ROLE, type=kind,
                                       **params)["stateMachineArn"]
        made.append(arn)
        return str(arn)

    yield make
    for arn in made:
        sfn.delete_state_machine(stateMachineArn=arn)


def finished(sfn, arn: str) -> dict:  # type: ignore[no-untyped-def]
    return wait_for(lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d,
                    timeout=30, what=f"{arn} to close")


def test_state_machine_lifecycle_and_errors(sfn, machine) -> None:  # type: ignore[no-untyped-def]
    arn = machine()
    described = sfn.describe_state_machine(stateMachineArn=arn)
    assert described["definition"] == PASS and described["type"] == "STANDARD" and described["status"] == "ACTIVE"
    assert described["roleArn"] == ROLE
    assert arn in [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]]
    name = described["name"]
    # The same request again is idempotent; another definition under the same name is refused.
    assert sfn.create_state_machine(name=name, definition=PASS, roleArn=ROLE)["stateMachineArn"] == arn
    with pytest.raises(ClientError) as err:
        sfn.create_state_machine(name=name, definition=FAIL, roleArn=ROLE)
    assert code(err) == "StateMachineAlreadyExists"
    updated = sfn.update_state_machine(stateMachineArn=arn, definition=FAIL)
    assert updated["revisionId"] != described["revisionId"]
    assert sfn.describe_state_machine(stateMachineArn=arn)["definition"] == FAIL
    with pytest.raises(ClientError) as err:
        sfn.create_state_machine(name=unique("sm"), definition='{"StartAt": "Nope", "States": {}}', roleArn=ROLE)
    assert code(err) == "InvalidDefinition"
    with pytest.raises(ClientError) as err:
        sfn.create_state_machine(name="bad name!", definition=PASS, roleArn=ROLE)
    assert code(err) == "InvalidName"
    with pytest.raises(ClientError) as err:
        sfn.describe_state_machine(stateMachineArn=arn + "-gone")
    assert code(err) == "StateMachineDoesNotExist"
    with pytest.raises(ClientError) as err:
        sfn.describe_state_machine(stateMachineArn="not-an-arn")
    assert code(err) == "InvalidArn"


def test_validate_definition(sfn) -> None:  # type: ignore[no-untyped-def]
    assert sfn.validate_state_machine_definition(definition=PASS)["result"] == "OK"
    bad = sfn.validate_state_machine_definition(
        definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}))
    assert bad["result"] == "FAIL"
    assert bad["diagnostics"][0]["code"] == "MISSING_TRANSITION_TARGET"
    assert bad["diagnostics"][0]["location"] == "/States/A/Next"


def test_execution_succeeds_with_its_history(sfn, machine) -> None:  # type: ignore[no-untyped-def]
    arn = machine()
    started = sfn.start_execution(stateMachineArn=arn, name="run-1", input='{"a": 1}')
    done = finished(sfn, started["executionArn"])
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"]) == {"a": 1, "r": {"x": 1}}
    events = sfn.get_execution_history(executionArn=started["executionArn"])["events"]
    assert [e["type"] for e in events] == ["ExecutionStarted", "PassStateEntered", "PassStateExited",
                                           "SucceedStateEntered", "SucceedStateExited", "ExecutionSucceeded"]
    assert [e["id"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e["previousEventId"] for e in events] == [0, 1, 2, 3, 4, 5]
    assert events[1]["stateEnteredEventDetails"] == {"name": "A", "input": '{"a":1}',
                                                     "inputDetails": {"truncated": False}}
    assert json.loads(events[-1]["executionSucceededEventDetails"]["output"]) == {"a": 1, "r": {"x": 1}}
    reverse = sfn.get_execution_history(executionArn=started["executionArn"], reverseOrder=True, maxResults=2)
    assert [e["id"] for e in reverse["events"]] == [6, 5] and reverse["nextToken"]
    rest = sfn.get_execution_history(executionArn=started["executionArn"], reverseOrder=True, maxResults=10,
                                     nextToken=reverse["nextToken"])
    assert [e["id"] for e in rest["events"]] == [4, 3, 2, 1]
    bare = sfn.get_execution_history(executionArn=started["executionArn"], includeExecutionData=False)["events"]
    assert "input" not in bare[1]["stateEnteredEventDetails"]
    for_execution = sfn.describe_state_machine_for_execution(executionArn=started["executionArn"])
    assert for_execution["stateMachineArn"] == arn and for_execution["definition"] == PASS


def test_start_is_idempotent_by_name_and_input(sfn, machine) -> None:  # type: ignore[no-untyped-def]
    arn = machine(WAIT)
    first = sfn.start_execution(stateMachineArn=arn, name="same", input="{}")
    again = sfn.start_execution(stateMachineArn=arn, name="same", input="{}")
    assert again["executionArn"] == first["executionArn"]
    with pytest.raises(ClientError) as err:
        sfn.start_execution(stateMachineArn=arn, name="same", input='{"other": 1}')
    assert code(err) == "ExecutionAlreadyExists"
    with pytest.raises(ClientError) as err:
        sfn.start_execution(stateMachineArn=arn, input="{not json")
    assert code(err) == "InvalidExecutionInput"
    with pytest.raises(ClientError) as err:
        sfn.start_execution(stateMachineArn=arn + "x", input="{}")
    assert code(err) == "StateMachineDoesNotExist"
    sfn.stop_execution(executionArn=first["executionArn"], error="Stopped", cause="by the test")
    stopped = sfn.describe_execution(executionArn=first["executionArn"])
    assert stopped["status"] == "ABORTED" and stopped["error"] == "Stopped"
    events = sfn.get_execution_history(executionArn=first["executionArn"])["events"]
    assert events[-1]["type"] == "ExecutionAborted"
    assert events[-1]["executionAbortedEventDetails"] == {"error": "Stopped", "cause": "by the test"}


def test_failure_list_filters_and_paging(sfn, machine) -> None:  # type: ignore[no-untyped-def]
    arn = machine(FAIL)
    arns = [sfn.start_execution(stateMachineArn=arn, name=f"f{i}")["executionArn"] for i in range(3)]
    for one in arns:
        done = finished(sfn, one)
        assert (done["status"], done["error"], done["cause"]) == ("FAILED", "Boom", "it broke")
    events = sfn.get_execution_history(executionArn=arns[0])["events"]
    assert [e["type"] for e in events] == ["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]
    assert events[-1]["executionFailedEventDetails"] == {"error": "Boom", "cause": "it broke"}
    page = sfn.list_executions(stateMachineArn=arn, statusFilter="FAILED", maxResults=2)
    assert len(page["executions"]) == 2 and page["nextToken"]
    rest = sfn.list_executions(stateMachineArn=arn, statusFilter="FAILED", nextToken=page["nextToken"])
    assert {e["executionArn"] for e in page["executions"] + rest["executions"]} == set(arns)
    assert sfn.list_executions(stateMachineArn=arn, statusFilter="SUCCEEDED")["executions"] == []
    with pytest.raises(ClientError) as err:
        sfn.describe_execution(executionArn=arns[0] + "nope")
    assert code(err) == "ExecutionDoesNotExist"


def test_express_sync_execution(sfn, machine) -> None:  # type: ignore[no-untyped-def]
    arn = machine(PASS, "EXPRESS")
    answer = sfn.start_sync_execution(stateMachineArn=arn, input='{"a": 2}')
    assert answer["status"] == "SUCCEEDED" and json.loads(answer["output"]) == {"a": 2, "r": {"x": 1}}
    failing = machine(FAIL, "EXPRESS")
    answer = sfn.start_sync_execution(stateMachineArn=failing, input="{}")
    assert (answer["status"], answer["error"], answer["cause"]) == ("FAILED", "Boom", "it broke")
    standard = machine(PASS)
    with pytest.raises(ClientError) as err:
        sfn.start_sync_execution(stateMachineArn=standard, input="{}")
    assert code(err) == "StateMachineTypeNotSupported"


def test_versions_and_aliases(sfn, machine) -> None:  # type: ignore[no-untyped-def]
    arn = machine(PASS)
    v1 = sfn.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"]
    assert v1 == arn + ":1"
    sfn.update_state_machine(stateMachineArn=arn, definition=FAIL)
    v2 = sfn.publish_state_machine_version(stateMachineArn=arn, description="fails")["stateMachineVersionArn"]
    assert v2 == arn + ":2"
    assert [v["stateMachineVersionArn"] for v in
            sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]] == [v2, v1]
    assert sfn.describe_state_machine(stateMachineArn=v1)["definition"] == PASS
    alias = sfn.create_state_machine_alias(name="live", routingConfiguration=[
        {"stateMachineVersionArn": v1, "weight": 100}])["stateMachineAliasArn"]
    assert alias == arn + ":live"
    run = sfn.start_execution(stateMachineArn=alias, input="{}")
    done = finished(sfn, run["executionArn"])
    assert done["status"] == "SUCCEEDED" and done["stateMachineAliasArn"] == alias
    assert done["stateMachineVersionArn"] == v1
    sfn.update_state_machine_alias(stateMachineAliasArn=alias, routingConfiguration=[
        {"stateMachineVersionArn": v1, "weight": 0}, {"stateMachineVersionArn": v2, "weight": 100}])
    assert finished(sfn, sfn.start_execution(stateMachineArn=alias)["executionArn"])["status"] == "FAILED"
    with pytest.raises(ClientError) as err:
        sfn.update_state_machine_alias(stateMachineAliasArn=alias, routingConfiguration=[
            {"stateMachineVersionArn": v1, "weight": 50}])
    assert code(err) == "ValidationException"
    assert [a["stateMachineAliasArn"] for a in
            sfn.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"]] == [alias]
    with pytest.raises(ClientError) as err:
        sfn.delete_state_machine_version(stateMachineVersionArn=v2)
    assert code(err) == "ConflictException"
    sfn.delete_state_machine_alias(stateMachineAliasArn=alias)
    with pytest.raises(ClientError) as err:
        sfn.describe_state_machine_alias(stateMachineAliasArn=alias)
    assert code(err) == "ResourceNotFound"


def test_tags(sfn, machine) -> None:  # type: ignore[no-untyped-def]
    arn = machine(PASS, tags=[{"key": "team", "value": "a"}])
    sfn.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "test"}])
    assert sfn.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "env", "value": "test"},
                                                                    {"key": "team", "value": "a"}]
    sfn.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert sfn.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "env", "value": "test"}]
    with pytest.raises(ClientError) as err:
        sfn.list_tags_for_resource(resourceArn=arn + "-gone")
    assert code(err) == "ResourceNotFound"


def test_activity_worker_answers_its_task(sfn, machine) -> None:  # type: ignore[no-untyped-def]
    activity = sfn.create_activity(name=unique("act"))["activityArn"]
    assert sfn.describe_activity(activityArn=activity)["activityArn"] == activity
    assert activity in [a["activityArn"] for a in sfn.list_activities()["activities"]]
    arn = machine(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": activity,
                                                              "End": True}}}))
    run = sfn.start_execution(stateMachineArn=arn, input='{"job": 7}')
    task = sfn.get_activity_task(activityArn=activity, workerName="w1")
    assert json.loads(task["input"]) == {"job": 7}
    sfn.send_task_heartbeat(taskToken=task["taskToken"])
    sfn.send_task_success(taskToken=task["taskToken"], output='{"done": true}')
    done = finished(sfn, run["executionArn"])
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"done": True}
    types = [e["type"] for e in sfn.get_execution_history(executionArn=run["executionArn"])["events"]]
    assert types == ["ExecutionStarted", "TaskStateEntered", "ActivityScheduled", "ActivitySucceeded",
                     "TaskStateExited", "ExecutionSucceeded"]
    with pytest.raises(ClientError) as err:
        sfn.send_task_success(taskToken=task["taskToken"], output="{}")
    assert code(err) == "TaskDoesNotExist"
    with pytest.raises(ClientError) as err:
        sfn.send_task_success(taskToken="garbage!", output="{}")
    assert code(err) == "InvalidToken"
    sfn.delete_activity(activityArn=activity)
    with pytest.raises(ClientError) as err:
        sfn.describe_activity(activityArn=activity)
    assert code(err) == "ActivityDoesNotExist"


def test_heartbeat_timeout_fails_the_task(sfn, machine, platform: Platform) -> None:  # type: ignore[no-untyped-def]
    arn = machine(CALLBACK)
    run = sfn.start_execution(stateMachineArn=arn, input="{}")
    done = finished(sfn, run["executionArn"])
    assert done["status"] == "FAILED" and done["error"] == "States.HeartbeatTimeout"
    events = sfn.get_execution_history(executionArn=run["executionArn"])["events"]
    assert [e["type"] for e in events] == ["ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted",
                                           "TaskSubmitted", "TaskTimedOut", "ExecutionFailed"]
    assert events[5]["taskTimedOutEventDetails"]["error"] == "States.HeartbeatTimeout"


def test_redrive_reruns_what_failed(sfn, machine) -> None:  # type: ignore[no-untyped-def]
    definition = json.dumps({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "Check"},
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.go", "BooleanEquals": True, "Next": "Done"}],
                  "Default": "Stop"},
        "Stop": {"Type": "Fail", "Error": "NotYet"},
        "Done": {"Type": "Succeed"}}})
    arn = machine(definition)
    run = sfn.start_execution(stateMachineArn=arn, input='{"go": false}')
    assert finished(sfn, run["executionArn"])["status"] == "FAILED"
    with pytest.raises(ClientError) as err:
        sfn.redrive_execution(executionArn=run["executionArn"].replace(run["executionArn"][-4:], "zzzz"))
    assert code(err) == "ExecutionDoesNotExist"
    sfn.redrive_execution(executionArn=run["executionArn"])
    again = finished(sfn, run["executionArn"])
    assert again["status"] == "FAILED" and again["redriveCount"] == 1
    types = [e["type"] for e in sfn.get_execution_history(executionArn=run["executionArn"])["events"]]
    assert types.count("PassStateEntered") == 1, "the state that succeeded is not run again"
    assert "ExecutionRedriven" in types
