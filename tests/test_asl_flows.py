"""ASL conformance: whole machines driven through the language functions by a tiny synchronous driver (the way the
executor uses them, minus durability): data and variables flowing between states, Parallel and Map results,
Retry then Catch, JSONata end to end."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

from workflows import language as asl
from workflows.language import Machine, StatesError

NOW = datetime(2026, 12, 4, tzinfo=UTC)
Tasks = dict[str, Any]


def run(machine: Machine, state_input: Any, tasks: Tasks, variables: dict[str, Any] | None = None) -> tuple[str, Any]:
    """("SUCCEEDED", output) or ("FAILED", (error, cause)). ``tasks`` maps a Resource to a function of the
    arguments (raising StatesError to fail)."""
    variables = dict(variables or {})
    name = machine.start_at
    data = state_input
    for _ in range(1000):
        s = machine.states[name]
        ctx: dict[str, Any] = {"Execution": {"Name": "e", "Input": state_input}, "State": {"Name": name}}
        try:
            if s.type == "Fail":
                return "FAILED", asl.fail_of(s, data, ctx, variables)
            if s.type == "Choice":
                name, data, variables = asl.decide(s, data, ctx, variables)
                continue
            if s.type == "Wait":
                asl.wait_until(s, data, ctx, variables, NOW)
                output, variables = asl.leave(s, data, None, ctx, variables)
            elif s.type in ("Pass", "Succeed"):
                result = asl.enter(s, data, ctx, variables) if s.type == "Pass" else None
                output, variables = asl.leave(s, data, result, ctx, variables)
            else:
                output, variables = _with_retries(s, data, ctx, variables, tasks)
        except StatesError as e:
            caught = asl.catch(s, e.error, e.cause, data, ctx, variables)
            if caught is None:
                return "FAILED", (e.error, e.cause)
            name, data, variables = caught
            continue
        if s.terminal:
            return "SUCCEEDED", output
        assert s.next is not None
        name, data = s.next, output
    raise AssertionError("too many transitions")


def _with_retries(s: asl.State, data: Any, ctx: dict[str, Any], variables: dict[str, Any], tasks: Tasks) -> Any:
    attempts = [0] * len(s.retry)
    while True:
        try:
            return asl.leave(s, data, _work(s, data, ctx, variables, tasks), ctx, variables)
        except StatesError as e:
            decision = asl.retry_delay(s, e.error, attempts, random.Random(0))
            if decision is None:
                raise
            attempts[decision[0]] += 1


def _work(s: asl.State, data: Any, ctx: dict[str, Any], variables: dict[str, Any], tasks: Tasks) -> Any:
    args = asl.enter(s, data, ctx, variables)
    if s.type == "Task":
        assert s.resource is not None
        return tasks[s.resource](args)
    if s.type == "Parallel":
        return [_branch(b, args, tasks, variables) for b in s.branches]
    assert s.processor is not None
    outputs, failed = [], 0
    inputs = asl.items(s, args, ctx, variables)
    for item in inputs:
        try:
            outputs.append(_branch(s.processor, item, tasks, variables))
        except StatesError:
            failed += 1
            outputs.append(None)
    if not asl.tolerated(s, len(inputs), failed, data, ctx, variables):
        raise StatesError(
            "States.ExceedToleratedFailureThreshold", "The specified tolerated failure threshold was exceeded"
        )
    return outputs


def _branch(machine: Machine, data: Any, tasks: Tasks, variables: dict[str, Any]) -> Any:
    status, out = run(machine, data, tasks, dict(variables))  # a branch reads the outer variables, writes its own
    if status == "FAILED":
        raise StatesError(*out)
    return out


def machine(definition: dict[str, Any]) -> Machine:
    return asl.parse(json.dumps(definition))


def test_variables_flow_forward_and_paths_read_them() -> None:
    m = machine(
        {
            "StartAt": "Fetch",
            "States": {
                "Fetch": {
                    "Type": "Task",
                    "Resource": "arn:aws:lambda:us-east-1:1:function:fetch",
                    "Assign": {"product.$": "$.Payload.product", "count": 42},
                    "ResultPath": None,
                    "Next": "Check",
                },
                "Check": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$count", "NumericGreaterThan": 40, "Next": "Report"}],
                    "Default": "Nope",
                },
                "Report": {
                    "Type": "Pass",
                    "Parameters": {"p.$": "$product", "n.$": "$count", "in.$": "$.id"},
                    "End": True,
                },
                "Nope": {"Type": "Fail", "Error": "Nope"},
            },
        }
    )
    tasks = {"arn:aws:lambda:us-east-1:1:function:fetch": lambda args: {"Payload": {"product": "product1"}}}
    assert run(m, {"id": 7}, tasks) == ("SUCCEEDED", {"p": "product1", "n": 42, "in": 7})


def test_parallel_results_in_branch_order_and_branches_read_outer_variables() -> None:
    m = machine(
        {
            "StartAt": "Set",
            "States": {
                "Set": {"Type": "Pass", "Assign": {"factor": 10}, "Next": "P"},
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "A",
                            "States": {"A": {"Type": "Pass", "Parameters": {"a.$": "$factor"}, "End": True}},
                        },
                        {"StartAt": "B", "States": {"B": {"Type": "Pass", "Assign": {"factor": 0}, "End": True}}},
                    ],
                    "ResultPath": "$.branches",
                    "Next": "After",
                },
                "After": {"Type": "Pass", "Parameters": {"still.$": "$factor", "b.$": "$.branches"}, "End": True},
            },
        }
    )
    assert run(m, {"x": 1}, {}) == ("SUCCEEDED", {"still": 10, "b": [{"a": 10}, {"x": 1}]})


def test_map_with_tolerated_failures_and_item_selector() -> None:
    def work(args: Any) -> Any:
        if args["v"] % 3 == 0:
            raise StatesError("Boom", f"item {args['v']}")
        return args["v"] * 2

    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.xs",
                "ItemSelector": {"v.$": "$$.Map.Item.Value"},
                "ToleratedFailureCount": 1,
                "ItemProcessor": {
                    "StartAt": "T",
                    "States": {"T": {"Type": "Task", "Resource": "arn:work", "End": True}},
                },
                "End": True,
            }
        },
    }
    assert run(machine(definition), {"xs": [1, 2, 3]}, {"arn:work": work}) == ("SUCCEEDED", [2, 4, None])
    assert run(machine(definition), {"xs": [3, 6]}, {"arn:work": work}) == (
        "FAILED",
        ("States.ExceedToleratedFailureThreshold", "The specified tolerated failure threshold was exceeded"),
    )


def test_retry_then_catch_with_result_path() -> None:
    calls: list[Any] = []

    def flaky(args: Any) -> Any:
        calls.append(args)
        raise StatesError("Lambda.ServiceException", "try later")

    m = machine(
        {
            "StartAt": "T",
            "States": {
                "T": {
                    "Type": "Task",
                    "Resource": "arn:flaky",
                    "Retry": [{"ErrorEquals": ["Lambda.ServiceException"], "MaxAttempts": 2}],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handle"}],
                    "Next": "Done",
                },
                "Handle": {"Type": "Pass", "End": True},
                "Done": {"Type": "Succeed"},
            },
        }
    )
    assert run(m, {"order": 1}, {"arn:flaky": flaky}) == (
        "SUCCEEDED",
        {"order": 1, "error": {"Error": "Lambda.ServiceException", "Cause": "try later"}},
    )
    assert len(calls) == 3  # the first attempt and two retries


def test_a_jsonata_machine_end_to_end() -> None:
    m = machine(
        {
            "QueryLanguage": "JSONata",
            "StartAt": "Price",
            "States": {
                "Price": {
                    "Type": "Task",
                    "Resource": "arn:price",
                    "Arguments": {"items": "{% $states.input.cart %}"},
                    "Assign": {"total": "{% $sum($states.result.prices) %}"},
                    "Output": "{% $states.input %}",
                    "Next": "Big?",
                },
                "Big?": {
                    "Type": "Choice",
                    "Choices": [{"Condition": "{% $total > 100 %}", "Next": "Discount"}],
                    "Default": "Receipt",
                },
                "Discount": {"Type": "Pass", "Assign": {"total": "{% $total * 0.9 %}"}, "Next": "Receipt"},
                "Receipt": {
                    "Type": "Succeed",
                    "Output": {"customer": "{% $states.input.customer %}", "total": "{% $total %}"},
                },
            },
        }
    )
    tasks = {"arn:price": lambda args: {"prices": [60 * len(i) for i in args["items"]]}}
    assert run(m, {"customer": "Ann", "cart": ["ab", "c"]}, tasks) == ("SUCCEEDED", {"customer": "Ann", "total": 162})
    assert run(m, {"customer": "Bo", "cart": ["a"]}, tasks) == ("SUCCEEDED", {"customer": "Bo", "total": 60})


def test_an_uncaught_runtime_error_fails_the_execution_even_with_states_all() -> None:
    m = machine(
        {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Task",
                    "Resource": "arn:ok",
                    "OutputPath": "$.missing",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}],
                    "End": True,
                },
                "H": {"Type": "Succeed"},
            },
        }
    )
    status, (error, cause) = run(m, {}, {"arn:ok": lambda args: {"present": 1}})
    assert (status, error) == ("FAILED", "States.Runtime")
    assert cause.endswith("Invalid path '$.missing' : No results for path: $['missing']")
