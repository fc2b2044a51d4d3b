"""IAM roles with policies (iam/): boto3's iam client creates a role and its policies on `kambda up`,
and a function whose execution role it is may call, with its own AWS_* credentials, what the role's
policies allow and nothing else (an explicit Deny wins; no policy, nothing)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config

from iam.roles import MANAGED, name_of_arn, permissions
from tests.conftest import Platform, invoke_json, unique, wait_for

TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                 "Action": "sts:AssumeRole"}]}
CALLER = """
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

def handler(event, context):
    lam = boto3.client("lambda", endpoint_url=event["endpoint"], region_name="us-east-1",
                       config=Config(retries={"max_attempts": 1}))
    calls = {"target": lambda: lam.get_function_configuration(FunctionName=event["target"]),
             "other": lambda: lam.get_function_configuration(FunctionName=event["other"]),
             "list": lambda: lam.list_functions(MaxItems=1)}
    out = {}
    for what, call in calls.items():
        try:
            call()
            out[what] = "allowed"
        except ClientError as exc:
            out[what] = exc.response["Error"]["Code"]
    return out
"""


def _allow(action: str, resource: str, effect: str = "Allow") -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": effect, "Action": action,
                                                                "Resource": resource}]})


@pytest.fixture(scope="module")
def iam(platform: Platform):  # type: ignore[no-untyped-def]
    return boto3.client("iam", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", config=Config(retries={"max_attempts": 1}))


def test_a_functions_role_policy_decides_what_its_credentials_may_do(platform: Platform, iam, create) -> None:  # type: ignore[no-untyped-def]
    lam = platform.lambda_client()
    role = unique("role")
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    assert arn == f"arn:aws:iam::000000000000:role/{role}"
    target, other = create("def handler(e, c):\n    return 1\n"), create("def handler(e, c):\n    return 2\n")
    caller = create(CALLER, Role=arn, Timeout=30)
    event = {"endpoint": platform.url, "target": target, "other": other}

    def calls() -> dict[str, Any]:
        response, out = invoke_json(lam, caller, event)
        assert "FunctionError" not in response, out
        assert isinstance(out, dict)
        return out

    denied = "AccessDeniedException"
    assert calls() == {"target": denied, "other": denied, "list": denied}  # a role with no policy: nothing
    target_arn = lam.get_function_configuration(FunctionName=target)["FunctionArn"]
    iam.put_role_policy(RoleName=role, PolicyName="read-target",
                        PolicyDocument=_allow("lambda:GetFunctionConfiguration", target_arn))
    wait_for(lambda: calls() == {"target": "allowed", "other": denied, "list": denied}, 30,
             what="the inline policy to allow the target alone")
    iam.attach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/AWSLambda_ReadOnlyAccess")
    wait_for(lambda: calls() == {"target": "allowed", "other": "allowed", "list": "allowed"}, 30,
             what="the managed policy to allow reading every function")
    iam.put_role_policy(RoleName=role, PolicyName="not-target",
                        PolicyDocument=_allow("lambda:GetFunctionConfiguration", target_arn, effect="Deny"))
    wait_for(lambda: calls() == {"target": denied, "other": "allowed", "list": "allowed"}, 30,
             what="the explicit Deny to win")


def test_roles_and_their_policies_through_boto3(iam) -> None:  # type: ignore[no-untyped-def]
    role = unique("role")
    created = iam.create_role(RoleName=role, Path="/service/", AssumeRolePolicyDocument=json.dumps(TRUST),
                              Description="for a test")["Role"]
    got = iam.get_role(RoleName=role)["Role"]
    assert got["Arn"] == created["Arn"] == f"arn:aws:iam::000000000000:role/service/{role}"
    assert got["AssumeRolePolicyDocument"] == TRUST and got["RoleId"].startswith("AROA")  # boto3 decodes it
    assert got["Description"] == "for a test" and got["CreateDate"] == created["CreateDate"]
    assert role in {r["RoleName"] for r in iam.list_roles(PathPrefix="/service/")["Roles"]}
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(TRUST))

    document = _allow("lambda:InvokeFunction", "*")
    iam.put_role_policy(RoleName=role, PolicyName="invoke", PolicyDocument=document)
    assert iam.get_role_policy(RoleName=role, PolicyName="invoke")["PolicyDocument"] == json.loads(document)
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["invoke"]
    conditional = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*",
                                                           "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]}
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):  # never widened by ignoring a part
        iam.put_role_policy(RoleName=role, PolicyName="cond", PolicyDocument=json.dumps(conditional))
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.attach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/NoSuchPolicy")
    iam.attach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/service-role/AWSLambdaRole")
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == [
        {"PolicyName": "AWSLambdaRole", "PolicyArn": "arn:aws:iam::aws:policy/service-role/AWSLambdaRole"}]

    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_role(RoleName=role)
    iam.delete_role_policy(RoleName=role, PolicyName="invoke")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role_policy(RoleName=role, PolicyName="invoke")
    iam.detach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/service-role/AWSLambdaRole")
    iam.delete_role(RoleName=role)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=role)


def test_a_role_is_known_only_in_its_own_account_and_an_empty_one_grants_nothing() -> None:
    assert name_of_arn("arn:aws:iam::000000000000:role/path/to/r", "000000000000") == "r"
    assert name_of_arn("arn:aws:iam::111111111111:role/r", "000000000000") is None
    assert name_of_arn("arn:aws:iam::000000000000:user/r", "000000000000") is None
    none = permissions({"inline": {}, "attached": []})
    assert not none.allows("lambda:InvokeFunction", "*")
    admin = permissions({"inline": {}, "attached": ["arn:aws:iam::aws:policy/AdministratorAccess"]})
    assert admin.allows("events:PutEvents", "arn:aws:events:us-east-1:000000000000:event-bus/default")
    assert all(permissions({"attached": [arn]}).policies for arn in MANAGED)
