"""Versions and aliases through boto3 against a real `kambda up`: PublishVersion, ListVersionsByFunction,
the alias operations, qualified invokes and weighted traffic splitting."""

from __future__ import annotations

import base64
import collections
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from functions.registry_cache import RegistryCache
from kambda.names import Arns
from kambda.v1.function_pb2 import Alias
from tests.conftest import Platform, invoke_json, make_zip, unique, wait_for
from tests.test_cli import kambda as run_cli

ACCOUNT_ARN = "arn:aws:lambda:us-east-1:000000000000:function"


def code(tag: str) -> str:
    return ("import os\n"
            "def handler(event, context):\n"
            f"    return {{'code': {tag!r}, 'version': context.function_version,\n"
            "            'arn': context.invoked_function_arn, 'color': os.environ.get('COLOR')}\n")


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    err = excinfo.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


def update_code(lam, name: str, tag: str) -> None:  # type: ignore[no-untyped-def]
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": code(tag)}))


@pytest.fixture(scope="module")
def fast_lam(platform):  # type: ignore[no-untyped-def]
    """A client with enough pooled connections for the concurrent tests."""
    return platform.lambda_client(max_pool_connections=32)


def test_a_published_version_keeps_its_code_and_configuration(lam, create) -> None:
    name = create(code("one"), Environment={"Variables": {"COLOR": "red"}})
    first = lam.publish_version(FunctionName=name, Description="first")
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert first["Version"] == "1" and first["FunctionArn"] == f"{ACCOUNT_ARN}:{name}:1"
    assert first["Description"] == "first" and first["State"] == "Active"
    latest = lam.get_function_configuration(FunctionName=name)
    assert first["CodeSha256"] == latest["CodeSha256"] and first["RevisionId"] != latest["RevisionId"]

    update_code(lam, name, "two")
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"COLOR": "blue"}})
    second = lam.publish_version(FunctionName=name)
    assert second["Version"] == "2" and second["Description"] == ""
    update_code(lam, name, "three")

    for qualifier, tag, color in (("1", "one", "red"), ("2", "two", "blue"), ("$LATEST", "three", "blue")):
        response, body = invoke_json(lam, name, Qualifier=qualifier)
        assert response["ExecutedVersion"] == qualifier
        assert body == {"code": tag, "version": qualifier, "color": color,
                        "arn": f"{ACCOUNT_ARN}:{name}:{qualifier}"}
    # A qualified ARN as the FunctionName names the version too.
    response, body = invoke_json(lam, f"{ACCOUNT_ARN}:{name}:1")
    assert response["ExecutedVersion"] == "1" and body["code"] == "one"
    got = lam.get_function(FunctionName=name, Qualifier="1")
    assert got["Configuration"]["Version"] == "1" and got["Configuration"]["FunctionArn"] == f"{ACCOUNT_ARN}:{name}:1"
    assert got["Configuration"]["Environment"] == {"Variables": {"COLOR": "red"}}
    config = lam.get_function_configuration(FunctionName=f"{name}:2")
    assert config["Version"] == "2" and config["Environment"] == {"Variables": {"COLOR": "blue"}}


def test_publishing_unchanged_code_returns_the_latest_version(lam, create) -> None:
    name = create(code("same"))
    first = lam.publish_version(FunctionName=name)
    again = lam.publish_version(FunctionName=name, Description="ignored: nothing changed")
    assert again["Version"] == first["Version"] == "1" and again["RevisionId"] == first["RevisionId"]
    lam.update_function_configuration(FunctionName=name, Timeout=9)
    changed = lam.publish_version(FunctionName=name)
    assert changed["Version"] == "2" and changed["Timeout"] == 9


def test_publish_checks_code_sha256_and_revision_id(lam, create) -> None:
    name = create(code("x"))
    latest = lam.get_function_configuration(FunctionName=name)
    wrong_sha = base64.b64encode(b"\0" * 32).decode()
    with pytest.raises(ClientError) as excinfo:
        lam.publish_version(FunctionName=name, CodeSha256=wrong_sha)
    code_, message, status = error_of(excinfo)
    assert (code_, status) == ("InvalidParameterValueException", 400) and latest["CodeSha256"] in message
    with pytest.raises(ClientError) as excinfo:
        lam.publish_version(FunctionName=name, RevisionId="not-the-revision")
    assert error_of(excinfo)[0::2] == ("PreconditionFailedException", 412)
    published = lam.publish_version(FunctionName=name, CodeSha256=latest["CodeSha256"],
                                    RevisionId=latest["RevisionId"])
    assert published["Version"] == "1"
    with pytest.raises(ClientError) as excinfo:
        lam.publish_version(FunctionName="no-such-function-v")
    assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)


