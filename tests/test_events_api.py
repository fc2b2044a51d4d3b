"""The EventBridge API through boto3's `events` client against a real platform: every operation and
its errors, delivery with the envelope, input transformers, retries into a dead-letter queue,
events published straight on NATS, and one real rate(1 minute) firing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import nats
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import Platform, make_zip, unique, wait_for

RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        out.write(json.dumps(event) + "\\n")
"""
FAILING = """
import os
def handler(event, context):
    with open(os.environ["OUT"], "a") as runs:
        runs.write("x")
    raise RuntimeError("always")
"""
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


@pytest.fixture(scope="module")
def events_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(tmp_path_factory.mktemp("events"),
                       env={"KAMBDA_ASYNC_RETRY_BASE": "0.05", "KAMBDA_QUEUE_TIMEOUT": "5"}).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def events(events_platform: Platform):  # type: ignore[no-untyped-def]
    return boto3.client("events", endpoint_url=events_platform.url, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 1}, read_timeout=60))


def nats_url(platform: Platform) -> str:
    return platform.nats_url()


def deploy(platform: Platform, code: str, out: Path) -> str:
    name = unique("ev")
    platform.lambda_client().create_function(
        FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
        Code={"ZipFile": make_zip({"app.py": code})}, Environment={"Variables": {"OUT": str(out)}})
    return name


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def code_of(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return excinfo.value.response["Error"]["Code"]


def entry(detail: dict, source: str = "my.app", detail_type: str = "order", **extra: object) -> dict:
    return {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail), **extra}


def test_event_buses(events) -> None:
    name = unique("bus")
    arn = events.create_event_bus(Name=name)["EventBusArn"]
    assert arn == f"arn:aws:events:us-east-1:000000000000:event-bus/{name}"
    described = events.describe_event_bus(Name=name)
    assert (described["Name"], described["Arn"]) == (name, arn)
    assert events.describe_event_bus()["Name"] == "default"
    listed = [b["Name"] for b in events.list_event_buses()["EventBuses"]]
    assert "default" in listed and name in listed
    assert [b["Name"] for b in events.list_event_buses(NamePrefix=name)["EventBuses"]] == [name]
    with pytest.raises(ClientError) as excinfo:
        events.create_event_bus(Name=name)
    assert code_of(excinfo) == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as excinfo:
        events.delete_event_bus(Name="default")
    assert code_of(excinfo) == "ValidationException"
    events.put_rule(Name="r", EventBusName=name, EventPattern=json.dumps({"source": ["x"]}))
    with pytest.raises(ClientError) as excinfo:
        events.delete_event_bus(Name=name)  # it still has a rule: nothing is lost
    assert code_of(excinfo) == "ValidationException"
    events.delete_rule(Name="r", EventBusName=name)
    events.delete_event_bus(Name=name)
    with pytest.raises(ClientError) as excinfo:
        events.describe_event_bus(Name=name)
    assert code_of(excinfo) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        events.put_rule(Name="r", EventBusName=name, EventPattern=json.dumps({"source": ["x"]}))
    assert code_of(excinfo) == "ResourceNotFoundException"


