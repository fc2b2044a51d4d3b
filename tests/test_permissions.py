"""Resource-based policies (AddPermission, RemovePermission, GetPolicy), tags, GetAccountSettings and the
runtime management config, through boto3 against a real `kambda up`."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.conftest import invoke_json, unique

COUNTER = "count = 0\ndef handler(event, context):\n    global count\n    count += 1\n    return count\n"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


def code_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


def test_permissions_are_statements_as_lambda_writes_them(lam, create) -> None:
    name = create(COUNTER)
    s3 = lam.add_permission(FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
                            Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::bucket",
                            SourceAccount="000000000000")
    assert json.loads(s3["Statement"]) == {
        "Sid": "s3", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction", "Resource": ARN + name,
        "Condition": {"StringEquals": {"AWS:SourceAccount": "000000000000"},
                      "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"}}}
    lam.add_permission(FunctionName=name, StatementId="acct", Action="lambda:*", Principal="111122223333")
    lam.add_permission(FunctionName=name, StatementId="url", Action="lambda:InvokeFunctionUrl", Principal="*",
                       FunctionUrlAuthType="NONE")
    policy = lam.get_policy(FunctionName=name)
    document = json.loads(policy["Policy"])
    assert document["Version"] == "2012-10-17" and document["Id"] == "default"
    assert [s["Sid"] for s in document["Statement"]] == ["s3", "acct", "url"]
    assert document["Statement"][1]["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert document["Statement"][2]["Principal"] == "*"
    assert document["Statement"][2]["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}
    assert policy["RevisionId"] == lam.get_function(FunctionName=name)["Configuration"]["RevisionId"]

    with pytest.raises(ClientError) as excinfo:
        lam.add_permission(FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
                           Principal="events.amazonaws.com")
    assert code_of(excinfo) == ("ResourceConflictException", "The statement id (s3) provided already exists. "
                                "Please provide a new statement id, or remove the existing statement.")
    with pytest.raises(ClientError) as excinfo:
        lam.add_permission(FunctionName=name, StatementId="old", Action="lambda:InvokeFunction",
                           Principal="events.amazonaws.com", RevisionId="not-the-current-one")
    assert code_of(excinfo)[0] == "PreconditionFailedException"
    with pytest.raises(ClientError) as excinfo:
        lam.add_permission(FunctionName=name, StatementId="bad", Action="s3:GetObject", Principal="*")
    assert code_of(excinfo)[0] == "ValidationException"

    lam.remove_permission(FunctionName=name, StatementId="acct")
    assert [s["Sid"] for s in json.loads(lam.get_policy(FunctionName=name)["Policy"])["Statement"]] == ["s3", "url"]
    with pytest.raises(ClientError) as excinfo:
        lam.remove_permission(FunctionName=name, StatementId="acct")
    assert code_of(excinfo) == ("ResourceNotFoundException", "Statement acct is not found in resource policy.")
    for sid in ("s3", "url"):
        lam.remove_permission(FunctionName=name, StatementId=sid)
    with pytest.raises(ClientError) as excinfo:
        lam.get_policy(FunctionName=name)
    assert code_of(excinfo) == ("ResourceNotFoundException", "The resource you requested does not exist.")


def test_permissions_of_a_qualifier_are_its_own(lam, create) -> None:
    name = create(COUNTER)
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    added = lam.add_permission(FunctionName=name, Qualifier="live", StatementId="api", Action="lambda:InvokeFunction",
                               Principal="apigateway.amazonaws.com")
    assert json.loads(added["Statement"])["Resource"] == f"{ARN}{name}:live"
    assert [s["Sid"] for s in json.loads(lam.get_policy(FunctionName=name, Qualifier="live")["Policy"])["Statement"]] \
        == ["api"]
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        lam.get_policy(FunctionName=name)  # the function itself has none
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        lam.add_permission(FunctionName=name, Qualifier="nope", StatementId="x", Action="lambda:InvokeFunction",
                           Principal="*")
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        lam.add_permission(FunctionName=unique("missing"), StatementId="x", Action="lambda:InvokeFunction",
                           Principal="*")


def test_tags_belong_to_the_function_and_leave_its_environments_alone(lam, create) -> None:
    name = create(COUNTER, Tags={"team": "data"})
    assert invoke_json(lam, name)[1] == 1
    lam.tag_resource(Resource=ARN + name, Tags={"env": "prod", "team": "ml"})
    assert lam.list_tags(Resource=ARN + name)["Tags"] == {"team": "ml", "env": "prod"}
    lam.untag_resource(Resource=ARN + name, TagKeys=["env", "absent"])
    assert lam.list_tags(Resource=ARN + name)["Tags"] == {"team": "ml"}
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.tag_resource(Resource=ARN + name, Tags={"cost": "42"})
    assert lam.get_function(FunctionName=name, Qualifier=version)["Tags"] == {"team": "ml", "cost": "42"}
    assert invoke_json(lam, name)[1] == 2  # the same warm environment: tagging changed nothing that runs

    for resource, fragment in ((f"{ARN}{name}:{version}", "qualified"), ("arn:aws:s3:::bucket", "tags functions")):
        with pytest.raises(ClientError) as excinfo:
            lam.tag_resource(Resource=resource, Tags={"a": "b"})
        assert code_of(excinfo)[0] == "InvalidParameterValueException" and fragment in code_of(excinfo)[1]
    with pytest.raises(ClientError, match="reserved"):
        lam.tag_resource(Resource=ARN + name, Tags={"aws:owner": "me"})
    with pytest.raises(ClientError, match="tag limit"):
        lam.tag_resource(Resource=ARN + name, Tags={f"k{i}": "v" for i in range(50)})
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        lam.list_tags(Resource=ARN + unique("missing"))


def test_account_settings_count_what_is_deployed(lam, create) -> None:
    before = lam.get_account_settings()
    name = create(COUNTER)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
    after = lam.get_account_settings()
    assert after["AccountUsage"]["FunctionCount"] == before["AccountUsage"]["FunctionCount"] + 1
    assert after["AccountUsage"]["TotalCodeSize"] > before["AccountUsage"]["TotalCodeSize"]
    assert after["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert after["AccountLimit"]["UnreservedConcurrentExecutions"] == \
        before["AccountLimit"]["UnreservedConcurrentExecutions"] - 7


def test_runtime_management_config(lam, create) -> None:
    name = create(COUNTER)
    assert lam.get_runtime_management_config(FunctionName=name)["UpdateRuntimeOn"] == "Auto"
    arn = "arn:aws:lambda:us-east-1::runtime:0123456789abcdef"
    answer = lam.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="Manual", RuntimeVersionArn=arn)
    assert (answer["UpdateRuntimeOn"], answer["RuntimeVersionArn"]) == ("Manual", arn)
    assert answer["FunctionArn"] == ARN + name
    assert lam.get_runtime_management_config(FunctionName=name)["RuntimeVersionArn"] == arn
    with pytest.raises(ClientError, match="InvalidParameterValueException"):
        lam.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="Manual")
    lam.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="FunctionUpdate")
    got = lam.get_runtime_management_config(FunctionName=name)
    assert got["UpdateRuntimeOn"] == "FunctionUpdate" and "RuntimeVersionArn" not in got


CALLER = (
    "import json, boto3, botocore\n"
    "def handler(event, context):\n"
    "    lam = boto3.client('lambda', config=botocore.config.Config(retries={'max_attempts': 1}))\n"
    "    try:\n"
    "        out = lam.invoke(FunctionName=event['target'], **event.get('args', {}))\n"
    "        return {'payload': json.loads(out['Payload'].read())}\n"
    "    except botocore.exceptions.ClientError as exc:\n"
    "        return {'error': exc.response['Error']['Code']}\n"
)


def test_a_function_invokes_another_only_where_its_policy_lets_the_callers_role(lam, create) -> None:
    """A function's calls carry its execution role's credentials, which grant nothing by themselves; the
    target's resource policy (AddPermission) is what lets that role invoke it, qualifier by qualifier."""
    role = "arn:aws:iam::000000000000:role/caller"
    caller = create(CALLER, Role=role, Timeout=20)
    target = create(COUNTER)
    lam.publish_version(FunctionName=target)
    lam.create_alias(FunctionName=target, Name="live", FunctionVersion="1")

    def call(**args: object) -> dict:
        return invoke_json(lam, caller, {"target": target, "args": args})[1]

    assert call() == {"error": "AccessDeniedException"}
    # For triggers: a service principal, or a condition on the source, lets no role in.
    lam.add_permission(FunctionName=target, StatementId="s3", Action="lambda:InvokeFunction",
                       Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::b")
    lam.add_permission(FunctionName=target, StatementId="cond", Action="lambda:InvokeFunction",
                       Principal=role, SourceAccount="000000000000")
    assert call() == {"error": "AccessDeniedException"}
    lam.add_permission(FunctionName=target, StatementId="caller", Action="lambda:InvokeFunction", Principal=role)
    assert call() == {"payload": 1}
    assert call(Qualifier="live") == {"error": "AccessDeniedException"}  # the alias has a policy of its own
    lam.add_permission(FunctionName=target, Qualifier="live", StatementId="acct", Action="lambda:*",
                       Principal="000000000000")
    assert call(Qualifier="live") == {"payload": 1}
    lam.remove_permission(FunctionName=target, StatementId="caller")
    assert call() == {"error": "AccessDeniedException"}