def test_list_versions_starts_with_latest_and_pages(lam, create) -> None:
    name = create(code("list"))
    for i in range(3):
        lam.update_function_configuration(FunctionName=name, Description=f"d{i}")
        lam.publish_version(FunctionName=name)
    page = lam.list_versions_by_function(FunctionName=name, MaxItems=2)
    assert [v["Version"] for v in page["Versions"]] == ["$LATEST", "1"]
    assert page["Versions"][0]["FunctionArn"] == f"{ACCOUNT_ARN}:{name}:$LATEST"
    rest = lam.list_versions_by_function(FunctionName=name, Marker=page["NextMarker"], MaxItems=2)
    assert [v["Version"] for v in rest["Versions"]] == ["2", "3"] and "NextMarker" not in rest
    assert [v["Description"] for v in rest["Versions"]] == ["d1", "d2"]
    every = [v["Version"] for v in lam.get_paginator("list_versions_by_function").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 1}).build_full_result()["Versions"]]
    assert every == ["$LATEST", "1", "2", "3"]


def test_list_functions_with_every_version(lam, create) -> None:
    first = create(code("a"), name=unique("all-a"))
    second = create(code("b"), name=unique("all-b"))
    for _ in range(2):
        update_code(lam, first, unique("a"))
        lam.publish_version(FunctionName=first)
    ours = sorted([first, second])
    pages = lam.get_paginator("list_functions").paginate(FunctionVersion="ALL", PaginationConfig={"PageSize": 2})
    listed = [(f["FunctionName"], f["Version"], f["FunctionArn"]) for f in pages.build_full_result()["Functions"]
              if f["FunctionName"] in ours]
    expected = {first: ["$LATEST", "1", "2"], second: ["$LATEST"]}
    assert listed == [(n, v, f"{ACCOUNT_ARN}:{n}:{v}") for n in ours for v in expected[n]]
    plain = [(f["FunctionName"], f["Version"]) for f in lam.list_functions(MaxItems=10000)["Functions"]
             if f["FunctionName"] in ours]
    assert plain == [(n, "$LATEST") for n in ours]  # without it, only $LATEST, as on AWS
    with pytest.raises(ClientError) as excinfo:
        lam.list_functions(FunctionVersion="LATEST")
    assert error_of(excinfo)[0] == "ValidationException"


def test_alias_create_get_list_update_delete(lam, create) -> None:
    name = create(code("a1"))
    lam.publish_version(FunctionName=name)
    update_code(lam, name, "a2")
    lam.publish_version(FunctionName=name)
    created = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="prod")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == f"{ACCOUNT_ARN}:{name}:live"
    assert (created["Name"], created["FunctionVersion"], created["Description"]) == ("live", "1", "prod")
    assert created["RevisionId"] and "RoutingConfig" not in created
    lam.create_alias(FunctionName=name, Name="edge", FunctionVersion="$LATEST")
    assert lam.get_alias(FunctionName=name, Name="live")["RevisionId"] == created["RevisionId"]
    listed = lam.list_aliases(FunctionName=name)["Aliases"]
    assert [a["Name"] for a in listed] == ["edge", "live"]
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]] == ["live"]
    paged = lam.list_aliases(FunctionName=name, MaxItems=1)
    assert [a["Name"] for a in paged["Aliases"]] == ["edge"] and paged["NextMarker"]

    response, body = invoke_json(lam, name, Qualifier="live")
    assert response["ExecutedVersion"] == "1" and body["code"] == "a1"
    assert body["arn"] == f"{ACCOUNT_ARN}:{name}:live" and body["version"] == "1"
    assert invoke_json(lam, f"{name}:edge")[1]["code"] == "a2"
    got = lam.get_function(FunctionName=name, Qualifier="live")["Configuration"]
    assert got["Version"] == "1" and got["FunctionArn"] == f"{ACCOUNT_ARN}:{name}:live"

    with pytest.raises(ClientError) as excinfo:
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2", RevisionId="stale")
    assert error_of(excinfo)[0::2] == ("PreconditionFailedException", 412)
    updated = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                               RevisionId=created["RevisionId"])
    assert updated["FunctionVersion"] == "2" and updated["Description"] == "prod"
    assert updated["RevisionId"] != created["RevisionId"]
    response, body = invoke_json(lam, name, Qualifier="live")
    assert response["ExecutedVersion"] == "2" and body["code"] == "a2"
    weighted = lam.update_alias(FunctionName=name, Name="live",
                                RoutingConfig={"AdditionalVersionWeights": {"1": 0.25}})
    assert weighted["FunctionVersion"] == "2" and weighted["RoutingConfig"] == {"AdditionalVersionWeights": {"1": 0.25}}
    cleared = lam.update_alias(FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {}})
    assert "RoutingConfig" not in cleared

    lam.delete_alias(FunctionName=name, Name="live")
    with pytest.raises(ClientError) as excinfo:
        lam.get_alias(FunctionName=name, Name="live")
    code_, message, status = error_of(excinfo)
    assert (code_, status) == ("ResourceNotFoundException", 404) and f"{name}:live" in message
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=name, Qualifier="live")
    assert error_of(excinfo) == ("ResourceNotFoundException",
                                 f"Function not found: {ACCOUNT_ARN}:{name}:live", 404)


