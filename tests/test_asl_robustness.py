"""ASL robustness: any JSON is answered with diagnostics (never an exception), anything validation accepts can be
parsed, and malformed intrinsic calls are syntax errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.language import InvalidDefinition, StatesError, decide, enter, items, leave, parse, validate, wait_until
from workflows.language.intrinsics import FUNCTION_NAMES, IntrinsicSyntaxError, evaluate, parse_call
from workflows.language.model import build_state

KEYS = st.sampled_from(
    ["StartAt", "States", "Type", "Next", "End", "A", "B", "Choices", "Variable", "StringEquals", "Branches",
     "ItemProcessor", "Retry", "Catch", "ErrorEquals", "Resource", "Parameters", "x.$", "InputPath", "ResultPath",
     "QueryLanguage", "Output", "Assign", "Seconds", "Default", "And", "Not", "Condition", "ProcessorConfig", "Mode"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 100),
    st.sampled_from(
        ["A", "B", "Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map", "$", "$.a", "$$.x",
         "States.ALL", "States.Array($.a)", "States.Nope(", "{% $states.input %}", "{% 1 + %}", "JSONata",
         "arn:aws:lambda:us-east-1:1:function:f", "INLINE", "DISTRIBUTED"]
    ),
)  # fmt: skip
JSON = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(KEYS, c, max_size=5), max_leaves=25)

STATE = st.fixed_dictionaries(
    {"Type": st.sampled_from(["Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"])},
    optional={k: JSON for k in ["Next", "End", "Choices", "Branches", "ItemProcessor", "Retry", "Catch", "Resource",
                                "Parameters", "InputPath", "ResultPath", "Output", "Assign", "Seconds", "Default",
                                "QueryLanguage", "Iterator", "Items", "ItemsPath", "Arguments"]},
)  # fmt: skip
MACHINE = st.fixed_dictionaries(
    {"StartAt": st.sampled_from(["A", "B"]), "States": st.dictionaries(st.sampled_from(["A", "B", "C"]), STATE)},
    optional={"QueryLanguage": st.sampled_from(["JSONPath", "JSONata", "X"]), "TimeoutSeconds": JSON},
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(JSON, MACHINE))
def test_validate_answers_any_json_with_diagnostics(value: Any) -> None:
    text = json.dumps(value)
    diagnostics = validate(text)
    assert all(d.severity in ("ERROR", "WARNING") and d.code and d.message for d in diagnostics)
    try:
        parse(text)
    except InvalidDefinition as e:
        assert str(e).startswith("Invalid State Machine Definition: '")
    else:
        assert not [d for d in diagnostics if d.severity == "ERROR"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="States.Format()$'{},\\ 1a", max_size=40))
def test_intrinsic_parsing_fails_only_with_syntax_errors(text: str) -> None:
    try:
        parse_call(text)
    except IntrinsicSyntaxError:
        pass


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2000) | st.floats(-1e6, 1e6) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text("ab", min_size=1, max_size=2), c, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(FUNCTION_NAMES - {"States.UUID"})), n=st.integers(0, 3), data=VALUES, more=VALUES)
def test_intrinsics_fail_only_with_intrinsic_failure(name: str, n: int, data: Any, more: Any) -> None:
    args = ", ".join(["$.a", "$.b", "$.a"][:n])
    text = f"{name}({args})"
    try:
        parse_call(text)
    except IntrinsicSyntaxError:
        return
    try:
        evaluate(text, {"a": data, "b": more}, {}, {})
    except StatesError as e:
        assert e.error == "States.IntrinsicFailure"


RUNTIME_STATES = [
    {"Type": "Pass", "InputPath": "$.a", "Parameters": {"x.$": "$.b[0]", "y.$": "States.ArrayLength($.b)"},
     "ResultPath": "$.a.r", "OutputPath": "$.a", "End": True},
    {"Type": "Task", "Resource": "arn:x", "ResultSelector": {"v.$": "$.a"}, "ResultPath": "$.b.c", "End": True},
    {"Type": "Wait", "SecondsPath": "$.a", "End": True},
    {"Type": "Map", "ItemsPath": "$.a", "ItemSelector": {"i.$": "$$.Map.Item.Value.b"}, "ItemProcessor": {
        "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}, "ItemBatcher": {"MaxItemsPerBatchPath": "$.b"},
     "End": True},
    {"Type": "Pass", "QueryLanguage": "JSONata", "Output": {"s": "{% $sum($states.input.a) %}",
                                                            "k": "{% $keys($states.input.b) %}"}, "End": True},
]  # fmt: skip
CHOICE = {
    "Type": "Choice",
    "Choices": [
        {"Variable": "$.a", "TimestampLessThanPath": "$.b", "Next": "X"},
        {"Or": [{"Variable": "$.a", "StringMatches": "*x*"}, {"Variable": "$.b", "NumericGreaterThanPath": "$.a"}],
         "Next": "X"},
    ],
    "Default": "X",
}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(RUNTIME_STATES) - 1), data=VALUES, a=VALUES, b=VALUES)
def test_processing_fails_only_with_states_errors(index: int, data: Any, a: Any, b: Any) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    state_input = {"a": a, "b": b} if index % 2 == 0 else data
    s = build_state("S", RUNTIME_STATES[index], "JSONPath")
    c = build_state("C", CHOICE, "JSONPath")
    try:
        if s.type == "Wait":
            wait_until(s, state_input, {}, {}, now)
        elif s.type == "Map":
            items(s, enter(s, state_input, {}, {}), {}, {})
        else:
            leave(s, state_input, enter(s, state_input, {}, {}) if s.type == "Pass" else data, {}, {})
    except StatesError:
        pass
    try:
        decide(c, {"a": a, "b": b}, {}, {})
    except StatesError as e:
        assert e.error == "States.Runtime"