def test_rules_and_their_errors(events) -> None:
    prefix = unique("rule")
    pattern = json.dumps({"source": ["my.app"], "detail": {"n": [{"numeric": [">", 1]}]}})
    for i in range(3):
        arn = events.put_rule(Name=f"{prefix}-{i}", EventPattern=pattern, Description=f"rule {i}")["RuleArn"]
        assert arn == f"arn:aws:events:us-east-1:000000000000:rule/{prefix}-{i}"
    described = events.describe_rule(Name=f"{prefix}-1")
    assert (described["EventPattern"], described["State"], described["Description"]) == (pattern, "ENABLED", "rule 1")
    first = events.list_rules(NamePrefix=prefix, Limit=2)
    assert [r["Name"] for r in first["Rules"]] == [f"{prefix}-0", f"{prefix}-1"] and first["NextToken"]
    second = events.list_rules(NamePrefix=prefix, Limit=2, NextToken=first["NextToken"])
    assert [r["Name"] for r in second["Rules"]] == [f"{prefix}-2"] and "NextToken" not in second
    events.disable_rule(Name=f"{prefix}-0")
    assert events.describe_rule(Name=f"{prefix}-0")["State"] == "DISABLED"
    events.enable_rule(Name=f"{prefix}-0")
    assert events.describe_rule(Name=f"{prefix}-0")["State"] == "ENABLED"
    events.put_rule(Name=f"{prefix}-s", ScheduleExpression="cron(0 12 ? * MON-FRI *)", State="DISABLED")
    assert events.describe_rule(Name=f"{prefix}-s")["ScheduleExpression"] == "cron(0 12 ? * MON-FRI *)"

    bad = [
        (dict(Name="x", EventPattern='{"source": "not-an-array"}'), "InvalidEventPatternException", "array"),
        (dict(Name="x", EventPattern='{"n": [{"numeric": [">", 5, "<", 1]}]}'), "InvalidEventPatternException",
         "Bottom must be less than top"),
        (dict(Name="x", EventPattern="{not json"), "InvalidEventPatternException", "JSON"),
        (dict(Name="x"), "ValidationException", "EventPattern or ScheduleExpression"),
        (dict(Name="x", ScheduleExpression="rate(1 minutes)"), "ValidationException", "ScheduleExpression"),
        (dict(Name="x", ScheduleExpression="cron(0 12 * * * *)"), "ValidationException", "day-of-week"),
        (dict(Name="bad name!", EventPattern=pattern), "ValidationException", "regular expression"),
        (dict(Name="x", EventPattern=pattern, State="ON"), "ValidationException", "State"),
    ]
    for params, code, words in bad:
        with pytest.raises(ClientError) as excinfo:
            events.put_rule(**params)
        assert code_of(excinfo) == code, params
        assert words in excinfo.value.response["Error"]["Message"], excinfo.value.response["Error"]
    for op in (events.describe_rule, events.enable_rule, events.disable_rule):
        with pytest.raises(ClientError) as excinfo:
            op(Name=unique("missing"))
        assert code_of(excinfo) == "ResourceNotFoundException"
    for i in range(3):
        events.delete_rule(Name=f"{prefix}-{i}")
    events.delete_rule(Name=f"{prefix}-s")
    assert events.list_rules(NamePrefix=prefix)["Rules"] == []


def test_targets_and_their_errors(events) -> None:
    rule = unique("targets")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["x"]}))
    answer = events.put_targets(Rule=rule, Targets=[
        {"Id": "good", "Arn": ARN + "f1", "Input": '{"a": 1}',
         "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 120},
         "DeadLetterConfig": {"Arn": "arn:kambda:nats:::dlq.subject"}},
        {"Id": "queue", "Arn": "arn:aws:sqs:us-east-1:000000000000:q"},
        {"Id": "both", "Arn": ARN + "f2", "Input": "{}", "InputPath": "$.detail"},
        {"Id": "notjson", "Arn": ARN + "f2", "Input": "{nope"},
        {"Id": "retries", "Arn": ARN + "f2", "RetryPolicy": {"MaximumRetryAttempts": 200}},
        {"Id": "dlq", "Arn": ARN + "f2", "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:0:q"}},
        {"Id": "template", "Arn": ARN + "f2", "InputTransformer": {"InputTemplate": "<undefined>"}},
    ])
    assert answer["FailedEntryCount"] == 6
    assert sorted(f["TargetId"] for f in answer["FailedEntries"]) == ["both", "dlq", "notjson", "queue",
                                                                       "retries", "template"]
    assert all(f["ErrorCode"] == "ValidationException" and f["ErrorMessage"] for f in answer["FailedEntries"])
    targets = events.list_targets_by_rule(Rule=rule)["Targets"]
    assert targets == [{"Id": "good", "Arn": ARN + "f1", "Input": '{"a": 1}',
                        "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 120},
                        "DeadLetterConfig": {"Arn": "arn:kambda:nats:::dlq.subject"}}]
    events.put_targets(Rule=rule, Targets=[{"Id": f"t{i}", "Arn": ARN + "f"} for i in range(4)])
    with pytest.raises(ClientError) as excinfo:
        events.put_targets(Rule=rule, Targets=[{"Id": "sixth", "Arn": ARN + "f"}])
    assert code_of(excinfo) == "LimitExceededException"
    with pytest.raises(ClientError) as excinfo:
        events.delete_rule(Name=rule)
    assert code_of(excinfo) == "ValidationException"
    assert "targets" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as excinfo:
        events.put_targets(Rule=unique("missing"), Targets=[{"Id": "a", "Arn": ARN + "f"}])
    assert code_of(excinfo) == "ResourceNotFoundException"
    events.remove_targets(Rule=rule, Ids=["good", "t0", "t1", "t2", "t3"])
    assert events.list_targets_by_rule(Rule=rule)["Targets"] == []
    events.delete_rule(Name=rule)


