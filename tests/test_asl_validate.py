"""ASL conformance: definition validation (ValidateStateMachineDefinition's diagnostics and CreateStateMachine's
InvalidDefinition message)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from workflows.language import InvalidDefinition, parse, validate


def codes(definition: dict[str, Any] | str) -> list[tuple[str, str]]:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    return [(d.code, d.location) for d in validate(text)]


def machine(states: dict[str, Any], start: str | None = None, **top: Any) -> dict[str, Any]:
    return {"StartAt": start or next(iter(states)), "States": states, **top}


PASS_END = {"Type": "Pass", "End": True}

VALID: list[dict[str, Any]] = [
    machine({"A": PASS_END}),
    machine({"A": {"Type": "Pass", "Result": {"a": 1}, "ResultPath": "$.r", "Next": "B"}, "B": {"Type": "Succeed"}}),
    machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": "f",
                    "Payload.$": "$",
                    "Id.$": "States.UUID()",
                    "ctx.$": "$$.Execution.Id",
                },
                "ResultSelector": {"p.$": "$.Payload"},
                "ResultPath": "$.out",
                "OutputPath": "$.out",
                "TimeoutSeconds": 30,
                "HeartbeatSeconds": 10,
                "Retry": [
                    {
                        "ErrorEquals": ["Lambda.ServiceException"],
                        "IntervalSeconds": 2,
                        "MaxAttempts": 6,
                        "BackoffRate": 2,
                        "MaxDelaySeconds": 10,
                        "JitterStrategy": "FULL",
                    },
                    {"ErrorEquals": ["States.ALL"], "MaxAttempts": 0},
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F", "ResultPath": "$.error"}],
                "End": True,
            },
            "F": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
        }
    ),
    machine(
        {
            "C": {
                "Type": "Choice",
                "Choices": [
                    {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "W"},
                    {
                        "And": [
                            {"Variable": "$.v", "NumericGreaterThanEquals": 20},
                            {"Variable": "$.v", "IsPresent": True},
                        ],
                        "Next": "W",
                    },
                    {"Variable": "$.t", "TimestampLessThanPath": "$.u", "Next": "W", "Assign": {"x.$": "$.v"}},
                ],
                "Default": "W",
            },
            "W": {"Type": "Wait", "SecondsPath": "$.s", "Next": "P"},
            "P": {
                "Type": "Parallel",
                "Branches": [machine({"B1": PASS_END}), machine({"B2": {"Type": "Succeed"}})],
                "Next": "M",
            },
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemSelector": {"v.$": "$$.Map.Item.Value"},
                "MaxConcurrency": 40,
                "ToleratedFailurePercentage": 5,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                    "StartAt": "I",
                    "States": {"I": PASS_END},
                },
                "ItemBatcher": {"MaxItemsPerBatch": 10},
                "End": True,
            },
        }
    ),
    machine(
        {
            "J": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Arguments": {"FunctionName": "f", "Payload": "{% $states.input %}"},
                "Output": "{% $states.result.Payload %}",
                "Assign": {"last": "{% $states.result %}"},
                "TimeoutSeconds": "{% $timeout %}",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "K", "Output": "{% $states.errorOutput %}"}],
                "Next": "K",
            },
            "K": {"Type": "Choice", "Choices": [{"Condition": "{% $last.ok %}", "Next": "L"}], "Default": "L"},
            "L": {"Type": "Map", "Items": "{% [1, 2] %}", "ItemProcessor": machine({"X": PASS_END}), "End": True},
        },
        QueryLanguage="JSONata",
    ),
    machine({"Legacy": {"Type": "Map", "Iterator": machine({"X": PASS_END}), "Parameters": {"a.$": "$"}, "End": True}}),
]


@pytest.mark.parametrize("definition", VALID)
def test_valid_definitions_have_no_diagnostics(definition: dict[str, Any]) -> None:
    assert validate(json.dumps(definition)) == []
    parse(json.dumps(definition))


def test_aws_message_for_missing_target_and_unreachable_state() -> None:
    definition = machine({"pass1": {"Type": "Pass", "Next": "pass3"}, "pass2": PASS_END})
    with pytest.raises(InvalidDefinition) as e:
        parse(json.dumps(definition))
    assert str(e.value) == (
        "Invalid State Machine Definition: "
        "'MISSING_TRANSITION_TARGET: Missing 'Next' target: pass3 at /States/pass1/Next, "
        'MISSING_TRANSITION_TARGET: State "pass2" is not reachable. at /States/pass2\''
    )


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        ("{not json", [("INVALID_JSON_DESCRIPTION", "")]),
        ("", [("MISSING_DESCRIPTION", "")]),
        ({"States": {"A": PASS_END}}, [("SCHEMA_VALIDATION_FAILED", "/")]),
        (
            machine({"A": PASS_END}, start="B"),
            [("MISSING_TRANSITION_TARGET", "/StartAt"), ("MISSING_TRANSITION_TARGET", "/States/A")],
        ),
        (machine({"A": PASS_END}, Foo=1), [("SCHEMA_VALIDATION_FAILED", "/")]),
        (
            machine({"A": {"Type": "Pass"}}),
            [("SCHEMA_VALIDATION_FAILED", "/States/A"), ("MISSING_END_STATE", "/States")],
        ),
        (machine({"A": {"Type": "Pass", "Next": "A", "End": True}}), [("SCHEMA_VALIDATION_FAILED", "/States/A")]),
        (machine({"A": {"Type": "Nope", "End": True}}), [("SCHEMA_VALIDATION_FAILED", "/States/A/Type")]),
        (
            machine({"A": {"Type": "Pass", "End": True, "Resource": "x"}}),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/Resource")],
        ),
        (machine({"A": {"Type": "Task", "End": True}}), [("SCHEMA_VALIDATION_FAILED", "/States/A")]),
        (
            machine({"A": {"Type": "Task", "Resource": "lambda", "End": True}}),
            [("INVALID_RESOURCE", "/States/A/Resource")],
        ),
        (
            machine({"A": {"Type": "Pass", "InputPath": "nope", "End": True}}),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/InputPath")],
        ),
        (
            machine({"A": {"Type": "Pass", "ResultPath": "$.a[*]", "End": True}}),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/ResultPath")],
        ),
        (
            machine({"A": {"Type": "Pass", "Parameters": {"x.$": "States.Nope()"}, "End": True}}),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/Parameters/x.$")],
        ),
        (machine({"A": {"Type": "Wait", "End": True}}), [("SCHEMA_VALIDATION_FAILED", "/States/A")]),
        (
            machine({"A": {"Type": "Wait", "Seconds": 1, "Timestamp": "2020-01-01T00:00:00Z", "End": True}}),
            [("SCHEMA_VALIDATION_FAILED", "/States/A")],
        ),
        (
            machine({"A": {"Type": "Wait", "Timestamp": "yesterday", "End": True}}),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/Timestamp")],
        ),
        (
            machine({"A": {"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}}),
            [("SCHEMA_VALIDATION_FAILED", "/States/A")],
        ),
        (
            machine(
                {
                    "A": {"Type": "Choice", "Choices": [{"Variable": "$.a", "StringEquals": 1, "Next": "B"}]},
                    "B": PASS_END,
                }
            ),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/Choices/0/StringEquals")],
        ),
        (
            machine({"A": {"Type": "Choice", "Choices": [{"Variable": "$.a", "Next": "B"}]}, "B": PASS_END}),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/Choices/0")],
        ),
        (
            machine({"A": {"Type": "Choice", "Choices": [{"And": [], "Next": "B"}]}, "B": PASS_END}),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/Choices/0/And")],
        ),
        (
            machine(
                {
                    "A": {
                        "Type": "Choice",
                        "Choices": [{"Not": {"Variable": "$.a", "IsNull": True, "Next": "B"}, "Next": "B"}],
                    },
                    "B": PASS_END,
                }
            ),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/Choices/0/Not/Next")],
        ),
        (
            machine(
                {
                    "A": {
                        "Type": "Choice",
                        "Choices": [{"Variable": "$.a", "IsNull": True, "Next": "Z"}],
                        "Default": "Y",
                    },
                    "B": PASS_END,
                }
            ),
            [
                ("MISSING_TRANSITION_TARGET", "/States/A/Default"),
                ("MISSING_TRANSITION_TARGET", "/States/A/Choices/0/Next"),
                ("MISSING_TRANSITION_TARGET", "/States/B"),
            ],
        ),
        (
            machine(
                {
                    "A": {
                        "Type": "Task",
                        "Resource": "arn:x",
                        "End": True,
                        "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["E"]}],
                    }
                }
            ),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/Retry/0/ErrorEquals")],
        ),
        (
            machine(
                {
                    "A": {
                        "Type": "Task",
                        "Resource": "arn:x",
                        "End": True,
                        "Retry": [{"ErrorEquals": ["States.ALL", "E"]}],
                    }
                }
            ),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/Retry/0/ErrorEquals")],
        ),
        (
            machine(
                {
                    "A": {
                        "Type": "Task",
                        "Resource": "arn:x",
                        "End": True,
                        "Retry": [
                            {"ErrorEquals": ["E"], "BackoffRate": 0.5, "MaxAttempts": -1, "JitterStrategy": "HALF"}
                        ],
                    }
                }
            ),
            [
                ("SCHEMA_VALIDATION_FAILED", "/States/A/Retry/0/MaxAttempts"),
                ("SCHEMA_VALIDATION_FAILED", "/States/A/Retry/0/BackoffRate"),
                ("SCHEMA_VALIDATION_FAILED", "/States/A/Retry/0/JitterStrategy"),
            ],
        ),
        (
            machine({"A": {"Type": "Task", "Resource": "arn:x", "End": True, "Catch": [{"ErrorEquals": ["E"]}]}}),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/Catch/0")],
        ),
        (
            machine(
                {"A": {"Type": "Task", "Resource": "arn:x", "End": True, "TimeoutSeconds": 5, "HeartbeatSeconds": 5}}
            ),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/HeartbeatSeconds")],
        ),
        (
            machine({"A": {"Type": "Parallel", "Branches": [machine({"A": PASS_END})], "End": True}}),
            [("DUPLICATE_STATE_NAME", "/States/A/Branches/0/States/A")],
        ),
        (
            machine(
                {
                    "A": {
                        "Type": "Parallel",
                        "Branches": [machine({"X": {"Type": "Pass", "Next": "Out"}})],
                        "Next": "Out",
                    },
                    "Out": PASS_END,
                }
            ),
            [
                ("MISSING_TRANSITION_TARGET", "/States/A/Branches/0/States/X/Next"),
                ("MISSING_END_STATE", "/States/A/Branches/0/States"),
            ],
        ),
        (machine({"A": {"Type": "Map", "End": True}}), [("SCHEMA_VALIDATION_FAILED", "/States/A")]),
        (
            machine(
                {
                    "A": {
                        "Type": "Map",
                        "End": True,
                        "ItemProcessor": {**machine({"X": PASS_END}), "ProcessorConfig": {"Mode": "FAST"}},
                    }
                }
            ),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/ItemProcessor/ProcessorConfig/Mode")],
        ),
        (
            machine(
                {
                    "A": {
                        "Type": "Map",
                        "End": True,
                        "ItemProcessor": {**machine({"X": PASS_END}), "ProcessorConfig": {"Mode": "DISTRIBUTED"}},
                    }
                }
            ),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/ItemProcessor/ProcessorConfig/ExecutionType")],
        ),
        (
            machine(
                {
                    "A": {
                        "Type": "Map",
                        "End": True,
                        "ItemProcessor": machine({"X": PASS_END}),
                        "ToleratedFailurePercentage": 101,
                    }
                }
            ),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/ToleratedFailurePercentage")],
        ),
        (
            machine({"A": {"Type": "Pass", "InputPath": "$", "End": True}}, QueryLanguage="JSONata"),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/InputPath")],
        ),
        (
            machine({"A": {"Type": "Pass", "Output": "{% 1 + %}", "End": True}}, QueryLanguage="JSONata"),
            [("SCHEMA_VALIDATION_FAILED", "/States/A/Output")],
        ),
        (
            machine(
                {
                    "A": {
                        "Type": "Choice",
                        "QueryLanguage": "JSONata",
                        "Choices": [{"Variable": "$.a", "IsNull": True, "Next": "B"}],
                    },
                    "B": PASS_END,
                }
            ),
            [
                ("SCHEMA_VALIDATION_FAILED", "/States/A/Choices/0/Variable"),
                ("SCHEMA_VALIDATION_FAILED", "/States/A/Choices/0/IsNull"),
                ("SCHEMA_VALIDATION_FAILED", "/States/A/Choices/0"),
            ],
        ),
        (
            machine({"A": {"Type": "Pass", "Assign": {"states": 1, "9x": 2}, "End": True}}),
            [
                ("SCHEMA_VALIDATION_FAILED", "/States/A/Assign/states"),
                ("SCHEMA_VALIDATION_FAILED", "/States/A/Assign/9x"),
            ],
        ),
        (machine({"A" * 81: PASS_END}), [("INVALID_STATE_NAME", "/States/" + "A" * 81)]),
        (
            machine({"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}),
            [("MISSING_END_STATE", "/States")],
        ),
        (machine({"A": PASS_END}, QueryLanguage="SQL"), [("SCHEMA_VALIDATION_FAILED", "/QueryLanguage")]),
    ],
)
def test_invalid_definitions(definition: dict[str, Any] | str, expected: list[tuple[str, str]]) -> None:
    assert codes(definition) == expected


def test_jsonata_expressions_cannot_read_a_root_document() -> None:
    for bad in ("{% $ %}", "{% $$ %}", "{% customer.name %}", "{% name %}"):
        definition = machine({"A": {"Type": "Pass", "Output": bad, "End": True}}, QueryLanguage="JSONata")
        assert codes(definition) == [("SCHEMA_VALIDATION_FAILED", "/States/A/Output")], bad
    for good in ("{% $states.input.customer.name %}", "{% $x %}", "{% $count($states.input.items[price > 1]) %}"):
        definition = machine({"A": {"Type": "Pass", "Output": good, "End": True}}, QueryLanguage="JSONata")
        assert codes(definition) == [], good


def test_map_labels_are_valid_and_unique() -> None:
    proc = machine({"X": PASS_END})
    m1 = {"Type": "Map", "Label": "Fetch", "ItemProcessor": proc, "Next": "M2"}
    m2 = {"Type": "Map", "Label": "Fetch", "ItemProcessor": machine({"Y": PASS_END}), "Next": "M3"}
    m3 = {"Type": "Map", "Label": "bad label", "ItemProcessor": machine({"Z": PASS_END}), "End": True}
    assert codes(machine({"M1": m1, "M2": m2, "M3": m3})) == [
        ("DUPLICATE_LABEL_NAME", "/States/M2/Label"),
        ("INVALID_LABEL_NAME", "/States/M3/Label"),
    ]


def test_all_diagnostics_are_errors_with_messages() -> None:
    diagnostics = validate(json.dumps(machine({"A": {"Type": "Pass", "Next": "Nowhere"}})))
    assert diagnostics and all(d.severity == "ERROR" and d.message for d in diagnostics)
    assert diagnostics[0].as_aws() == {
        "severity": "ERROR",
        "code": "MISSING_TRANSITION_TARGET",
        "message": "Missing 'Next' target: Nowhere",
        "location": "/States/A/Next",
    }


def test_fields_valid_for_aws_but_unusual_are_accepted() -> None:
    """What a text grammar tends to reject: nulls, comments everywhere, empty Parameters, unicode names, state
    names with spaces and punctuation, a Result of any JSON type, Version, paths with brackets and filters."""
    definition = {
        "Comment": "ok",
        "Version": "1.0",
        "TimeoutSeconds": 3600,
        "StartAt": "Étape 1: début",
        "States": {
            "Étape 1: début": {
                "Type": "Pass",
                "Comment": "c",
                "Result": [1, None, "x"],
                "InputPath": "$['odd key'][0]",
                "OutputPath": None,
                "Parameters": {},
                "Next": "Filter",
            },
            "Filter": {"Type": "Pass", "InputPath": "$.items[?(@.price < 10)]", "ResultPath": None, "Next": "Vars"},
            "Vars": {"Type": "Pass", "Assign": {"v": {"nested.$": "$.a"}, "w.$": "$v.x"}, "Next": "Done"},
            "Done": {"Type": "Succeed", "Comment": "bye"},
        },
    }
    assert validate(json.dumps(definition)) == []


def test_warnings_no_dollar_no_path_and_static_pass_result() -> None:
    definition = machine(
        {
            "P": {"Type": "Pass", "Result": {"x.$": "$.a"}, "Next": "T"},
            "T": {"Type": "Task", "Resource": "arn:x", "Parameters": {"id": "$.id", "u": "States.UUID()"}, "Next": "C"},
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "StringEquals": "$.b", "Next": "F"}]},
            "F": {"Type": "Fail", "Error": "$.error"},
        }
    )
    diagnostics = validate(json.dumps(definition))
    assert [(d.severity, d.code, d.location) for d in diagnostics] == [
        ("WARNING", "PASS_RESULT_IS_STATIC", "/States/P/Result/x.$"),
        ("WARNING", "NO_DOLLAR", "/States/T/Parameters/id"),
        ("WARNING", "NO_DOLLAR", "/States/T/Parameters/u"),
        ("WARNING", "NO_PATH", "/States/C/Choices/0/StringEquals"),
        ("WARNING", "NO_PATH", "/States/F/Error"),
    ]
    parse(json.dumps(definition))  # warnings do not make a definition invalid
