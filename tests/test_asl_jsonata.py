"""ASL conformance: the JSONata query language: Arguments, Output, Assign and variable visibility, ``$states``,
AWS's extra functions, and evaluation errors."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest

from workflows.language import ENTERED_EVENT_ID, StatesError, enter, leave
from workflows.language.model import State, build_state

CTX: dict[str, Any] = {"Execution": {"Name": "e", "Input": {"orig": True}}, "State": {"Name": "S"}, ENTERED_EVENT_ID: 3}


def st(body: dict[str, Any]) -> State:
    return build_state("S", {"End": True, **body}, "JSONata")


def output(body: dict[str, Any], state_input: Any, result: Any = None, variables: dict[str, Any] | None = None) -> Any:
    return leave(st(body), state_input, result, CTX, variables or {})[0]


def test_pass_outputs_its_input_by_default_or_its_output_expression() -> None:
    assert output({"Type": "Pass"}, {"a": 1}) == {"a": 1}
    assert output({"Type": "Pass", "Output": {"b": "{% $states.input.a + 1 %}", "lit": [1, "x"]}}, {"a": 1}) == {
        "b": 2,
        "lit": [1, "x"],
    }
    assert output({"Type": "Pass", "Output": "{% $states.input.a %}"}, {"a": None}) is None
    assert output({"Type": "Pass", "Output": "{% null %}"}, {}) is None


def test_the_docs_conversion_example_gives_the_same_result_in_both_languages() -> None:
    variables = {"customerName": "María"}
    expected = {"static": "Hello", "title": "Doctor", "name": "María", "not-evaluated": "$customerName"}
    jsonpath = build_state(
        "T",
        {
            "Type": "Task",
            "Resource": "arn:x",
            "End": True,
            "Parameters": {
                "static": "Hello",
                "title.$": "$.title",
                "name.$": "$customerName",
                "not-evaluated": "$customerName",
            },
        },
        "JSONPath",
    )
    jsonata = st(
        {
            "Type": "Task",
            "Resource": "arn:x",
            "Arguments": {
                "static": "Hello",
                "title": "{% $states.input.title %}",
                "name": "{% $customerName %}",
                "not-evaluated": "$customerName",
            },
        }
    )
    for s in (jsonpath, jsonata):
        assert enter(s, {"title": "Doctor"}, CTX, variables) == expected


def test_eval_is_not_available() -> None:
    with pytest.raises(StatesError) as e:
        output({"Type": "Pass", "Output": "{% $eval('1 + 1') %}"}, {})
    assert e.value.error == "States.QueryEvaluationError"


def test_task_arguments_and_output_of_the_result() -> None:
    s = st(
        {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Arguments": {"FunctionName": "f", "Payload": {"name": "{% $states.input.customer.name %}"}},
            "Output": {"total": "{% $states.result.Payload.total %}", "who": "{% $states.input.customer.name %}"},
        }
    )
    inp = {"customer": {"name": "Ann"}}
    assert enter(s, inp, CTX, {}) == {"FunctionName": "f", "Payload": {"name": "Ann"}}
    assert leave(s, inp, {"Payload": {"total": 12}}, CTX, {})[0] == {"total": 12, "who": "Ann"}
    bare = st({"Type": "Task", "Resource": "r"})
    assert enter(bare, inp, CTX, {}) == inp
    assert leave(bare, inp, {"r": 1}, CTX, {})[0] == {"r": 1}


def test_assign_is_visible_after_the_state_not_in_its_own_output_or_assign() -> None:
    s = st({"Type": "Pass", "Assign": {"x": 42, "y": "{% $x %}"}, "Output": {"seen": "{% $x %}"}})
    out, v = leave(s, {}, None, CTX, {"x": 5})
    assert out == {"seen": 5}
    assert v == {"x": 42, "y": 5}
    nxt = st({"Type": "Pass", "Output": "{% $x + $y %}"})
    assert leave(nxt, {}, None, CTX, v)[0] == 47


def test_assign_from_the_task_result() -> None:
    s = st({"Type": "Task", "Resource": "r", "Assign": {"id": "{% $states.result.id %}", "in": "{% $states.input %}"}})
    assert leave(s, {"k": 1}, {"id": "abc"}, CTX, {"keep": 0})[1] == {"keep": 0, "id": "abc", "in": {"k": 1}}


def test_context_is_states_context_without_private_keys() -> None:
    out = output({"Type": "Pass", "Output": "{% $states.context %}"}, {})
    assert out == {"Execution": {"Name": "e", "Input": {"orig": True}}, "State": {"Name": "S"}}


def test_aws_functions() -> None:
    cases = {
        "{% $partition([1,2,3,4], 2) %}": [[1, 2], [3, 4]],
        "{% $partition([1,2,3], 2) %}": [[1, 2], [3]],
        "{% $range(0, 10, 2) %}": [0, 2, 4, 6, 8, 10],
        "{% $range(3, 1, -1) %}": [3, 2, 1],
        "{% $hash('Mary', 'SHA-256') %}": hashlib.sha256(b"Mary").hexdigest(),
        "{% $parse('{\"a\": [1, null]}') %}": {"a": [1, None]},
    }
    for expression, expected in cases.items():
        assert output({"Type": "Pass", "Output": expression}, {}) == expected, expression
    r = output({"Type": "Pass", "Output": "{% $random() %}"}, {})
    assert 0 <= r < 1
    assert output({"Type": "Pass", "Output": "{% $random(7) %}"}, {}) == output(
        {"Type": "Pass", "Output": "{% $random(7) %}"}, {}
    )
    assert uuid.UUID(output({"Type": "Pass", "Output": "{% $uuid() %}"}, {})).version == 4


def test_standard_jsonata_functions_work() -> None:
    inp = {"orders": [{"price": 10, "qty": 2}, {"price": 5, "qty": 1}]}
    body = {
        "Type": "Pass",
        "Output": {
            "total": "{% $sum($states.input.orders.(price * qty)) %}",
            "n": "{% $count($states.input.orders) %}",
        },
    }
    assert output(body, inp) == {"total": 25, "n": 2}
    assert output({"Type": "Pass", "Output": "{% $uppercase('abc') & '!' %}"}, {}) == "ABC!"


def test_undefined_and_failing_expressions_are_query_evaluation_errors() -> None:
    for expression in ("{% $states.input.missing %}", "{% $notAFunction() %}", "{% 1 + %}"):
        with pytest.raises(StatesError) as e:
            output({"Type": "Pass", "Output": expression}, {"a": 1})
        assert e.value.error == "States.QueryEvaluationError", expression
        assert e.value.cause.startswith("An error occurred while executing the state 'S' (entered at the event id #3).")
    with pytest.raises(StatesError) as e:
        output({"Type": "Pass", "Output": "{% $range(1, 5000, 1) %}"}, {})
    assert e.value.error == "States.QueryEvaluationError"


def test_a_runaway_expression_is_stopped() -> None:
    with pytest.raises(StatesError) as e:
        output({"Type": "Pass", "Output": "{% ($f := function($x){ $f($x) }; $f(1)) %}"}, {})
    assert e.value.error == "States.QueryEvaluationError"


def test_large_output_is_data_limit_exceeded() -> None:
    with pytest.raises(StatesError) as e:
        output({"Type": "Pass", "Output": "{% $pad('', 300000, 'x') %}"}, {})
    assert e.value.error == "States.DataLimitExceeded"


def test_non_expression_strings_are_literals() -> None:
    assert output({"Type": "Pass", "Output": {"a": "{% not closed", "b": "$.x", "c": "%}"}}, {}) == {
        "a": "{% not closed",
        "b": "$.x",
        "c": "%}",
    }


def test_json_null_in_the_input_and_variables_is_null_not_nothing() -> None:
    body = {
        "Type": "Pass",
        "Output": {
            "isNull": "{% $states.input.a = null %}",
            "type": "{% $type($states.input.a) %}",
            "list": "{% $states.input.l %}",
            "var": "{% $v = null %}",
        },
    }
    assert output(body, {"a": None, "l": [1, None]}, variables={"v": None}) == {
        "isNull": True,
        "type": "null",
        "list": [1, None],
        "var": True,
    }