def test_put_events_validates_each_entry_and_the_request(events) -> None:
    answer = events.put_events(Entries=[
        entry({"ok": True}),
        {"DetailType": "t", "Detail": "{}"},
        {"Source": "s", "DetailType": "t", "Detail": "[1, 2]"},
        entry({}, EventBusName=unique("nobus")),
    ])
    assert answer["FailedEntryCount"] == 3
    ok, no_source, malformed, no_bus = answer["Entries"]
    assert "EventId" in ok and "ErrorCode" not in ok
    assert no_source["ErrorCode"] == "InvalidArgument" and "Source" in no_source["ErrorMessage"]
    assert malformed["ErrorCode"] == "MalformedDetail"
    assert no_bus["ErrorCode"] == "InvalidArgument" and "does not exist" in no_bus["ErrorMessage"]
    with pytest.raises(ClientError) as excinfo:
        events.put_events(Entries=[entry({"i": i}) for i in range(11)])
    assert code_of(excinfo) == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        events.put_events(Entries=[entry({"blob": "x" * 200_000}), entry({"blob": "y" * 100_000})])
    assert code_of(excinfo) == "ValidationException"


def test_test_event_pattern(events) -> None:
    event = json.dumps({"id": "1", "account": "000000000000", "source": "my.app", "time": "2024-01-01T00:00:00Z",
                        "region": "us-east-1", "detail-type": "order", "resources": [], "detail": {"n": 5}})
    assert events.test_event_pattern(EventPattern='{"detail": {"n": [{"numeric": [">", 4]}]}}', Event=event)["Result"]
    assert not events.test_event_pattern(EventPattern='{"detail": {"n": [6]}}', Event=event)["Result"]
    with pytest.raises(ClientError) as excinfo:
        events.test_event_pattern(EventPattern='{"detail": {"n": [{"bogus": 1}]}}', Event=event)
    assert code_of(excinfo) == "InvalidEventPatternException"
    with pytest.raises(ClientError) as excinfo:
        events.test_event_pattern(EventPattern='{"source": ["a"]}', Event='{"source": "a"}')
    assert code_of(excinfo) == "ValidationException"


def test_matching_events_reach_the_function_in_the_envelope(events_platform, events, tmp_path) -> None:
    out = tmp_path / "events"
    name = deploy(events_platform, RECORDER, out)
    bus = unique("orders")
    events.create_event_bus(Name=bus)
    rule = unique("big-orders")
    rule_arn = events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(
        {"source": ["shop"], "detail": {"total": [{"numeric": [">=", 100]}]}}))["RuleArn"]
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "fn", "Arn": ARN + name}])
    answer = events.put_events(Entries=[
        entry({"total": 5, "order": "small"}, source="shop", EventBusName=bus),
        entry({"total": 500, "order": "big"}, source="shop", EventBusName=bus, Resources=["arn:x"]),
        entry({"total": 900, "order": "other-source"}, source="not-shop", EventBusName=bus),
        entry({"total": 900, "order": "other-bus"}, source="shop"),
    ])
    assert answer["FailedEntryCount"] == 0
    big_id = answer["Entries"][1]["EventId"]
    got = wait_for(lambda: records(out), timeout=60, what="the big order to be delivered")
    assert rule_arn.endswith(f"rule/{bus}/{rule}")
    delivered = got[0]
    assert delivered["id"] == big_id and delivered["detail"] == {"total": 500, "order": "big"}
    assert (delivered["version"], delivered["source"], delivered["detail-type"]) == ("0", "shop", "order")
    assert (delivered["account"], delivered["region"], delivered["resources"]) == ("000000000000", "us-east-1",
                                                                                    ["arn:x"])
    assert delivered["time"].endswith("Z")
    assert [r["detail"]["order"] for r in records(out)] == ["big"]  # nothing else matched


