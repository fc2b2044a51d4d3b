"""The Lambda management API through boto3 against a real `kambda up`."""

from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError

from tests.conftest import invoke_json, make_zip, unique

ECHO = "def handler(event, context):\n    return event\n"
V1 = "def handler(event, context):\n    return 'v1'\n"
V2 = "def handler(event, context):\n    return 'v2'\n"


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    err = excinfo.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


def test_create_answers_pending_then_the_function_is_active(lam, create) -> None:
    name = unique("create")
    package = make_zip({"app.py": ECHO})
    answer = lam.create_function(
        FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="arn:aws:iam::000000000000:role/r",
        Code={"ZipFile": package}, Description="d", Timeout=7, MemorySize=256,
        Environment={"Variables": {"AB": "1"}},
    )
    try:
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 201
        assert answer["State"] == "Pending" and answer["StateReasonCode"] == "Creating"
        assert answer["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
        assert answer["CodeSha256"] == base64.b64encode(hashlib.sha256(package).digest()).decode()
        assert answer["CodeSize"] == len(package)
        assert (answer["Timeout"], answer["MemorySize"], answer["Description"]) == (7, 256, "d")
        assert answer["Version"] == "$LATEST" and answer["PackageType"] == "Zip"
        assert answer["Environment"] == {"Variables": {"AB": "1"}}
        assert answer["Architectures"] == ["x86_64"] and answer["EphemeralStorage"] == {"Size": 512}
        assert answer["LastModified"].endswith("+0000") and answer["RevisionId"]
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
        got = lam.get_function(FunctionName=name)
        assert got["Configuration"]["State"] == "Active"
        assert got["Configuration"]["LastUpdateStatus"] == "Successful"
        assert got["Code"]["RepositoryType"] == "S3"
        config = lam.get_function_configuration(FunctionName=name)
        assert config["CodeSha256"] == answer["CodeSha256"] and config["Handler"] == "app.handler"
    finally:
        lam.delete_function(FunctionName=name)


def test_defaults_match_aws(lam, create) -> None:
    name = create(ECHO)
    config = lam.get_function_configuration(FunctionName=name)
    assert (config["Timeout"], config["MemorySize"]) == (3, 128)
    assert config["TracingConfig"] == {"Mode": "PassThrough"}
    assert config["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"}


def test_code_location_serves_the_package(platform, lam, create) -> None:
    import urllib.request

    name = create({"app.py": ECHO, "data.txt": "hello"})
    location = lam.get_function(FunctionName=name)["Code"]["Location"]
    with urllib.request.urlopen(location, timeout=10) as response:
        package = response.read()
    assert base64.b64encode(hashlib.sha256(package).digest()).decode() == \
        lam.get_function_configuration(FunctionName=name)["CodeSha256"]


def test_names_may_be_full_or_partial_arns(lam, create) -> None:
    name = create(ECHO)
    full = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert lam.get_function(FunctionName=full)["Configuration"]["FunctionName"] == name
    assert lam.get_function(FunctionName=f"000000000000:function:{name}")["Configuration"]["FunctionName"] == name
    _, body = invoke_json(lam, f"{full}:$LATEST", {"a": 1})
    assert body == {"a": 1}


def test_list_functions_pages_with_marker(lam, create) -> None:
    prefix = unique("page")
    names = sorted(create(ECHO, name=f"{prefix}-{i}") for i in range(5))
    seen: list[str] = []
    marker = None
    pages = 0
    while True:
        kwargs = {"MaxItems": 2, **({"Marker": marker} if marker else {})}
        page = lam.list_functions(**kwargs)
        assert len(page["Functions"]) <= 2
        seen.extend(f["FunctionName"] for f in page["Functions"])
        pages += 1
        marker = page.get("NextMarker")
        if not marker:
            break
    assert [n for n in seen if n.startswith(prefix)] == names
    assert len(seen) == len(set(seen)) and pages >= 3
    paginated = [f["FunctionName"] for p in lam.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 3}) for f in p["Functions"]]
    assert paginated == seen


