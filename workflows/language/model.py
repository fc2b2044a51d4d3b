"""A parsed state machine: ``Machine`` of ``State``s, with their Retriers and Catchers.

Built from a definition that ``validate`` found free of errors, so building trusts the shapes; each ``State``
keeps its ``raw`` dict, from which the processing functions read the fields they need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSONPATH = "JSONPath"
JSONATA = "JSONata"


@dataclass
class Retrier:
    """One element of ``Retry``; defaults are AWS's (1 s, 3 attempts, rate 2.0, no cap, no jitter)."""

    error_equals: list[str]
    interval_seconds: int = 1
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: int | None = None
    jitter_strategy: str = "NONE"
    comment: str | None = None


@dataclass
class Catcher:
    """One element of ``Catch``: the state to go to, and how the error output is merged (JSONPath
    ``ResultPath``, default ``$``, or JSONata ``Output``), plus its ``Assign``."""

    error_equals: list[str]
    next: str
    result_path: str | None = "$"
    output: Any = None
    assign: dict[str, Any] | None = None
    comment: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class State:
    """One state. ``type`` is ASL's (Pass, Task, Choice, Wait, Succeed, Fail, Parallel, Map); ``query_language``
    is the state's own or the machine's; ``branches`` are a Parallel's machines, ``processor`` a Map's
    ItemProcessor (or legacy Iterator), ``processor_mode`` INLINE or DISTRIBUTED, ``resource`` a Task's ARN."""

    name: str
    type: str
    raw: dict[str, Any]
    next: str | None = None
    end: bool = False
    query_language: str = JSONPATH
    retry: list[Retrier] = field(default_factory=list)
    catch: list[Catcher] = field(default_factory=list)
    branches: list[Machine] = field(default_factory=list)
    processor: Machine | None = None
    processor_mode: str = "INLINE"
    execution_type: str | None = None
    resource: str | None = None
    comment: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether the execution (or branch) ends after this state: End, Succeed or Fail."""
        return self.end or self.type in ("Succeed", "Fail")


@dataclass
class Machine:
    """A state machine, or a Parallel branch, or a Map's processor."""

    start_at: str
    states: dict[str, State]
    query_language: str = JSONPATH
    timeout_seconds: int | None = None
    comment: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def build_machine(raw: dict[str, Any], inherited_language: str = JSONPATH) -> Machine:
    """A ``Machine`` from the dict of a valid definition (top level, branch or processor)."""
    language = raw.get("QueryLanguage", inherited_language)
    states = {name: build_state(name, body, language) for name, body in raw["States"].items()}
    return Machine(
        start_at=raw["StartAt"],
        states=states,
        query_language=language,
        timeout_seconds=raw.get("TimeoutSeconds"),
        comment=raw.get("Comment"),
        raw=raw,
    )


def build_state(name: str, raw: dict[str, Any], machine_language: str) -> State:
    language = raw.get("QueryLanguage", machine_language)
    state = State(
        name=name,
        type=raw["Type"],
        raw=raw,
        next=raw.get("Next"),
        end=bool(raw.get("End", False)),
        query_language=language,
        retry=[build_retrier(r) for r in raw.get("Retry", [])],
        catch=[build_catcher(c) for c in raw.get("Catch", [])],
        resource=raw.get("Resource"),
        comment=raw.get("Comment"),
    )
    if state.type == "Parallel":
        state.branches = [build_machine(b, language) for b in raw.get("Branches", [])]
    elif state.type == "Map":
        processor = raw.get("ItemProcessor") or raw.get("Iterator")
        if processor is not None:
            state.processor = build_machine(processor, language)
            config = processor.get("ProcessorConfig", {})
            state.processor_mode = config.get("Mode", "INLINE")
            state.execution_type = config.get("ExecutionType")
    return state


def build_retrier(raw: dict[str, Any]) -> Retrier:
    return Retrier(
        error_equals=list(raw["ErrorEquals"]),
        interval_seconds=raw.get("IntervalSeconds", 1),
        max_attempts=raw.get("MaxAttempts", 3),
        backoff_rate=float(raw.get("BackoffRate", 2.0)),
        max_delay_seconds=raw.get("MaxDelaySeconds"),
        jitter_strategy=raw.get("JitterStrategy", "NONE"),
        comment=raw.get("Comment"),
    )


def build_catcher(raw: dict[str, Any]) -> Catcher:
    return Catcher(
        error_equals=list(raw["ErrorEquals"]),
        next=raw["Next"],
        result_path=raw["ResultPath"] if "ResultPath" in raw else "$",
        output=raw.get("Output"),
        assign=raw.get("Assign"),
        comment=raw.get("Comment"),
        raw=raw,
    )