def test_a_target_on_an_alias_runs_the_aliased_version(events_platform, events, tmp_path) -> None:
    published, latest = tmp_path / "published", tmp_path / "latest"
    name = deploy(events_platform, RECORDER, published)
    lam = events_platform.lambda_client()
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"OUT": str(latest)}})
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    rule = unique("aliased")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aliased.app"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "live", "Arn": f"{ARN}{name}:live"},
                                           {"Id": "gone", "Arn": f"{ARN}{name}:missing"}])
    assert events.put_events(Entries=[entry({"n": 1}, source="aliased.app")])["FailedEntryCount"] == 0
    got = wait_for(lambda: records(published), timeout=60, what="the event on the aliased version")
    assert [r["detail"] for r in got] == [{"n": 1}]
    assert not latest.exists()  # $LATEST (with the new configuration) did not run it


def test_targets_get_input_paths_and_transformed_input(events_platform, events, tmp_path) -> None:
    out = tmp_path / "events"
    name = deploy(events_platform, RECORDER, out)
    rule = unique("transform")
    rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps({"source": [rule]}))["RuleArn"]
    events.put_targets(Rule=rule, Targets=[
        {"Id": "const", "Arn": ARN + name, "Input": '{"constant": true}'},
        {"Id": "path", "Arn": ARN + name, "InputPath": "$.detail.instance"},
        {"Id": "json", "Arn": ARN + name, "InputTransformer": {
            "InputPathsMap": {"instance": "$.detail.instance", "state": "$.detail.state", "n": "$.detail.n"},
            "InputTemplate": '{"id": <instance>, "n": <n>, "text": "<instance> is \\"<state>\\"", '
                             '"rule": <aws.events.rule-name>, "arn": "<aws.events.rule-arn>", '
                             '"event": <aws.events.event>}'}},
        {"Id": "text", "Arn": ARN + name, "InputTransformer": {
            "InputPathsMap": {"instance": "$.detail.instance", "state": "$.detail.state"},
            "InputTemplate": "<instance> is in state <state>"}},
    ])
    events.put_events(Entries=[entry({"instance": "i-123", "state": "running", "n": 7}, source=rule)])
    got = wait_for(lambda: len(records(out)) == 4 and records(out), timeout=60, what="four deliveries")
    by_kind = {("path" if r == "i-123" else "text" if isinstance(r, str) else
                "const" if "constant" in r else "json"): r for r in got}
    assert by_kind["const"] == {"constant": True}
    assert by_kind["path"] == "i-123"
    assert by_kind["text"] == "i-123 is in state running"
    transformed = by_kind["json"]
    assert {k: transformed[k] for k in ("id", "n", "text", "rule", "arn")} == {
        "id": "i-123", "n": 7, "text": 'i-123 is "running"', "rule": rule, "arn": rule_arn}
    assert transformed["event"]["source"] == rule and "detail" not in transformed["event"]