def test_update_code_then_invoke_runs_the_new_code(lam, create) -> None:
    name = create(V1)
    assert invoke_json(lam, name)[1] == "v1"
    before = lam.get_function_configuration(FunctionName=name)
    answer = lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": V2}))
    assert answer["CodeSha256"] != before["CodeSha256"]
    assert answer["RevisionId"] != before["RevisionId"]
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    assert invoke_json(lam, name)[1] == "v2"


def test_update_configuration_changes_the_environment_the_function_sees(lam, create) -> None:
    code = ("import os\ndef handler(event, context):\n"
            "    return {'greeting': os.environ.get('GREETING'), 'memory': context.memory_limit_in_mb,\n"
            "            'timeout_left': context.get_remaining_time_in_millis()}\n")
    name = create(code)
    assert invoke_json(lam, name)[1]["greeting"] is None
    answer = lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"GREETING": "hi"}}, MemorySize=512, Timeout=30,
        Description="new", Handler="app.handler")
    assert (answer["MemorySize"], answer["Timeout"], answer["Description"]) == (512, 30, "new")
    _, body = invoke_json(lam, name)
    assert body["greeting"] == "hi" and str(body["memory"]) == "512"
    assert 3000 < body["timeout_left"] <= 30000


def test_stale_revision_id_is_refused(lam, create) -> None:
    name = create(ECHO)
    stale = lam.get_function_configuration(FunctionName=name)["RevisionId"]
    lam.update_function_configuration(FunctionName=name, Description="one")
    with pytest.raises(ClientError) as excinfo:
        lam.update_function_configuration(FunctionName=name, Description="two", RevisionId=stale)
    assert error_of(excinfo)[0] == "PreconditionFailedException"
    assert error_of(excinfo)[2] == 412


def test_delete_removes_the_function(lam) -> None:
    name = unique("del")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": ECHO})})
    assert invoke_json(lam, name, {"x": 1})[1] == {"x": 1}
    assert lam.delete_function(FunctionName=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as excinfo:
        lam.get_function(FunctionName=name)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=name)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


# -- errors, exactly as the contract words them ------------------------------------------------

def test_unknown_function_is_not_found_with_its_arn(lam) -> None:
    with pytest.raises(ClientError) as excinfo:
        lam.get_function(FunctionName="nope-missing")
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert message == "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope-missing"
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName="nope-missing")
    assert error_of(excinfo)[1] == \
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope-missing:$LATEST"
    for call in (lambda: lam.delete_function(FunctionName="nope-missing"),
                 lambda: lam.update_function_code(FunctionName="nope-missing", ZipFile=make_zip({"a": "b"})),
                 lambda: lam.update_function_configuration(FunctionName="nope-missing", Timeout=5)):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_creating_twice_is_a_conflict(lam, create) -> None:
    name = create(ECHO)
    with pytest.raises(ClientError) as excinfo:
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": make_zip({"app.py": ECHO})})
    assert error_of(excinfo) == ("ResourceConflictException", f"Function already exist: {name}", 409)


@pytest.mark.parametrize(("params", "code", "fragment"), [
    ({"Runtime": "cobol42"}, "InvalidParameterValueException", "at 'runtime' failed to satisfy constraint"),
    ({"Timeout": 901}, "InvalidParameterValueException", "Member must have value between 1 and 900"),
    ({"MemorySize": 10241}, "InvalidParameterValueException", "between 128 and 10240"),
    ({"FunctionName": "x" * 65}, "InvalidParameterValueException", "less than or equal to 64"),
    ({"FunctionName": "bad name!"}, "ValidationException", "Member must satisfy regular expression pattern"),
    ({"Environment": {"Variables": {"AWS_REGION": "x"}}}, "InvalidParameterValueException", "reserved keys"),
    ({"Environment": {"Variables": {"BIG": "x" * 5000}}}, "InvalidParameterValueException", "4KB"),
])
def test_bad_create_parameters_get_aws_errors(lam, params: dict, code: str, fragment: str) -> None:
    args = {"FunctionName": unique("bad"), "Runtime": "python3.12", "Handler": "app.handler", "Role": "r",
            "Code": {"ZipFile": make_zip({"app.py": ECHO})}, **params}
    with pytest.raises(ClientError) as excinfo:
        lam.create_function(**args)
    got_code, message, status = error_of(excinfo)
    assert (got_code, status) == (code, 400)
    assert fragment in message
    assert not [f for f in lam.list_functions(MaxItems=10000)["Functions"]
                if f["FunctionName"] == args["FunctionName"]]


