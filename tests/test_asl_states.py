"""ASL conformance: the state types' own fields: Wait, Fail, Task timeouts, Parallel, Map (ItemsPath, ItemSelector,
ItemBatcher, MaxConcurrency, tolerated failures), and ``parse`` building the machine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from workflows.language import (
    ENTERED_EVENT_ID,
    StatesError,
    enter,
    fail_of,
    heartbeat_seconds,
    inspect,
    items,
    leave,
    max_concurrency,
    parse,
    timeout_seconds,
    tolerated,
    wait_until,
)
from workflows.language.model import State, build_state

CTX: dict[str, Any] = {"Execution": {"Name": "e"}, ENTERED_EVENT_ID: 5}
PROC = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


def st(body: dict[str, Any], language: str = "JSONPath") -> State:
    if body["Type"] not in ("Fail", "Succeed", "Choice"):
        body = {"End": True, **body}
    return build_state("S", body, language)


def test_wait_seconds_timestamp_and_their_paths() -> None:
    assert wait_until(st({"Type": "Wait", "Seconds": 10}), {}, CTX, {}, NOW) == NOW + timedelta(seconds=10)
    ts = st({"Type": "Wait", "Timestamp": "2026-12-05T00:00:00Z"})
    assert wait_until(ts, {}, CTX, {}, NOW) == datetime(2026, 12, 5, tzinfo=UTC)
    sp = st({"Type": "Wait", "SecondsPath": "$.wait"})
    assert wait_until(sp, {"wait": 3}, CTX, {}, NOW) == NOW + timedelta(seconds=3)
    tp = st({"Type": "Wait", "TimestampPath": "$.expirydate"})
    when = wait_until(tp, {"expirydate": "2026-12-04T13:30:00.5+01:00"}, CTX, {}, NOW)
    assert when == datetime(2026, 12, 4, 12, 30, 0, 500000, tzinfo=UTC)


def test_wait_path_errors_are_runtime_errors() -> None:
    with pytest.raises(StatesError) as e:
        wait_until(st({"Type": "Wait", "SecondsPath": "$.wait"}), {"wait": -1}, CTX, {}, NOW)
    assert e.value.error == "States.Runtime"
    assert e.value.cause.startswith("An error occurred while executing the state 'S' (entered at the event id #5).")
    with pytest.raises(StatesError):
        wait_until(st({"Type": "Wait", "SecondsPath": "$.wait"}), {}, CTX, {}, NOW)
    with pytest.raises(StatesError):
        wait_until(st({"Type": "Wait", "TimestampPath": "$.t"}), {"t": "tomorrow"}, CTX, {}, NOW)


def test_jsonata_wait() -> None:
    s = st({"Type": "Wait", "Seconds": "{% $states.input.n * 2 %}"}, "JSONata")
    assert wait_until(s, {"n": 4}, CTX, {}, NOW) == NOW + timedelta(seconds=8)
    t = st({"Type": "Wait", "Timestamp": "{% $t %}"}, "JSONata")
    assert wait_until(t, {}, CTX, {"t": "2027-01-01T00:00:00Z"}, NOW) == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(StatesError) as e:
        wait_until(s, {"n": "x"}, CTX, {}, NOW)
    assert e.value.error == "States.QueryEvaluationError"


def test_fail_error_and_cause_literal_path_and_intrinsic() -> None:
    assert fail_of(st({"Type": "Fail", "Error": "ErrorA", "Cause": "Kaiju attack"}), {}, CTX, {}) == (
        "ErrorA",
        "Kaiju attack",
    )
    s = st({"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('Cause: {}', $.c)"})
    assert fail_of(s, {"e": "Err", "c": "why"}, CTX, {}) == ("Err", "Cause: why")
    assert fail_of(st({"Type": "Fail"}), {}, CTX, {}) == ("", "")
    j = st({"Type": "Fail", "Error": "{% $states.input.code %}", "Cause": "fixed"}, "JSONata")
    assert fail_of(j, {"code": "E42"}, CTX, {}) == ("E42", "fixed")
    with pytest.raises(StatesError):
        fail_of(st({"Type": "Fail", "ErrorPath": "$.e"}), {"e": 1}, CTX, {})


def test_task_timeouts_literal_path_and_jsonata() -> None:
    s = st({"Type": "Task", "Resource": "r", "TimeoutSeconds": 300, "HeartbeatSeconds": 60})
    assert (timeout_seconds(s, {}, CTX, {}), heartbeat_seconds(s, {}, CTX, {})) == (300, 60)
    p = st({"Type": "Task", "Resource": "r", "TimeoutSecondsPath": "$.t", "HeartbeatSecondsPath": "$.h"})
    assert (timeout_seconds(p, {"t": 9, "h": 3}, CTX, {}), heartbeat_seconds(p, {"t": 9, "h": 3}, CTX, {})) == (9, 3)
    assert timeout_seconds(st({"Type": "Task", "Resource": "r"}), {}, CTX, {}) is None
    j = st({"Type": "Task", "Resource": "r", "TimeoutSeconds": "{% $states.input.t %}"}, "JSONata")
    assert timeout_seconds(j, {"t": 7}, CTX, {}) == 7
    with pytest.raises(StatesError):
        timeout_seconds(p, {"t": 0, "h": 1}, CTX, {})


def test_parallel_input_and_output() -> None:
    s = st({"Type": "Parallel", "Branches": [], "Parameters": {"x.$": "$.a"}, "ResultPath": "$.results"})
    assert enter(s, {"a": 1}, CTX, {}) == {"x": 1}
    assert leave(s, {"a": 1}, [{"b": 1}, {"b": 2}], CTX, {})[0] == {"a": 1, "results": [{"b": 1}, {"b": 2}]}


MAP_INPUT = {
    "ship-date": "2016-03-14T01:59:00Z",
    "detail": {
        "delivery-partner": "UQS",
        "shipped": [
            {"prod": "R31", "dest-code": 9511, "quantity": 1344},
            {"prod": "S39", "dest-code": 9511, "quantity": 40},
        ],
    },
}


def test_map_items_path_and_item_selector_as_in_the_docs() -> None:
    s = st(
        {
            "Type": "Map",
            "InputPath": "$.detail",
            "ItemsPath": "$.shipped",
            "ItemSelector": {
                "parcel.$": "$$.Map.Item.Value",
                "courier.$": "$.delivery-partner",
                "i.$": "$$.Map.Item.Index",
            },
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
        }
    )
    effective = enter(s, MAP_INPUT, CTX, {})
    assert items(s, effective, CTX, {}) == [
        {"parcel": {"prod": "R31", "dest-code": 9511, "quantity": 1344}, "courier": "UQS", "i": 0},
        {"parcel": {"prod": "S39", "dest-code": 9511, "quantity": 40}, "courier": "UQS", "i": 1},
    ]


def test_map_legacy_parameters_and_plain_items() -> None:
    s = st({"Type": "Map", "ItemsPath": "$.xs", "Parameters": {"v.$": "$$.Map.Item.Value"}, "Iterator": PROC})
    assert items(s, {"xs": [1, 2]}, CTX, {}) == [{"v": 1}, {"v": 2}]
    plain = st({"Type": "Map", "ItemProcessor": PROC})
    assert items(plain, [3, 4], CTX, {}) == [3, 4]
    with pytest.raises(StatesError) as e:
        items(plain, {"not": "an array"}, CTX, {})
    assert e.value.error == "States.Runtime"


def test_map_item_batcher() -> None:
    s = st(
        {
            "Type": "Map",
            "ItemProcessor": PROC,
            "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"factor.$": "$.factor"}},
            "ItemsPath": "$.xs",
        }
    )
    assert items(s, {"xs": [1, 2, 3, 4, 5], "factor": 10}, CTX, {}) == [
        {"Items": [1, 2], "BatchInput": {"factor": 10}},
        {"Items": [3, 4], "BatchInput": {"factor": 10}},
        {"Items": [5], "BatchInput": {"factor": 10}},
    ]
    by_bytes = st({"Type": "Map", "ItemProcessor": PROC, "ItemBatcher": {"MaxInputBytesPerBatch": 7}})
    assert items(by_bytes, ["aa", "bb", "cc"], CTX, {}) == [{"Items": ["aa"]}, {"Items": ["bb"]}, {"Items": ["cc"]}]
    assert items(
        st({"Type": "Map", "ItemProcessor": PROC, "ItemBatcher": {"MaxInputBytesPerBatch": 8}}), ["aa", "bb"], CTX, {}
    ) == [{"Items": ["aa", "bb"]}]


def test_map_jsonata_items_and_selector() -> None:
    s = st(
        {
            "Type": "Map",
            "Items": "{% $states.input.xs %}",
            "ItemSelector": {
                "v": "{% $states.context.Map.Item.Value * $k %}",
                "i": "{% $states.context.Map.Item.Index %}",
            },
            "ItemProcessor": PROC,
        },
        "JSONata",
    )
    assert items(s, {"xs": [1, 2]}, CTX, {"k": 3}) == [{"v": 3, "i": 0}, {"v": 6, "i": 1}]
    literal = st({"Type": "Map", "Items": [1, "{% 1 + 1 %}"], "ItemProcessor": PROC}, "JSONata")
    assert items(literal, {}, CTX, {}) == [1, 2]


def test_max_concurrency() -> None:
    assert max_concurrency(st({"Type": "Map", "ItemProcessor": PROC}), {}, CTX, {}) == 0
    assert max_concurrency(st({"Type": "Map", "ItemProcessor": PROC, "MaxConcurrency": 40}), {}, CTX, {}) == 40
    assert (
        max_concurrency(st({"Type": "Map", "ItemProcessor": PROC, "MaxConcurrencyPath": "$.m"}), {"m": 3}, CTX, {}) == 3
    )


@pytest.mark.parametrize(
    ("fields", "total", "failed", "expected"),
    [
        ({}, 10, 0, True),
        ({}, 10, 1, False),
        ({"ToleratedFailureCount": 2}, 10, 2, True),
        ({"ToleratedFailureCount": 2}, 10, 3, False),
        ({"ToleratedFailurePercentage": 20}, 10, 2, True),
        ({"ToleratedFailurePercentage": 20}, 10, 3, False),
        ({"ToleratedFailureCount": 5, "ToleratedFailurePercentage": 10}, 10, 2, False),
        ({"ToleratedFailurePercentage": 100}, 10, 10, True),
        ({"ToleratedFailureCountPath": "$.n"}, 10, 4, True),
    ],
)
def test_tolerated_failures(fields: dict[str, Any], total: int, failed: int, expected: bool) -> None:
    s = st({"Type": "Map", "ItemProcessor": PROC, **fields})
    assert tolerated(s, total, failed, {"n": 4}, CTX, {}) is expected


def test_parse_builds_the_machine_with_nested_branches_and_processors() -> None:
    definition = {
        "Comment": "c",
        "QueryLanguage": "JSONata",
        "StartAt": "P",
        "TimeoutSeconds": 60,
        "States": {
            "P": {
                "Type": "Parallel",
                "QueryLanguage": "JSONPath",
                "Branches": [{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}],
                "Next": "M",
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F"}],
            },
            "M": {
                "Type": "Map",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                    "StartAt": "B",
                    "States": {"B": {"Type": "Pass", "End": True}},
                },
                "End": True,
            },
            "F": {"Type": "Fail", "Error": "E"},
        },
    }
    m = parse(json.dumps(definition))
    assert (m.start_at, m.query_language, m.timeout_seconds, m.comment) == ("P", "JSONata", 60, "c")
    p = m.states["P"]
    assert p.query_language == "JSONPath" and p.branches[0].query_language == "JSONPath"
    assert p.retry[0].max_attempts == 1 and p.catch[0].next == "F" and p.next == "M"
    mp = m.states["M"]
    assert mp.processor is not None and mp.processor.query_language == "JSONata"
    assert (mp.processor_mode, mp.execution_type, mp.end) == ("DISTRIBUTED", "EXPRESS", True)
    assert m.states["F"].terminal


def test_inspection_data_for_test_state() -> None:
    s = st(
        {
            "Type": "Task",
            "Resource": "arn:x",
            "InputPath": "$.payload",
            "Parameters": {"id.$": "$.id"},
            "ResultSelector": {"ok.$": "$.Status"},
            "ResultPath": "$.out",
            "Assign": {"last.$": "$.ok"},
        }
    )
    data = inspect(s, {"payload": {"id": 1}}, {"Status": "done", "Other": 2}, CTX, {})
    assert data == {
        "input": {"payload": {"id": 1}},
        "afterInputPath": {"id": 1},
        "afterParameters": {"id": 1},
        "result": {"Status": "done", "Other": 2},
        "afterResultSelector": {"ok": "done"},
        "afterResultPath": {"payload": {"id": 1}, "out": {"ok": "done"}},
        "variables": {"last": "done"},
    }
    j = st({"Type": "Task", "Resource": "arn:x", "Arguments": {"a": "{% $states.input.n %}"}}, "JSONata")
    assert inspect(j, {"n": 2}, "r", CTX, {}) == {
        "input": {"n": 2},
        "afterArguments": {"a": 2},
        "result": "r",
        "variables": {},
    }
    c = st({"Type": "Choice", "Choices": [{"Variable": "$.n", "IsPresent": True, "Next": "X", "Assign": {"seen": 1}}]})
    assert inspect(c, {"n": 1}, None, CTX, {}) == {
        "input": {"n": 1},
        "afterInputPath": {"n": 1},
        "variables": {"seen": 1},
    }
