"""Function names, qualifiers and ARNs as AWS parses them."""

from __future__ import annotations

import os
import uuid

import pytest

from kambda.aws import errors
from kambda.names import Arns, FunctionRef, new_request_id, parse_function


@pytest.mark.parametrize(("given", "qualifier", "expected"), [
    ("hello", None, FunctionRef("hello", None)),
    ("hello", "$LATEST", FunctionRef("hello", "$LATEST")),
    ("hello", "", FunctionRef("hello", None)),
    ("arn:aws:lambda:us-east-1:123456789012:function:hello", None, FunctionRef("hello", None)),
    ("arn:aws:lambda:us-east-1:123456789012:function:hello:7", None, FunctionRef("hello", "7")),
    ("arn:aws:lambda:us-east-1:123456789012:function:hello:$LATEST", "$LATEST", FunctionRef("hello", "$LATEST")),
    ("123456789012:function:my_fn-2", None, FunctionRef("my_fn-2", None)),
    ("x" * 64, None, FunctionRef("x" * 64, None)),
])
def test_valid_references(given: str, qualifier: str | None, expected: FunctionRef) -> None:
    assert parse_function(given, qualifier) == expected


@pytest.mark.parametrize(("given", "qualifier", "error"), [
    ("bad name", None, errors.Validation),
    ("", None, errors.Validation),
    ("x" * 65, None, errors.InvalidParameterValue),
    ("a" * 171, None, errors.Validation),
    ("hello", "bad qualifier!", errors.Validation),
    ("arn:aws:lambda:us-east-1:123456789012:function:hello:1", "2", errors.InvalidParameterValue),
    ("dots.are.not.names", None, errors.Validation),
])
def test_invalid_references(given: str, qualifier: str | None, error: type[errors.KambdaError]) -> None:
    with pytest.raises(error) as excinfo:
        parse_function(given, qualifier)
    assert excinfo.value.status == 400


def test_validation_message_quotes_the_aws_pattern() -> None:
    with pytest.raises(errors.Validation) as excinfo:
        parse_function("bad name")
    assert excinfo.value.message.startswith(
        "1 validation error detected: Value 'bad name' at 'functionName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?")


def test_arns() -> None:
    arns = Arns("eu-west-1", "111122223333")
    assert arns.function("f") == "arn:aws:lambda:eu-west-1:111122223333:function:f"
    assert arns.function("f", "$LATEST") == "arn:aws:lambda:eu-west-1:111122223333:function:f:$LATEST"


def test_error_bodies_follow_the_contract() -> None:
    assert errors.function_not_found("arn:x").body() == {"Type": "User", "Message": "Function not found: arn:x"}
    assert errors.InvalidParameterValue("m").body() == {"Type": "User", "message": "m"}
    throttled = errors.TooManyRequests("Rate Exceeded.", Reason="ReservedFunctionConcurrentInvocationLimitExceeded")
    assert throttled.body()["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert errors.from_code("ResourceConflictException", "x").status == 409
    assert isinstance(errors.from_code("NoSuchCode", "x"), errors.ServiceError)


def test_request_ids_are_distinct_version_4_uuids() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for rid in ids:
        parsed = uuid.UUID(rid)
        assert str(parsed) == rid and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_draws_other_request_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write, " ".join(new_request_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    parent = [new_request_id() for _ in range(3)]
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    assert len(child) == 3 and not set(child) & set(parent)