@pytest.mark.parametrize(("params", "code_", "fragment"), [
    ({"Name": "123", "FunctionVersion": "1"}, "ValidationException", "at 'name'"),
    ({"Name": "bad.name", "FunctionVersion": "1"}, "ValidationException", "at 'name'"),
    ({"Name": "x", "FunctionVersion": "one"}, "ValidationException", "at 'functionVersion'"),
    ({"Name": "x", "FunctionVersion": "9"}, "ResourceNotFoundException", ":9"),
    ({"Name": "x", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 1.5}}},
     "InvalidParameterValueException", "weight"),
    ({"Name": "x", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": -0.1}}},
     "InvalidParameterValueException", "weight"),
    ({"Name": "x", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"$LATEST": 0.1}}},
     "InvalidParameterValueException", "$LATEST"),
    ({"Name": "x", "FunctionVersion": "$LATEST", "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.1}}},
     "InvalidParameterValueException", "$LATEST"),
    ({"Name": "x", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.1}}},
     "InvalidParameterValueException", "differ"),
    ({"Name": "x", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1, "3": 0.1}}},
     "InvalidParameterValueException", "greater than 1"),
    ({"Name": "x", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"7": 0.1}}},
     "ResourceNotFoundException", ":7"),
])
def test_bad_aliases_get_aws_errors(platform, lam, create, params: dict, code_: str, fragment: str) -> None:
    unchecked = platform.lambda_client(parameter_validation=False)  # the server must refuse what boto3 would
    name = create(code("e1"))
    lam.publish_version(FunctionName=name)
    update_code(lam, name, "e2")
    lam.publish_version(FunctionName=name)
    with pytest.raises(ClientError) as excinfo:
        unchecked.create_alias(FunctionName=name, **params)
    got_code, message, _ = error_of(excinfo)
    assert got_code == code_ and fragment in message
    assert lam.list_aliases(FunctionName=name)["Aliases"] == []  # nothing half-made


def test_alias_conflicts_and_missing_functions(lam, create) -> None:
    name = create(code("c"))
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    with pytest.raises(ClientError) as excinfo:
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    assert error_of(excinfo) == ("ResourceConflictException", f"Alias already exists: {ACCOUNT_ARN}:{name}:live", 409)
    with pytest.raises(ClientError) as excinfo:
        lam.update_alias(FunctionName=name, Name="nope", FunctionVersion="1")
    assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        lam.delete_alias(FunctionName=name, Name="nope")
    assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        lam.create_alias(FunctionName="no-such-function-a", Name="live", FunctionVersion="1")
    assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)
    for qualifier in ("5", "$nope", "live-not"):
        with pytest.raises(ClientError) as excinfo:
            lam.invoke(FunctionName=name, Qualifier=qualifier)
        assert error_of(excinfo) == ("ResourceNotFoundException",
                                     f"Function not found: {ACCOUNT_ARN}:{name}:{qualifier}", 404)
    with pytest.raises(ClientError) as excinfo:
        lam.get_function(FunctionName=name, Qualifier="$nope")
    assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        lam.get_function(FunctionName=name, Qualifier="nope")
    assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)


