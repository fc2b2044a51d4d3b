"""ASL conformance: JSONPath input and output processing (InputPath, Parameters, ResultSelector, ResultPath,
OutputPath, the context object, variables), with the inputs and outputs of AWS's documentation examples."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.language import ENTERED_EVENT_ID, State, StatesError, enter, leave
from workflows.language.model import build_state
from workflows.language.paths import put, select

CTX: dict[str, Any] = {
    "Execution": {"Id": "arn:aws:states:us-east-1:123456789012:execution:m:e1", "Name": "e1", "Input": {"a": 1}},
    "State": {"Name": "S", "EnteredTime": "2026-12-04T00:00:00Z", "RetryCount": 0},
    "StateMachine": {"Id": "arn:aws:states:us-east-1:123456789012:stateMachine:m", "Name": "m"},
    ENTERED_EVENT_ID: 2,
}


def state(body: dict[str, Any], name: str = "S") -> State:
    return build_state(
        name, {"End": True, **body} if body.get("Type") not in ("Choice", "Succeed", "Fail") else body, "JSONPath"
    )


def run(body: dict[str, Any], state_input: Any, result: Any = None, variables: dict[str, Any] | None = None) -> Any:
    """Enter then leave a state; for a Pass the effective input is its result, for others ``result``."""
    s = state(body)
    v = variables or {}
    effective = enter(s, state_input, CTX, v)
    output, _ = leave(s, state_input, effective if s.type == "Pass" else result, CTX, v)
    return output


DOC_INPUT = {"comment": "This is a test", "details": "Default example", "who": "Step Functions"}


def test_result_path_default_replaces_the_input() -> None:
    assert run({"Type": "Task", "Resource": "r"}, DOC_INPUT, "Hello, Step Functions!") == "Hello, Step Functions!"


def test_result_path_null_discards_the_result() -> None:
    assert run({"Type": "Task", "Resource": "r", "ResultPath": None}, DOC_INPUT, "Hello, Step Functions!") == DOC_INPUT


def test_result_path_includes_the_result_with_the_input() -> None:
    out = run({"Type": "Task", "Resource": "r", "ResultPath": "$.taskresult"}, DOC_INPUT, "Hello, Step Functions!")
    assert out == {**DOC_INPUT, "taskresult": "Hello, Step Functions!"}


def test_result_path_creates_missing_parents_and_updates_nodes() -> None:
    out = run({"Type": "Task", "Resource": "r", "ResultPath": "$.strings.lambdaresult"}, {"strings": {"s1": "a"}}, 1)
    assert out == {"strings": {"s1": "a", "lambdaresult": 1}}
    out = run({"Type": "Task", "Resource": "r", "ResultPath": "$.new.deep"}, {"x": 1}, 2)
    assert out == {"x": 1, "new": {"deep": 2}}
    out = run({"Type": "Task", "Resource": "r", "ResultPath": "$.comment"}, DOC_INPUT, "replaced")
    assert out == {**DOC_INPUT, "comment": "replaced"}


def test_result_path_into_a_non_object_is_a_result_path_match_failure() -> None:
    with pytest.raises(StatesError) as e:
        run({"Type": "Task", "Resource": "r", "ResultPath": "$.who.x"}, DOC_INPUT, 1)
    assert e.value.error == "States.ResultPathMatchFailure"
    assert e.value.cause == 'Unable to apply step "x" to input "Step Functions"'


def test_input_path_selects_and_null_gives_an_empty_object() -> None:
    doc = {
        "comment": "Example for InputPath.",
        "dataset1": {"val1": 1, "val2": 2, "val3": 3},
        "dataset2": {"val1": "a", "val2": "b", "val3": "c"},
    }
    assert run({"Type": "Pass", "InputPath": "$.dataset2"}, doc) == {"val1": "a", "val2": "b", "val3": "c"}
    assert run({"Type": "Pass", "InputPath": None}, doc) == {}
    assert run({"Type": "Pass", "OutputPath": None}, doc) == {}


def test_missing_output_path_as_aws_reports_it() -> None:
    s = state({"Type": "Task", "Resource": "r", "OutputPath": "$.Payload"}, name="AggregateIdentityResults")
    with pytest.raises(StatesError) as e:
        leave(s, {}, {"ExecutedVersion": "$LATEST", "StatusCode": 200}, {**CTX, ENTERED_EVENT_ID: 13}, {})
    assert e.value.cause == (
        "An error occurred while executing the state 'AggregateIdentityResults' (entered at the event id #13). "
        "Invalid path '$.Payload' : No results for path: $['Payload']"
    )


def test_missing_input_path_is_a_runtime_error_with_aws_cause() -> None:
    with pytest.raises(StatesError) as e:
        run({"Type": "Pass", "InputPath": "$.missing.x"}, {"a": 1})
    assert e.value.error == "States.Runtime"
    assert e.value.cause == (
        "An error occurred while executing the state 'S' (entered at the event id #2). "
        "Invalid path '$.missing.x' : No results for path: $['missing']['x']"
    )


def test_parameters_select_with_paths_and_keep_literals() -> None:
    doc = {
        "comment": "Example for Parameters.",
        "product": {
            "details": {"color": "blue", "size": "small", "material": "cotton"},
            "availability": "in stock",
            "sku": "2317",
            "cost": "$23",
        },
    }
    params = {
        "comment": "Selecting what I care about.",
        "MyDetails": {"size.$": "$.product.details.size", "exists.$": "$.product.availability", "StaticValue": "foo"},
    }
    assert run({"Type": "Pass", "Parameters": params}, doc) == {
        "comment": "Selecting what I care about.",
        "MyDetails": {"size": "small", "exists": "in stock", "StaticValue": "foo"},
    }


def test_parameters_missing_path_is_aws_runtime_error() -> None:
    with pytest.raises(StatesError) as e:
        run({"Type": "Task", "Resource": "r", "Parameters": {"JobName.$": "$.JobName"}}, {})
    assert e.value.error == "States.Runtime"
    assert e.value.cause == (
        "An error occurred while executing the state 'S' (entered at the event id #2). "
        "The JSONPath '$.JobName' specified for the field 'JobName.$' could not be found in the input '{}'"
    )


def test_parameters_missing_path_as_aws_reports_it() -> None:
    s = state({"Type": "Task", "Resource": "r", "Parameters": {"address.$": "$.application.address"}}, "Check Address")
    with pytest.raises(StatesError) as e:
        enter(s, {"flagged": False}, {**CTX, ENTERED_EVENT_ID: 7}, {})
    assert e.value.cause == (
        "An error occurred while executing the state 'Check Address' (entered at the event id #7). The JSONPath "
        "'$.application.address' specified for the field 'address.$' could not be found in the input "
        "'{\"flagged\":false}'"
    )


def test_parameters_read_the_context_object_but_not_private_keys() -> None:
    out = run(
        {"Type": "Pass", "Parameters": {"MyInput.$": "$", "name.$": "$$.Execution.Name", "ctx.$": "$$"}}, {"k": 1}
    )
    assert out["MyInput"] == {"k": 1}
    assert out["name"] == "e1"
    assert ENTERED_EVENT_ID not in out["ctx"] and out["ctx"]["StateMachine"]["Name"] == "m"


def test_parameters_inside_arrays_and_nested_objects() -> None:
    params = {"list": [{"v.$": "$.a"}, "literal.$ stays", 3], "nested": {"deeper": {"w.$": "$.b[1]"}}}
    assert run({"Type": "Pass", "Parameters": params}, {"a": 1, "b": [5, 6]}) == {
        "list": [{"v": 1}, "literal.$ stays", 3],
        "nested": {"deeper": {"w": 6}},
    }


def test_result_selector_then_result_path_as_in_the_emr_example() -> None:
    result = {
        "resourceType": "elasticmapreduce",
        "resource": "createCluster.sync",
        "output": {"SdkHttpMetadata": {"HttpStatusCode": 200}, "ClusterId": "AKIAIOSFODNN7EXAMPLE"},
    }
    body = {
        "Type": "Task",
        "Resource": "arn:aws:states:::elasticmapreduce:createCluster.sync",
        "ResultSelector": {"ClusterId.$": "$.output.ClusterId", "ResourceType.$": "$.resourceType"},
        "ResultPath": "$.EMROutput",
    }
    assert run(body, {"in": 1}, result) == {
        "in": 1,
        "EMROutput": {"ClusterId": "AKIAIOSFODNN7EXAMPLE", "ResourceType": "elasticmapreduce"},
    }


def test_output_path_selects_after_result_path() -> None:
    body = {"Type": "Task", "Resource": "r", "ResultPath": "$.r", "OutputPath": "$.r.Payload"}
    assert run(body, {"x": 1}, {"Payload": {"ok": True}, "StatusCode": 200}) == {"ok": True}


def test_pass_result_and_result_path() -> None:
    body = {"Type": "Pass", "Result": {"x-datum": 0.381018, "y-datum": 622.2269926397355}, "ResultPath": "$.coords"}
    doc = {"georefOf": "Home"}
    assert run(body, doc) == {"georefOf": "Home", "coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355}}


def test_indefinite_paths_yield_lists() -> None:
    data = {"items": [{"p": 1, "ok": True}, {"p": 2, "ok": False}, {"p": 3, "ok": True}]}
    assert select("$.items[*].p", data) == [1, 2, 3]
    assert select("$.items[?(@.ok == true)].p", data) == [1, 3]
    assert select("$..p", data) == [1, 2, 3]
    assert select("$.items[0:2].p", data) == [1, 2]
    assert select("$.nothing[*]", data) == []
    assert select("$['items'][1]['p']", data) == 2
    assert select("$.items[?(@.p > 1 && @.ok == true)].p", data) == [3]
    assert select("$.items.length()", data) == 3
    assert select("$.items[?(@.ok == true)].length()", data) == 2


def test_variables_in_jsonpath_fields() -> None:
    v = {"answer": 42, "obj": {"deep": [1, 2]}}
    assert run({"Type": "Pass", "InputPath": "$answer"}, {}, variables=v) == 42
    assert run({"Type": "Pass", "Parameters": {"d.$": "$obj.deep[1]"}}, {}, variables=v) == {"d": 2}
    with pytest.raises(StatesError):
        run({"Type": "Pass", "InputPath": "$undefinedVar"}, {}, variables=v)


def test_assign_in_jsonpath_sees_the_result_and_takes_effect_after_the_state() -> None:
    s1 = state(
        {"Type": "Pass", "Result": {"theQuestion": "What?"}, "Assign": {"question.$": "$.theQuestion", "answer": 42}}
    )
    _, v = leave(s1, {}, enter(s1, {}, CTX, {}), CTX, {})
    assert v == {"question": "What?", "answer": 42}
    s2 = state(
        {
            "Type": "Pass",
            "InputPath": "$answer",
            "ResultPath": "$.theAnswer",
            "OutputPath": "$answer",
            "Assign": {"answer": "<omitted>"},
        }
    )
    out, v2 = leave(s2, {}, enter(s2, {}, CTX, v), CTX, v)
    assert out == 42  # OutputPath still sees the value the state entered with
    assert v2["answer"] == "<omitted>" and v2["question"] == "What?"


def test_choice_wait_succeed_pass_input_through_input_and_output_path() -> None:
    s = state({"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"})
    assert leave(s, {"a": {"b": 7}}, None, CTX, {})[0] == 7


def test_integers_beyond_64_bits_are_json_too() -> None:
    assert run({"Type": "Task", "Resource": "r", "ResultPath": "$.big"}, {"a": 1}, 2**70) == {"a": 1, "big": 2**70}


def test_payload_over_256_kb_is_data_limit_exceeded() -> None:
    run({"Type": "Task", "Resource": "r"}, {}, "x" * (256 * 1024 - 2))  # 262144 bytes with the quotes: allowed
    with pytest.raises(StatesError) as e:
        run({"Type": "Task", "Resource": "r"}, {}, "x" * (256 * 1024 - 1))
    assert e.value.error == "States.DataLimitExceeded"
    assert e.value.cause == (
        "The state/task 'S' returned a result with a size exceeding the maximum number of bytes service limit."
    )
    with pytest.raises(StatesError) as e:
        run({"Type": "Pass", "Assign": {"big.$": "$.x"}}, {"x": "y" * (256 * 1024)})
    assert e.value.error == "States.DataLimitExceeded"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text("abc", min_size=1, max_size=2), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    data=st.dictionaries(st.text("abcd", min_size=1, max_size=3), json_values, max_size=4),
    keys=st.lists(st.text("abcd", min_size=1, max_size=3), min_size=1, max_size=3),
    value=json_values,
)
def test_put_then_select_round_trips_and_leaves_the_input_unchanged(
    data: dict[str, Any], keys: list[str], value: Any
) -> None:
    path = "$." + ".".join(keys)
    before = repr(data)
    try:
        out = put(path, data, value)
    except StatesError as e:
        assert e.error == "States.ResultPathMatchFailure"
        return
    assert select(path, out) == value
    assert repr(data) == before