@pytest.mark.parametrize(("field", "value", "least"), [("Timeout", 0, 1), ("MemorySize", 0, 128),
                                                        ("MemorySize", 64, 128)])
def test_a_given_value_below_the_minimum_is_refused_not_defaulted(platform, field: str, value: int,
                                                                   least: int) -> None:
    """boto3 checks these minimums itself; other SDKs and raw HTTP do not, and a zero must not read as
    "absent" (Timeout 3, MemorySize 128 by default)."""
    raw = platform.lambda_client(parameter_validation=False)
    name = unique("low")
    with pytest.raises(ClientError) as excinfo:
        raw.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": make_zip({"app.py": ECHO})}, **{field: value})
    member = field[:1].lower() + field[1:]
    assert error_of(excinfo) == (
        "ValidationException", f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: Member must have value greater than or equal to {least}", 400)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        raw.get_function(FunctionName=name)


def test_unreadable_zip_is_refused(lam) -> None:
    with pytest.raises(ClientError) as excinfo:
        lam.create_function(FunctionName=unique("zip"), Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": b"this is not a zip"})
    assert error_of(excinfo) == (
        "InvalidParameterValueException",
        "Could not unzip uploaded file. Please check your file, then try to upload again.", 400)


@pytest.mark.parametrize("entry", ["../../evil.py", "/abs/evil.py", "a/../../evil.py"])
def test_zip_entries_escaping_the_package_are_refused(platform, lam, entry: str, tmp_path) -> None:
    name = unique("evil")
    with pytest.raises(ClientError) as excinfo:
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                            Code={"ZipFile": make_zip({"app.py": ECHO, entry: "print('owned')"})})
    code, message, _ = error_of(excinfo)
    assert code == "InvalidParameterValueException" and "escapes the package root" in message
    assert not list(platform.state_dir.parent.rglob("evil.py"))
    assert not list(platform.state_dir.rglob("evil.py"))
    # An update with such a package is refused the same way and the old code keeps running.
    good = unique("evil-upd")
    lam.create_function(FunctionName=good, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": V1})})
    try:
        with pytest.raises(ClientError) as excinfo:
            lam.update_function_code(FunctionName=good, ZipFile=make_zip({"app.py": V2, entry: "x"}))
        assert error_of(excinfo)[0] == "InvalidParameterValueException"
        assert invoke_json(lam, good)[1] == "v1"
    finally:
        lam.delete_function(FunctionName=good)


def test_qualifier_that_contradicts_the_arn_is_refused(lam, create) -> None:
    name = create(ECHO)
    with pytest.raises(ClientError) as excinfo:
        lam.get_function(FunctionName=f"{name}:$LATEST", Qualifier="7")
    assert error_of(excinfo)[0] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as excinfo:
        lam.get_function(FunctionName=name, Qualifier="7")
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_concurrent_changes_are_serialised_not_failed(lam) -> None:
    from concurrent.futures import ThreadPoolExecutor

    package = make_zip({"app.py": ECHO})  # the same code for every function: one stored package
    names = [unique("conc") for _ in range(8)]

    def create_one(name: str) -> int:
        return lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                                   Code={"ZipFile": package})["ResponseMetadata"]["HTTPStatusCode"]

    try:
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(create_one, names)) == [201] * 8
            descriptions = [f"d{i}" for i in range(6)]
            answers = list(pool.map(lambda d: lam.update_function_configuration(FunctionName=names[0],
                                                                               Description=d), descriptions))
        assert sorted(a["Description"] for a in answers) == descriptions
        assert len({a["RevisionId"] for a in answers}) == 6
        assert lam.get_function_configuration(FunctionName=names[0])["Description"] in descriptions
        assert invoke_json(lam, names[-1], {"ok": 1})[1] == {"ok": 1}
    finally:
        for name in names:
            lam.delete_function(FunctionName=name)
