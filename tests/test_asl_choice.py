"""ASL conformance: Choice states, every comparison operator, And/Or/Not, Assign in rules, JSONata Condition."""

from __future__ import annotations

from typing import Any

import pytest

from workflows.language import ENTERED_EVENT_ID, StatesError, choose, decide
from workflows.language.choice import COMPARISON_OPERATORS, evaluate_rule
from workflows.language.model import build_state

CTX: dict[str, Any] = {"Execution": {"Name": "e"}}


def matches(rule: dict[str, Any], data: Any, variables: dict[str, Any] | None = None) -> bool:
    return evaluate_rule(rule, data, CTX, variables or {})


def test_the_docs_example_with_not_and_numeric_ranges() -> None:
    body = {
        "Type": "Choice",
        "Choices": [
            {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
            {"Variable": "$.value", "NumericEquals": 0, "Next": "ValueIsZero"},
            {
                "And": [
                    {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                    {"Variable": "$.value", "NumericLessThan": 30},
                ],
                "Next": "ValueInTwenties",
            },
        ],
        "Default": "DefaultState",
    }
    s = build_state("Choice", body, "JSONPath")
    assert choose(s, {"type": "Private", "value": 22}, CTX, {})[0] == "ValueInTwenties"
    assert choose(s, {"type": "Public", "value": 22}, CTX, {})[0] == "Public"
    assert choose(s, {"type": "Private", "value": 0}, CTX, {})[0] == "ValueIsZero"
    assert choose(s, {"type": "Private", "value": 50}, CTX, {})[0] == "DefaultState"


def test_no_match_without_default_is_no_choice_matched() -> None:
    s = build_state(
        "C", {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsPresent": True, "Next": "X"}]}, "JSONPath"
    )
    with pytest.raises(StatesError) as e:
        choose(s, {}, CTX, {})
    assert e.value.error == "States.NoChoiceMatched"


@pytest.mark.parametrize(
    ("operator", "value", "data", "expected"),
    [
        ("StringEquals", "a", "a", True),
        ("StringEquals", "a", "b", False),
        ("StringEquals", "1", 1, False),
        ("StringLessThan", "a", "B", True),
        ("StringLessThan", "B", "a", False),
        ("StringLessThan", "b", "a", True),
        ("StringGreaterThan", "a", "b", True),
        ("StringLessThanEquals", "a", "a", True),
        ("StringGreaterThanEquals", "b", "a", False),
        ("NumericEquals", 1, 1.0, True),
        ("NumericEquals", 1, True, False),
        ("NumericEquals", 1, "1", False),
        ("NumericLessThan", 10, 9.5, True),
        ("NumericGreaterThan", 10, 10, False),
        ("NumericLessThanEquals", 10, 10, True),
        ("NumericGreaterThanEquals", 10, 11, True),
        ("BooleanEquals", True, True, True),
        ("BooleanEquals", True, 1, False),
        ("TimestampEquals", "2001-01-01T12:00:00Z", "2001-01-01T14:00:00+02:00", True),
        ("TimestampLessThan", "2001-01-01T12:00:00Z", "2001-01-01T11:59:59.999Z", True),
        ("TimestampGreaterThan", "2001-01-01T12:00:00Z", "2001-01-01T12:00:00.001Z", True),
        ("TimestampLessThanEquals", "2001-01-01T12:00:00Z", "2001-01-01T12:00:00Z", True),
        ("TimestampGreaterThanEquals", "2001-01-01T12:00:00Z", "2000-12-31T23:00:00Z", False),
        ("TimestampEquals", "2001-01-01T12:00:00Z", "not a time", False),
        ("TimestampEquals", "2001-01-01T12:00:00Z", "2001-01-01t12:00:00Z", False),
        ("StringMatches", "log-*.txt", "log-2024-01.txt", True),
        ("StringMatches", "log-*.txt", "log-.txt", True),
        ("StringMatches", "log-*.txt", "log-1.txt.gz", False),
        ("StringMatches", "*", "", True),
        ("StringMatches", r"a\*b", "a*b", True),
        ("StringMatches", r"a\*b", "axxb", False),
        ("StringMatches", r"back\\slash*", "back\\slash!", True),
        ("StringMatches", "x*", 1, False),
    ],
)
def test_comparison_operators(operator: str, value: Any, data: Any, expected: bool) -> None:
    assert matches({"Variable": "$.v", operator: value}, {"v": data}) is expected


@pytest.mark.parametrize(
    ("operator", "other", "data", "expected"),
    [
        ("StringEqualsPath", "x", "x", True),
        ("StringLessThanPath", "b", "a", True),
        ("StringGreaterThanPath", "b", "a", False),
        ("StringLessThanEqualsPath", "a", "a", True),
        ("StringGreaterThanEqualsPath", "a", "b", True),
        ("NumericEqualsPath", 2, 2, True),
        ("NumericLessThanPath", 2, 1, True),
        ("NumericGreaterThanPath", 2, 1, False),
        ("NumericLessThanEqualsPath", 2, 2, True),
        ("NumericGreaterThanEqualsPath", 2, 3, True),
        ("BooleanEqualsPath", False, False, True),
        ("TimestampEqualsPath", "2020-01-01T00:00:00Z", "2020-01-01T00:00:00Z", True),
        ("TimestampLessThanPath", "2020-01-01T00:00:00Z", "2019-01-01T00:00:00Z", True),
        ("TimestampGreaterThanPath", "2020-01-01T00:00:00Z", "2019-01-01T00:00:00Z", False),
        ("TimestampLessThanEqualsPath", "2020-01-01T00:00:00Z", "2020-01-01T00:00:00Z", True),
        ("TimestampGreaterThanEqualsPath", "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z", True),
    ],
)
def test_path_variants_compare_with_another_value_of_the_input(
    operator: str, other: Any, data: Any, expected: bool
) -> None:
    assert matches({"Variable": "$.v", operator: "$.other"}, {"v": data, "other": other}) is expected


def test_every_operator_is_covered() -> None:
    tested = {
        "StringEquals", "StringLessThan", "StringGreaterThan", "StringLessThanEquals", "StringGreaterThanEquals",
        "NumericEquals", "NumericLessThan", "NumericGreaterThan", "NumericLessThanEquals", "NumericGreaterThanEquals",
        "BooleanEquals", "TimestampEquals", "TimestampLessThan", "TimestampGreaterThan", "TimestampLessThanEquals",
        "TimestampGreaterThanEquals", "StringMatches", "IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean",
        "IsTimestamp",
    }  # fmt: skip
    paths = {op + "Path" for op in tested if not op.startswith("Is") and op != "StringMatches"}
    assert tested | paths == COMPARISON_OPERATORS


@pytest.mark.parametrize(
    ("operator", "data", "expected"),
    [
        ("IsNull", {"v": None}, True),
        ("IsNull", {"v": 0}, False),
        ("IsPresent", {"v": None}, True),
        ("IsPresent", {}, True),  # tested with IsPresent: false below
        ("IsNumeric", {"v": 1.5}, True),
        ("IsNumeric", {"v": "1"}, False),
        ("IsNumeric", {"v": True}, False),
        ("IsString", {"v": ""}, True),
        ("IsBoolean", {"v": False}, True),
        ("IsBoolean", {"v": 0}, False),
        ("IsTimestamp", {"v": "2016-03-14T01:59:00Z"}, True),
        ("IsTimestamp", {"v": "2016-03-14"}, False),
    ],
)
def test_type_tests(operator: str, data: dict[str, Any], expected: bool) -> None:
    want = not (operator == "IsPresent" and "v" not in data)
    assert matches({"Variable": "$.v", operator: want}, data) is expected
    assert matches({"Variable": "$.v", operator: not want}, data) is (not expected)


def test_type_tests_on_a_missing_variable_are_false_and_comparisons_fail() -> None:
    assert matches({"Variable": "$.missing", "IsPresent": False}, {}) is True
    assert matches({"Variable": "$.missing", "IsNull": True}, {}) is False
    assert matches({"Variable": "$.missing", "IsString": False}, {}) is True
    s = build_state("IsDataset", {"Type": "Choice", "Choices": [
        {"Variable": "$.processing_type", "StringEquals": "dataset", "Next": "X"}]}, "JSONPath")  # fmt: skip
    with pytest.raises(StatesError) as e:
        choose(s, {"is_reanalysis": True}, {**CTX, ENTERED_EVENT_ID: 2}, {})
    assert e.value.error == "States.Runtime"
    assert e.value.cause == (
        "An error occurred while executing the state 'IsDataset' (entered at the event id #2). "
        "Invalid path '$.processing_type': The choice state's condition path references an invalid value."
    )
    with pytest.raises(StatesError):
        matches({"Variable": "$.v", "NumericEqualsPath": "$.missing"}, {"v": 1})


def test_nested_and_or_not() -> None:
    rule = {
        "Or": [
            {"And": [{"Variable": "$.a", "IsPresent": True}, {"Not": {"Variable": "$.a", "NumericEquals": 1}}]},
            {"Variable": "$.b", "BooleanEquals": True},
        ]
    }
    assert matches(rule, {"a": 2}) is True  # Or stops at the first match
    assert matches(rule, {"a": 1, "b": False}) is False
    assert matches(rule, {"a": 1, "b": True}) is True
    assert matches(rule, {"b": False}) is False
    with pytest.raises(StatesError):
        matches(rule, {"a": 1})  # $.b is reached and missing


def test_variables_and_context_in_rules() -> None:
    assert matches({"Variable": "$limit", "NumericGreaterThanPath": "$.v"}, {"v": 3}, {"limit": 5}) is True
    assert matches({"Variable": "$$.Execution.Name", "StringEquals": "e"}, {}) is True


def test_assign_of_the_matched_rule_or_of_the_state_for_the_default() -> None:
    body = {
        "Type": "Choice",
        "Choices": [
            {"Variable": "$.input_value", "IsPresent": False, "Assign": {"status": "UNKNOWN"}, "Next": "Final"},
            {"Variable": "$.input_value", "NumericEquals": 42, "Assign": {"status": "CORRECT"}, "Next": "Final"},
        ],
        "Assign": {"status": "INCORRECT", "guess.$": "$.input_value"},
        "Default": "Final",
    }
    s = build_state("Check", body, "JSONPath")
    assert choose(s, {}, CTX, {}) == ("Final", {"status": "UNKNOWN"})
    assert choose(s, {"input_value": 42}, CTX, {}) == ("Final", {"status": "CORRECT"})
    assert choose(s, {"input_value": 7}, CTX, {"old": 1}) == ("Final", {"old": 1, "status": "INCORRECT", "guess": 7})


def test_input_and_output_path_of_a_choice() -> None:
    body = {
        "Type": "Choice",
        "InputPath": "$.in",
        "OutputPath": "$.keep",
        "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "A"}],
    }
    s = build_state("C", body, "JSONPath")
    assert decide(s, {"in": {"x": 1, "keep": "k"}}, CTX, {}) == ("A", "k", {})


def test_jsonata_condition_assign_and_output() -> None:
    body = {
        "Type": "Choice",
        "QueryLanguage": "JSONata",
        "Choices": [
            {
                "Condition": "{% $states.input.condition %}",
                "Next": "ConditionTrue",
                "Assign": {"Assignment": "Condition assignment"},
                "Output": {"seen": "{% $states.input.n + $base %}"},
            }
        ],
        "Default": "DefaultState",
        "Assign": {"Assignment": "Default Assignment"},
    }
    s = build_state("ChoiceState", body, "JSONPath")
    assert decide(s, {"condition": True, "n": 1}, CTX, {"base": 10}) == (
        "ConditionTrue",
        {"seen": 11},
        {"base": 10, "Assignment": "Condition assignment"},
    )
    assert decide(s, {"condition": False, "n": 1}, CTX, {}) == (
        "DefaultState",
        {"condition": False, "n": 1},
        {"Assignment": "Default Assignment"},
    )
    with pytest.raises(StatesError) as e:
        decide(s, {"condition": "yes"}, CTX, {})
    assert e.value.error == "States.QueryEvaluationError"
