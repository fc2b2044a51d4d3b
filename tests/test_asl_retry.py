"""ASL conformance: error names, Retry (order, MaxAttempts, backoff, MaxDelaySeconds, FULL jitter) and Catch."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.language import catch, error_matches, retry_delay
from workflows.language.model import State, build_state

CTX: dict[str, Any] = {"State": {"Name": "T"}}


def task(**fields: Any) -> State:
    return build_state(
        "T", {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": True, **fields}, "JSONPath"
    )


def run_retries(s: State, errors: list[str]) -> list[tuple[int, float] | None]:
    """What the executor does: one attempts counter per retrier, incremented when it retries."""
    attempts = [0] * len(s.retry)
    rng = random.Random(1)
    out: list[tuple[int, float] | None] = []
    for error in errors:
        decision = retry_delay(s, error, attempts, rng)
        out.append(decision)
        if decision is None:
            break
        attempts[decision[0]] += 1
    return out


def test_error_matching_wildcards() -> None:
    assert error_matches(["States.ALL"], "Lambda.ServiceException")
    assert error_matches(["States.ALL"], "States.Timeout")
    assert not error_matches(["States.ALL"], "States.Runtime")
    assert not error_matches(["States.ALL"], "States.DataLimitExceeded")
    assert error_matches(["States.TaskFailed"], "MyError")
    assert error_matches(["States.TaskFailed"], "States.HeartbeatTimeout")
    assert not error_matches(["States.TaskFailed"], "States.Timeout")
    assert error_matches(["States.Timeout"], "States.Timeout")
    assert not error_matches(["MyError"], "myerror")
    assert error_matches(["A", "B"], "B")


def test_the_complex_retry_scenario_of_the_docs() -> None:
    """ErrorA, ErrorB, ErrorC, ErrorB: waits of 1 and 2 s (first retrier), 5 s (second), then the first retrier is
    exhausted (MaxAttempts 2) and the state fails (to its Catch)."""
    s = task(
        Retry=[
            {"ErrorEquals": ["ErrorA", "ErrorB"], "IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 2},
            {"ErrorEquals": ["ErrorC"], "IntervalSeconds": 5},
        ],
        Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Z"}],
    )
    assert run_retries(s, ["ErrorA", "ErrorB", "ErrorC", "ErrorB"]) == [(0, 1.0), (0, 2.0), (1, 5.0), None]


def test_defaults_are_three_attempts_one_second_rate_two() -> None:
    s = task(Retry=[{"ErrorEquals": ["States.ALL"]}])
    assert run_retries(s, ["E"] * 4) == [(0, 1.0), (0, 2.0), (0, 4.0), None]


def test_max_attempts_zero_never_retries_and_stops_the_scan() -> None:
    s = task(Retry=[{"ErrorEquals": ["Fatal"], "MaxAttempts": 0}, {"ErrorEquals": ["States.ALL"]}])
    assert run_retries(s, ["Fatal"]) == [None]
    assert run_retries(s, ["Other"]) == [(1, 1.0)]


def test_first_matching_retrier_wins_even_when_a_later_one_matches_too() -> None:
    s = task(Retry=[{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 3}, {"ErrorEquals": ["MyError"]}])
    assert run_retries(s, ["MyError"]) == [(0, 3.0)]


def test_no_retrier_and_terminal_errors() -> None:
    s = task(Retry=[{"ErrorEquals": ["States.ALL"]}])
    assert run_retries(s, ["States.Runtime"]) == [None]
    assert run_retries(task(), ["E"]) == [None]


def test_max_delay_caps_the_backoff() -> None:
    s = task(
        Retry=[{"ErrorEquals": ["E"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 5, "MaxDelaySeconds": 10}]
    )
    assert [d[1] for d in run_retries(s, ["E"] * 5) if d] == [2.0, 6.0, 10.0, 10.0, 10.0]


@given(seed=st.integers(), attempt=st.integers(0, 6))
def test_full_jitter_stays_within_the_backoff(seed: int, attempt: int) -> None:
    s = task(
        Retry=[
            {
                "ErrorEquals": ["E"],
                "IntervalSeconds": 1,
                "MaxAttempts": 10,
                "MaxDelaySeconds": 20,
                "JitterStrategy": "FULL",
            }
        ]
    )
    attempts = [attempt]
    decision = retry_delay(s, "E", attempts, random.Random(seed))
    assert decision is not None
    assert 0 <= decision[1] <= min(20.0, 2.0**attempt)
    assert decision == retry_delay(s, "E", attempts, random.Random(seed))  # a replay draws the same jitter


def test_catch_replaces_the_input_by_default_and_result_path_merges() -> None:
    s = task(
        Catch=[
            {"ErrorEquals": ["Custom"], "Next": "Merge", "ResultPath": "$.error"},
            {"ErrorEquals": ["Discard"], "Next": "Keep", "ResultPath": None},
            {"ErrorEquals": ["States.ALL"], "Next": "Replace"},
        ]
    )
    inp = {"foo": "bar"}
    assert catch(s, "Custom", "This is a custom error!", inp, CTX, {}) == (
        "Merge",
        {"foo": "bar", "error": {"Error": "Custom", "Cause": "This is a custom error!"}},
        {},
    )
    assert catch(s, "Discard", "c", inp, CTX, {}) == ("Keep", inp, {})
    assert catch(s, "Other", "c", inp, CTX, {}) == ("Replace", {"Error": "Other", "Cause": "c"}, {})
    assert catch(s, "States.Runtime", "c", inp, CTX, {}) is None


def test_catch_assign_reads_the_error_output() -> None:
    s = task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "H", "Assign": {"lastError.$": "$.Error", "n": 1}}])
    assert catch(s, "E", "why", {}, CTX, {"n": 0})[2] == {"n": 1, "lastError": "E"}


def test_jsonata_catch_output_and_assign() -> None:
    s = build_state(
        "T",
        {
            "Type": "Task",
            "QueryLanguage": "JSONata",
            "Resource": "r",
            "End": True,
            "Catch": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "Next": "H",
                    "Output": {"in": "{% $states.input.x %}", "err": "{% $states.errorOutput.Error %}"},
                    "Assign": {"cause": "{% $states.errorOutput.Cause %}"},
                },
            ],
        },
        "JSONPath",
    )
    assert catch(s, "Boom", "because", {"x": 1}, CTX, {}) == ("H", {"in": 1, "err": "Boom"}, {"cause": "because"})
    bare = build_state(
        "T",
        {
            "Type": "Task",
            "QueryLanguage": "JSONata",
            "Resource": "r",
            "End": True,
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}],
        },
        "JSONPath",
    )
    assert catch(bare, "Boom", "because", {"x": 1}, CTX, {})[1] == {"Error": "Boom", "Cause": "because"}


@pytest.mark.parametrize("error", ["States.Timeout", "States.HeartbeatTimeout", "States.TaskFailed", "Lambda.Unknown"])
def test_catch_order_is_first_match(error: str) -> None:
    s = task(Catch=[{"ErrorEquals": [error], "Next": "Exact"}, {"ErrorEquals": ["States.ALL"], "Next": "All"}])
    result = catch(s, error, "", {}, CTX, {})
    assert result is not None and result[0] == "Exact"