def test_deleting_versions(lam, create) -> None:
    name = create(code("d1"))
    lam.publish_version(FunctionName=name)
    update_code(lam, name, "d2")
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2",
                     RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})
    for version in ("1", "2"):  # as the alias's version and as its additional version
        with pytest.raises(ClientError) as excinfo:
            lam.delete_function(FunctionName=name, Qualifier=version)
        code_, message, status = error_of(excinfo)
        assert (code_, status) == ("ResourceConflictException", 409) and "live" in message
    with pytest.raises(ClientError) as excinfo:
        lam.delete_function(FunctionName=name, Qualifier="$LATEST")
    assert error_of(excinfo)[0] == "InvalidParameterValueException"
    lam.update_alias(FunctionName=name, Name="live", RoutingConfig={})
    lam.delete_function(FunctionName=name, Qualifier="1")
    with pytest.raises(ClientError) as excinfo:
        lam.get_function(FunctionName=name, Qualifier="1")
    assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=name, Qualifier="1")
    assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "2"]
    assert invoke_json(lam, name, Qualifier="live")[1]["code"] == "d2"  # the rest is untouched
    update_code(lam, name, "d3")
    assert lam.publish_version(FunctionName=name)["Version"] == "3"  # numbers are never reused


def test_deleting_a_function_deletes_its_versions_and_aliases(lam, create) -> None:
    name = create(code("old"))
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    assert invoke_json(lam, name, Qualifier="live")[1]["code"] == "old"
    lam.delete_function(FunctionName=name)
    for qualifier in ("1", "live"):
        with pytest.raises(ClientError) as excinfo:
            lam.invoke(FunctionName=name, Qualifier=qualifier)
        assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)
    create(code("new"), name=name)
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST"]
    assert lam.list_aliases(FunctionName=name)["Aliases"] == []
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    assert invoke_json(lam, name, Qualifier="1")[1]["code"] == "new"


def test_each_version_has_environments_of_its_own(platform, lam, create) -> None:
    name = create(code("s1"))
    lam.publish_version(FunctionName=name)
    update_code(lam, name, "s2")
    lam.publish_version(FunctionName=name)
    invoke_json(lam, name, Qualifier="1")
    wait_for(lambda: platform.status(f"{name}?Qualifier=1")["environments"] >= 1, what="version 1's environment")
    assert platform.status(f"{name}?Qualifier=2")["environments"] == 0
    assert platform.status(f"{name}?Qualifier=2")["version"] == "2"


def test_provisioned_concurrency_and_event_invoke_config_on_versions_and_aliases(platform, lam, create) -> None:
    name = create(code("p"))
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1)
    try:
        wait_for(lambda: lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")["Status"] == "READY",
                 timeout=60, what="version 1's provisioned environment")
        assert platform.status(f"{name}?Qualifier=1")["environments"] == 1
        assert platform.status(name)["environments"] == 0  # $LATEST has none of its own
        response = lam.invoke(FunctionName=name, Qualifier="live")
        response["Payload"].read()
        assert response["ExecutedVersion"] == "1"
        assert "kambda-cold-start" not in response["ResponseMetadata"]["HTTPHeaders"]
        with pytest.raises(ClientError) as excinfo:  # reserved concurrency covers every version's provisioning
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        assert error_of(excinfo)[0] == "InvalidParameterValueException"
    finally:
        lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    with pytest.raises(ClientError) as excinfo:
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert error_of(excinfo)[0] == "ProvisionedConcurrencyConfigNotFoundException"

    answer = lam.put_function_event_invoke_config(FunctionName=name, Qualifier="1", MaximumRetryAttempts=0)
    assert answer["FunctionArn"] == f"{ACCOUNT_ARN}:{name}:1" and answer["MaximumRetryAttempts"] == 0
    assert lam.get_function_event_invoke_config(FunctionName=name, Qualifier="live")["MaximumRetryAttempts"] == 0
    with pytest.raises(ClientError) as excinfo:
        lam.get_function_event_invoke_config(FunctionName=name)  # $LATEST has none
    assert error_of(excinfo)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        lam.put_function_event_invoke_config(FunctionName=name, Qualifier="4", MaximumRetryAttempts=0)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def _two_versions(lam, create) -> str:  # type: ignore[no-untyped-def]
    name = create(code("first"))
    lam.publish_version(FunctionName=name)
    update_code(lam, name, "second")
    lam.publish_version(FunctionName=name)
    return name


