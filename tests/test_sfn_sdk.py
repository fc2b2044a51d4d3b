"""Step Functions' AWS SDK integrations against the shared `kambda up`: the optimized ``dynamodb:*`` tasks and
``aws-sdk:dynamodb:*``, STANDARD and EXPRESS, called as the state machine's role (its IAM policy decides), with
the services' errors named as AWS names them and caught by Catch."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.conftest import Platform, unique, wait_for
from tests.test_sfn_api import finished, sfn_client

TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "states.amazonaws.com"}}]}


def _client(platform: Platform, service: str) -> Any:
    return boto3.client(service, endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", config=Config(retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def sfn(platform: Platform):  # type: ignore[no-untyped-def]
    return sfn_client(platform)


@pytest.fixture(scope="module")
def table(platform: Platform) -> Any:
    ddb = _client(platform, "dynamodb")
    name = unique("sfn-sdk")
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    yield name
    ddb.delete_table(TableName=name)


def role(platform: Platform, table: str | None) -> str:
    """A role that may use ``table`` (None: a role with no policy, which may do nothing)."""
    iam = _client(platform, "iam")
    name = unique("sfn-role")
    arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"])
    if table is not None:
        resource = f"arn:aws:dynamodb:us-east-1:000000000000:table/{table}"
        iam.put_role_policy(RoleName=name, PolicyName="table", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "dynamodb:*", "Resource": resource}]}))
    return arn


def put_then_get(table: str) -> str:
    return json.dumps({"StartAt": "Put", "States": {
        "Put": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem", "ResultPath": None,
                "Parameters": {"TableName": table, "Item": {"id": {"S.$": "$.id"}, "n": {"N": "7"}},
                               "ConditionExpression": "attribute_not_exists(id)"},
                "Catch": [{"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "ResultPath": "$.error",
                           "Next": "Get"}],
                "Next": "Get"},
        "Get": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:dynamodb:getItem",
                "Parameters": {"TableName": table, "Key": {"id": {"S.$": "$.id"}}},
                "ResultSelector": {"n.$": "$.Item.n.N", "id.$": "$.Item.id.S"}, "ResultPath": "$.got", "End": True}}})


def test_dynamodb_tasks_as_the_machines_role(sfn, platform: Platform, table: str) -> None:  # type: ignore[no-untyped-def]
    machine = sfn.create_state_machine(name=unique("sdk"), roleArn=role(platform, table),
                                       definition=put_then_get(table))["stateMachineArn"]

    def run(item: str) -> dict:
        arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"id": item}))["executionArn"]
        return finished(sfn, arn)

    # the role's policy reaches the gateway's cache soon after it is put: wait for the first success
    first = wait_for(lambda: (d := run(unique("item")))["status"] == "SUCCEEDED" and d, timeout=30,
                     what="the role's policy to allow the table")
    item = json.loads(first["input"])["id"]
    assert json.loads(first["output"]) == {"id": item, "got": {"n": "7", "id": item}}
    assert _client(platform, "dynamodb").get_item(TableName=table, Key={"id": {"S": item}})["Item"]["n"] == {"N": "7"}
    again = run(item)  # the item exists: the conditional put fails and Catch takes DynamoDB's error
    output = json.loads(again["output"])
    assert again["status"] == "SUCCEEDED" and output["error"]["Error"] == "DynamoDB.ConditionalCheckFailedException"
    assert output["got"] == {"n": "7", "id": item}
    history = sfn.get_execution_history(executionArn=again["executionArn"])["events"]
    failed = [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]
    assert [(f["resourceType"], f["resource"]) for f in failed] == [("dynamodb", "putItem")]
    scheduled = [e["taskScheduledEventDetails"] for e in history if e["type"] == "TaskScheduled"]
    assert [(s["resourceType"], s["resource"]) for s in scheduled] == [("dynamodb", "putItem"),
                                                                      ("aws-sdk:dynamodb", "getItem")]


def test_express_sdk_task_and_a_role_without_permission(sfn, platform: Platform, table: str) -> None:  # type: ignore[no-untyped-def]
    definition = json.dumps({"StartAt": "Get", "States": {"Get": {
        "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:dynamodb:getItem", "End": True,
        "Parameters": {"TableName": table, "Key": {"id": {"S": "nothing-here"}}}}}})
    allowed = sfn.create_state_machine(name=unique("sdk-x"), roleArn=role(platform, table), type="EXPRESS",
                                       definition=definition)["stateMachineArn"]
    answer = wait_for(lambda: (a := sfn.start_sync_execution(stateMachineArn=allowed))["status"] == "SUCCEEDED" and a,
                      timeout=30, what="the role's policy to allow the table")
    assert json.loads(answer["output"]) == {}  # no such item: GetItem answers without one
    denied = sfn.create_state_machine(name=unique("sdk-d"), roleArn=role(platform, None), type="EXPRESS",
                                      definition=definition)["stateMachineArn"]
    answer = sfn.start_sync_execution(stateMachineArn=denied)
    assert (answer["status"], answer["error"]) == ("FAILED", "DynamoDb.AccessDeniedException")


def test_unknown_actions_and_bad_parameters(sfn, platform: Platform, table: str) -> None:  # type: ignore[no-untyped-def]
    arn = role(platform, table)
    task = {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:dynamodb:getThing", "End": True, "Parameters": {}}
    answer = sfn.test_state(definition=json.dumps(task), roleArn=arn, input="{}")
    assert answer["status"] == "FAILED" and answer["error"] == "States.Runtime"
    task = {**task, "Resource": "arn:aws:states:::aws-sdk:dynamodb:getItem", "Parameters": {"TableName": table}}
    answer = sfn.test_state(definition=json.dumps(task), roleArn=arn, input="{}")
    assert (answer["status"], answer["error"]) == ("FAILED", "DynamoDb.ValidationException")
    assert "Key" in answer["cause"]