def test_a_failing_target_goes_to_the_dead_letter_queue_after_its_retries(events_platform, events,
                                                                         tmp_path) -> None:
    runs = tmp_path / "runs"
    name = deploy(events_platform, FAILING, runs)
    rule = unique("dlq")
    subject = f"test.{unique('dead')}"
    rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps({"source": [rule]}))["RuleArn"]
    events.put_targets(Rule=rule, Targets=[{
        "Id": "fails", "Arn": ARN + name, "RetryPolicy": {"MaximumRetryAttempts": 2},
        "DeadLetterConfig": {"Arn": f"arn:kambda:nats:::{subject}"}}])

    async def receive() -> tuple[dict, dict]:
        nc = await nats.connect(nats_url(events_platform))
        try:
            sub = await nc.subscribe(subject)
            await nc.flush()
            answer = events.put_events(Entries=[entry({"doomed": True}, source=rule)])
            assert answer["FailedEntryCount"] == 0
            msg = await sub.next_msg(timeout=60)
            return json.loads(msg.data), dict(msg.headers or {})
        finally:
            await nc.close()

    dead, headers = asyncio.run(receive())
    assert dead["source"] == rule and dead["detail"] == {"doomed": True}
    assert headers["RULE_ARN"] == rule_arn and headers["TARGET_ARN"] == ARN + name
    assert headers["ERROR_CODE"] == "RetriesExhausted"
    assert runs.read_text() == "xxx"  # the first attempt and two retries


def test_events_published_on_the_nats_subject_are_routed(events_platform, events, tmp_path) -> None:
    out = tmp_path / "events"
    name = deploy(events_platform, RECORDER, out)
    rule = unique("direct")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [rule], "detail": {"k": [{"prefix": "v"}]}}))
    events.put_targets(Rule=rule, Targets=[{"Id": "fn", "Arn": ARN + name}])

    async def publish() -> None:
        nc = await nats.connect(nats_url(events_platform))
        try:
            js = nc.jetstream()
            await js.publish("kambda.events.default", json.dumps(
                {"source": rule, "detail-type": "direct", "detail": {"k": "value"}}).encode())
            await js.publish("kambda.events.default", b"not json")  # dropped, and nothing else is harmed
        finally:
            await nc.close()

    asyncio.run(publish())
    got = wait_for(lambda: records(out), timeout=60, what="the directly published event")
    assert got[0]["detail"] == {"k": "value"} and got[0]["detail-type"] == "direct"
    assert got[0]["id"] and got[0]["account"] == "000000000000" and got[0]["time"].endswith("Z")


@pytest.mark.slow
def test_a_rate_rule_fires_a_scheduled_event(events_platform, events, tmp_path) -> None:
    out = tmp_path / "events"
    name = deploy(events_platform, RECORDER, out)
    rule = unique("every-minute")
    rule_arn = events.put_rule(Name=rule, ScheduleExpression="rate(1 minute)")["RuleArn"]
    events.put_targets(Rule=rule, Targets=[{"Id": "fn", "Arn": ARN + name}])
    got = wait_for(lambda: records(out), timeout=75, interval=0.5, what="the first tick of rate(1 minute)")
    scheduled = got[0]
    assert (scheduled["source"], scheduled["detail-type"], scheduled["detail"]) == ("aws.events", "Scheduled Event",
                                                                                     {})
    assert scheduled["resources"] == [rule_arn]
    events.remove_targets(Rule=rule, Ids=["fn"])
    events.delete_rule(Name=rule)


def test_an_event_for_a_missing_function_goes_to_the_dead_letter_queue(events_platform, events) -> None:
    rule = unique("gone")
    subject = f"test.{unique('dead')}"
    missing = unique("no-such-function")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [rule]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "gone", "Arn": ARN + missing,
                                            "DeadLetterConfig": {"Arn": f"arn:kambda:nats:::{subject}"}}])

    async def receive() -> tuple[dict, dict]:
        nc = await nats.connect(nats_url(events_platform))
        try:
            sub = await nc.subscribe(subject)
            await nc.flush()
            events.put_events(Entries=[entry({"lost": False}, source=rule)])
            msg = await sub.next_msg(timeout=60)
            return json.loads(msg.data), dict(msg.headers or {})
        finally:
            await nc.close()

    dead, headers = asyncio.run(receive())
    assert dead["detail"] == {"lost": False}
    assert headers["ERROR_CODE"] == "ResourceNotFoundException" and missing in headers["ERROR_MESSAGE"]