def test_invocations_are_counted_per_version_and_gauges_add_the_versions_up(platform, lam, create) -> None:
    """A canary's outcomes can be told from the stable version's; scale events come per version and
    the per-function gauges are their sums, not the last one."""
    name = create(code("one"))
    lam.publish_version(FunctionName=name)
    update_code(lam, name, "two")
    lam.publish_version(FunctionName=name)
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2)
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="2", ProvisionedConcurrentExecutions=1)
    try:
        def gauges() -> dict[str, str]:
            lines = platform.metrics().splitlines()
            wanted = ("kambda_function_desired_environments", "kambda_function_environments")
            return {line.split("{")[0]: line.rsplit(" ", 1)[1] for line in lines
                    if line.startswith(wanted) and f'function="{name}"' in line}

        wait_for(lambda: gauges() == {"kambda_function_desired_environments": "3.0",
                                      "kambda_function_environments": "3.0"},
                 timeout=60, what="3 environments over the two versions in the gauges")
        for qualifier in ("1", "1", "2"):
            invoke_json(lam, name, {}, Qualifier=qualifier)
        metrics = platform.metrics()
        for version, count in (("1", 2), ("2", 1)):
            line = f'kambda_invocations_total{{function="{name}",outcome="success",version="{version}"}} {count}.0'
            assert line in metrics
    finally:
        for version in ("1", "2"):
            lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=version)


def test_weighted_alias_sends_its_share_to_the_second_version(fast_lam, create) -> None:
    name = _two_versions(fast_lam, create)
    fast_lam.create_alias(FunctionName=name, Name="canary", FunctionVersion="1",
                          RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})

    def call(_: int) -> str:
        response = fast_lam.invoke(FunctionName=name, Qualifier="canary", Payload=b"{}")
        assert response["StatusCode"] == 200 and "FunctionError" not in response
        response["Payload"].read()
        return str(response["ExecutedVersion"])

    with ThreadPoolExecutor(16) as pool:
        counts = collections.Counter(pool.map(call, range(2000)))
    assert set(counts) == {"1", "2"} and sum(counts.values()) == 2000
    assert abs(counts["2"] / 2000 - 0.10) <= 0.03, counts


def test_updating_an_alias_under_load_fails_no_call(fast_lam, create) -> None:
    name = _two_versions(fast_lam, create)
    fast_lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    stop = threading.Event()
    calls: list[tuple[float, str]] = []  # (when the call was sent, the version that ran)
    failures: list[BaseException] = []

    def caller() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = fast_lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
                body = response["Payload"].read()
                if response["StatusCode"] != 200 or "FunctionError" in response:
                    failures.append(AssertionError(body))
                calls.append((sent, str(response["ExecutedVersion"])))
            except Exception as exc:  # every failure counts, whatever it is
                failures.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(calls) >= 100, timeout=60, what="calls to version 1")
        fast_lam.update_alias(FunctionName=name, Name="live", FunctionVersion="1",
                              RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
        wait_for(lambda: sum(v == "2" for _, v in calls) >= 50, timeout=60, what="calls to version 2")
        fast_lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2", RoutingConfig={})
        switched = time.monotonic()
        wait_for(lambda: sum(sent > switched for sent, _ in calls) >= 100, timeout=60, what="calls after the switch")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert failures == []
    assert {v for sent, v in calls if sent > switched} == {"2"}
    assert {v for _, v in calls} == {"1", "2"}


@pytest.mark.parametrize(("draw", "expected"), [(0.0, "2"), (0.0999, "2"), (0.1, "1"), (0.99, "1")])
def test_an_alias_choice_follows_the_weights(draw: float, expected: str) -> None:
    cache = RegistryCache(js=None, arns=Arns("us-east-1", "000000000000"), rng=lambda: draw)  # type: ignore[arg-type]
    alias = Alias(function="f", name="canary", function_version="1", additional_version_weights={"2": 0.1})
    assert cache.choose(alias) == expected
    assert cache.choose(Alias(function="f", name="plain", function_version="1")) == "1"


def test_cli_publishes_and_points_aliases(platform, lam, create) -> None:
    name = create(code("cli1"))
    done = run_cli(platform, "publish", name, "--description", "first")
    assert done.returncode == 0 and f"{name} version 1" in done.stdout, done.stderr
    update_code(lam, name, "cli2")
    assert run_cli(platform, "publish", name).returncode == 0
    done = run_cli(platform, "alias", "set", name, "live", "1", "--weight", "2=0.25")
    assert done.returncode == 0 and "-> version 1, 25% to version 2" in done.stdout, done.stderr
    done = run_cli(platform, "alias", "set", name, "live", "2")
    assert done.returncode == 0 and "-> version 2" in done.stdout, done.stderr
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "2"
    listed = run_cli(platform, "alias", "ls", name)
    assert "live" in listed.stdout
    invoked = run_cli(platform, "invoke", f"{name}:live")
    assert invoked.returncode == 0 and json.loads(invoked.stdout)["code"] == "cli2"
    bad = run_cli(platform, "alias", "set", name, "live", "2", "--weight", "1=1.5")
    assert bad.returncode == 1 and "InvalidParameterValueException" in bad.stderr
    assert run_cli(platform, "alias", "rm", name, "live").returncode == 0
    assert lam.list_aliases(FunctionName=name)["Aliases"] == []


def test_versions_survive_a_restart_and_scale_to_zero_each_on_its_own(tmp_path) -> None:
    running = Platform(tmp_path, ["--scale-to-zero-after", "1"]).start()
    try:
        lam = running.lambda_client()
        lam.create_function(FunctionName="keep", Runtime="python3.12", Handler="app.handler",
                            Role="arn:aws:iam::000000000000:role/r", Code={"ZipFile": make_zip({"app.py": code("k1")})})
        lam.publish_version(FunctionName="keep")
        update_code(lam, "keep", "k2")
        lam.create_alias(FunctionName="keep", Name="live", FunctionVersion="1")
        running.stop()
        running.start()
        lam = running.lambda_client()
        response, body = invoke_json(lam, "keep", Qualifier="live")
        assert response["ExecutedVersion"] == "1" and body["code"] == "k1"
        assert invoke_json(lam, "keep")[1]["code"] == "k2"
        update_code(lam, "keep", "k3")
        assert lam.publish_version(FunctionName="keep")["Version"] == "2"

        def version_1_idle_while_version_2_busy() -> bool:
            assert invoke_json(lam, "keep", Qualifier="2")[1]["code"] == "k3"
            return (running.status("keep?Qualifier=1")["environments"] == 0
                    and running.status("keep?Qualifier=2")["environments"] >= 1)

        wait_for(version_1_idle_while_version_2_busy, timeout=60, what="version 1 to scale to zero, not 2")
    finally:
        running.stop()


def test_event_invokes_run_the_version_the_qualifier_names(lam, create, tmp_path) -> None:
    def ledger(tag: str) -> str:
        return ("import os\ndef handler(event, context):\n"
                "    with open(os.path.join(event['dir'], context.function_version), 'w') as f:\n"
                f"        f.write({tag!r})\n")

    name = create(ledger("one"))
    lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": ledger("two")}))
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    payload = json.dumps({"dir": str(tmp_path)})
    for qualifier in ("1", "live"):
        response = lam.invoke(FunctionName=name, Qualifier=qualifier, InvocationType="Event", Payload=payload)
        response["Payload"].read()
        assert response["StatusCode"] == 202
    wait_for(lambda: (tmp_path / "1").exists() and (tmp_path / "2").exists(), timeout=60, what="both runs")
    assert (tmp_path / "1").read_text() == "one" and (tmp_path / "2").read_text() == "two"
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=name, Qualifier="3", InvocationType="Event", Payload=payload)
    assert error_of(excinfo)[0::2] == ("ResourceNotFoundException", 404)


def test_create_and_update_code_with_publish(lam) -> None:
    name = unique("pub")
    created = lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Publish=True,
                                  Role="arn:aws:iam::000000000000:role/r",
                                  Code={"ZipFile": make_zip({"app.py": code("c1")})})
    try:
        assert created["Version"] == "1" and created["FunctionArn"] == f"{ACCOUNT_ARN}:{name}:1"
        updated = lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": code("c2")}), Publish=True)
        assert updated["Version"] == "2"
        assert invoke_json(lam, name, Qualifier="1")[1]["code"] == "c1"
        assert invoke_json(lam, name, Qualifier="2")[1]["code"] == "c2"
    finally:
        lam.delete_function(FunctionName=name)
