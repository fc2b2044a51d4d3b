"""Processing one state's data: input, Map items, output and variables, Choice, Wait, Fail, timeouts, Catch.

JSONPath states: InputPath -> Parameters -> (the work) -> ResultSelector -> ResultPath -> OutputPath, with Assign
computed from the result (after ResultSelector; the effective input for Choice and Wait) and taking effect after
the state, so its own OutputPath still sees the variables it entered with.

JSONata states: Arguments -> (the work) -> Output and Assign, both evaluated with ``$states.input``,
``$states.result`` (``$states.errorOutput`` in a Catch) and ``$states.context``, and the variables the state
entered with.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from workflows.language import intrinsics, payload, query
from workflows.language.choice import evaluate_rule, parse_timestamp
from workflows.language.errors import DATA_LIMIT, NO_CHOICE, PAYLOAD_LIMIT, QUERY_EVALUATION, RUNTIME, StatesError
from workflows.language.model import JSONATA, State
from workflows.language.paths import ENTERED_EVENT_ID, PathNotFound, dumps, public_context, put, resolve
from workflows.language.retry import matching_catcher
from workflows.language.retry import retry_delay as _retry_delay

_RESULT_STATES = ("Task", "Pass", "Parallel", "Map")


def context_prefix(state: State, ctx: dict[str, Any]) -> str:
    """How AWS opens a runtime cause: ``An error occurred while executing the state 'X' (entered at the event
    id #N). ``"""
    event_id = ctx.get(ENTERED_EVENT_ID)
    entered = f" (entered at the event id #{event_id})" if event_id is not None else ""
    return f"An error occurred while executing the state '{state.name}'{entered}. "


def check_size(value: Any, state: State, what: str = "output") -> None:
    """``States.DataLimitExceeded`` when ``value`` (the state's ``what``) is over the 256 KB payload quota."""
    if len(dumps(value).encode()) > PAYLOAD_LIMIT:
        raise StatesError(
            DATA_LIMIT,
            f"The state/task '{state.name}' returned a result with a size exceeding the maximum number of bytes "
            "service limit.",
        )


def _jsonata_bindings(state_input: Any, ctx: dict[str, Any], variables: dict[str, Any], **extra: Any) -> dict[str, Any]:
    states = {"input": state_input, "context": public_context(ctx), **extra}
    return query.bind(states, variables)


def _eval(state: State, value: Any, bindings: dict[str, Any], field: str, ctx: dict[str, Any]) -> Any:
    try:
        return query.render(value, bindings, field)
    except StatesError as e:
        raise StatesError(e.error, context_prefix(state, ctx) + e.cause) from e


def _path(state: State, path: str, data: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> Any:
    """InputPath/OutputPath/ItemsPath and friends: a missing value is AWS's ``Invalid path`` runtime error."""
    try:
        return resolve(path, data, ctx, variables)
    except PathNotFound as e:
        raise StatesError(
            RUNTIME, f"{context_prefix(state, ctx)}Invalid path '{path}' : No results for path: {e.steps}"
        ) from e


def _input_path(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> Any:
    raw = state.raw
    if "InputPath" not in raw:
        return state_input
    if raw["InputPath"] is None:
        return {}
    return _path(state, raw["InputPath"], state_input, ctx, variables)


def enter(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> Any:
    if state.query_language == JSONATA:
        if "Arguments" not in state.raw:
            return state_input
        args = _eval(state, state.raw["Arguments"], _jsonata_bindings(state_input, ctx, variables), "Arguments", ctx)
        check_size(args, state, "arguments")
        return args
    effective = _input_path(state, state_input, ctx, variables)
    if state.type in ("Task", "Pass", "Parallel") and "Parameters" in state.raw:
        effective = payload.expand(state.raw["Parameters"], effective, ctx, variables, context_prefix(state, ctx))
        check_size(effective, state, "parameters")
    return effective


def _int_field(state: State, value: Any, field: str, ctx: dict[str, Any], minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < minimum:
        error = QUERY_EVALUATION if state.query_language == JSONATA else RUNTIME
        raise StatesError(
            error,
            f"{context_prefix(state, ctx)}The value of the field '{field}' must be an integer of at least {minimum}, "
            f"got {dumps(value)}",
        )
    return int(value)


def _number(
    state: State, field: str, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any], minimum: int = 0
) -> int | None:
    """An integer field given literally, by ``<field>Path`` (JSONPath) or as a ``{% %}`` expression (JSONata)."""
    raw = state.raw
    if field in raw:
        value = raw[field]
        if query.is_expression(value):
            value = _eval(state, value, _jsonata_bindings(state_input, ctx, variables), field, ctx)
        return _int_field(state, value, field, ctx, minimum)
    if field + "Path" in raw:
        data = _input_path(state, state_input, ctx, variables)
        return _int_field(state, _path(state, raw[field + "Path"], data, ctx, variables), field + "Path", ctx, minimum)
    return None


def items(state: State, effective_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> list[Any]:
    raw = state.raw
    prefix = context_prefix(state, ctx)
    if state.query_language == JSONATA:
        bindings = _jsonata_bindings(effective_input, ctx, variables)
        values = _eval(state, raw["Items"], bindings, "Items", ctx) if "Items" in raw else effective_input
    else:
        values = _path(state, raw.get("ItemsPath", "$"), effective_input, ctx, variables)
    if not isinstance(values, list):
        field = "Items" if state.query_language == JSONATA else "ItemsPath"
        raise StatesError(
            QUERY_EVALUATION if state.query_language == JSONATA else RUNTIME,
            f"{prefix}The value of the field '{field}' must be an array, got {dumps(values)}",
        )
    selector = raw.get("ItemSelector", raw.get("Parameters"))
    if selector is not None:
        selected = []
        for index, value in enumerate(values):
            item_ctx = {**ctx, "Map": {"Item": {"Index": index, "Value": value}}}
            if state.query_language == JSONATA:
                bindings = _jsonata_bindings(effective_input, item_ctx, variables)
                selected.append(_eval(state, selector, bindings, "ItemSelector", ctx))
            else:
                selected.append(payload.expand(selector, effective_input, item_ctx, variables, prefix))
        values = selected
    batcher = raw.get("ItemBatcher")
    if batcher is not None:
        values = _batch(state, batcher, values, effective_input, ctx, variables)
    return list(values)


def _batch(
    state: State,
    batcher: dict[str, Any],
    values: list[Any],
    effective_input: Any,
    ctx: dict[str, Any],
    variables: dict[str, Any],
) -> list[Any]:
    sub = State(state.name, state.type, batcher, query_language=state.query_language)
    max_items = _number(sub, "MaxItemsPerBatch", effective_input, ctx, variables, 1)
    max_bytes = _number(sub, "MaxInputBytesPerBatch", effective_input, ctx, variables, 1)
    batch_input = batcher.get("BatchInput")
    if batch_input is not None:
        if state.query_language == JSONATA:
            batch_input = _eval(
                state, batch_input, _jsonata_bindings(effective_input, ctx, variables), "BatchInput", ctx
            )
        else:
            batch_input = payload.expand(batch_input, effective_input, ctx, variables, context_prefix(state, ctx))
    batches: list[list[Any]] = []
    current: list[Any] = []
    size = 0
    for value in values:
        item_size = len(dumps(value).encode())
        full = (max_items is not None and len(current) >= max_items) or (
            max_bytes is not None and current and size + item_size > max_bytes
        )
        if full:
            batches.append(current)
            current, size = [], 0
        current.append(value)
        size += item_size
    if current:
        batches.append(current)
    out: list[Any] = []
    for batch in batches:
        entry: dict[str, Any] = {"Items": batch}
        if batch_input is not None:
            entry["BatchInput"] = batch_input
        out.append(entry)
    return out


def leave(
    state: State, state_input: Any, result: Any, ctx: dict[str, Any], variables: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    raw = state.raw
    if state.query_language == JSONATA:
        has_result = state.type in ("Task", "Parallel", "Map")
        extra = {"result": result} if has_result else {}
        bindings = _jsonata_bindings(state_input, ctx, variables, **extra)
        if "Output" in raw:
            output = _eval(state, raw["Output"], bindings, "Output", ctx)
        else:
            output = result if has_result else state_input
        new_vars = variables
        if "Assign" in raw:
            assigned = _eval(state, raw["Assign"], bindings, "Assign", ctx)
            check_size(assigned, state, "assign")
            new_vars = {**variables, **assigned}
        check_size(output, state)
        return output, new_vars
    prefix = context_prefix(state, ctx)
    if state.type in _RESULT_STATES:
        if state.type == "Pass" and "Result" in raw:
            result = raw["Result"]
        if state.type != "Pass" and "ResultSelector" in raw:
            result = payload.expand(raw["ResultSelector"], result, ctx, variables, prefix)
        assign_data = result
        if "ResultPath" in raw and raw["ResultPath"] is None:
            output = state_input
        else:
            output = put(raw.get("ResultPath", "$"), state_input, result)
    else:
        output = _input_path(state, state_input, ctx, variables)
        assign_data = output
    if "OutputPath" in raw:
        output = {} if raw["OutputPath"] is None else _path(state, raw["OutputPath"], output, ctx, variables)
    new_vars = variables
    if "Assign" in raw:
        new_vars = payload.assign(raw["Assign"], assign_data, ctx, variables, prefix)
        names = [k.removesuffix(".$") for k in raw["Assign"]]
        check_size({n: new_vars[n] for n in names}, state, "assign")
    check_size(output, state)
    return output, new_vars


def decide(
    state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]
) -> tuple[str, Any, dict[str, Any]]:
    """A Choice's (next state, output, variables): the first matching rule's Next, its Assign (and JSONata
    Output), else the Default with the state's own Assign/Output."""
    raw = state.raw
    if state.query_language == JSONATA:
        bindings = _jsonata_bindings(state_input, ctx, variables)
        for rule in raw["Choices"]:
            matched = _eval(state, rule["Condition"], bindings, "Condition", ctx)
            if not isinstance(matched, bool):
                raise StatesError(
                    QUERY_EVALUATION,
                    f"{context_prefix(state, ctx)}The JSONata expression '{query.body(rule['Condition'])}' specified "
                    f"for the field 'Condition' returned a non-boolean value {dumps(matched)}",
                )
            if matched:
                return _jsonata_choice_exit(state, rule, rule["Next"], state_input, bindings, variables, ctx)
        if "Default" in raw:
            return _jsonata_choice_exit(state, raw, raw["Default"], state_input, bindings, variables, ctx)
        raise _no_choice(state, ctx)
    prefix = context_prefix(state, ctx)
    effective = _input_path(state, state_input, ctx, variables)
    for rule in raw["Choices"]:
        if evaluate_rule(rule, effective, ctx, variables, prefix):
            return _jsonpath_choice_exit(state, rule, rule["Next"], effective, ctx, variables)
    if "Default" in raw:
        return _jsonpath_choice_exit(state, raw, raw["Default"], effective, ctx, variables)
    raise _no_choice(state, ctx)


def _no_choice(state: State, ctx: dict[str, Any]) -> StatesError:
    return StatesError(NO_CHOICE, f"{context_prefix(state, ctx)}No Matches!")


def _jsonata_choice_exit(
    state: State,
    holder: dict[str, Any],
    next_state: str,
    state_input: Any,
    bindings: dict[str, Any],
    variables: dict[str, Any],
    ctx: dict[str, Any],
) -> tuple[str, Any, dict[str, Any]]:
    output = _eval(state, holder["Output"], bindings, "Output", ctx) if "Output" in holder else state_input
    new_vars = variables
    if "Assign" in holder:
        new_vars = {**variables, **_eval(state, holder["Assign"], bindings, "Assign", ctx)}
    check_size(output, state)
    return next_state, output, new_vars


def _jsonpath_choice_exit(
    state: State,
    holder: dict[str, Any],
    next_state: str,
    effective: Any,
    ctx: dict[str, Any],
    variables: dict[str, Any],
) -> tuple[str, Any, dict[str, Any]]:
    raw = state.raw
    output = effective
    if "OutputPath" in raw:
        output = {} if raw["OutputPath"] is None else _path(state, raw["OutputPath"], effective, ctx, variables)
    new_vars = variables
    if "Assign" in holder:
        new_vars = payload.assign(holder["Assign"], effective, ctx, variables, context_prefix(state, ctx))
    return next_state, output, new_vars


def wait_until(
    state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any], now: datetime
) -> datetime:
    raw = state.raw
    seconds = _number(state, "Seconds", state_input, ctx, variables)
    if seconds is not None:
        return now + timedelta(seconds=seconds)
    if "Timestamp" in raw:
        value = raw["Timestamp"]
        if query.is_expression(value):
            value = _eval(state, value, _jsonata_bindings(state_input, ctx, variables), "Timestamp", ctx)
        field = "Timestamp"
    else:
        data = _input_path(state, state_input, ctx, variables)
        value = _path(state, raw["TimestampPath"], data, ctx, variables)
        field = "TimestampPath"
    when = parse_timestamp(value)
    if when is None:
        raise StatesError(
            QUERY_EVALUATION if state.query_language == JSONATA else RUNTIME,
            f"{context_prefix(state, ctx)}The value of the field '{field}' must be an ISO-8601 extended offset "
            f"date-time format string, got {dumps(value)}",
        )
    return when


def fail_of(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> tuple[str, str]:
    raw = state.raw
    out: list[str] = []
    for field in ("Error", "Cause"):
        value: Any = raw.get(field, "")
        if state.query_language == JSONATA and query.is_expression(value):
            value = _eval(state, value, _jsonata_bindings(state_input, ctx, variables), field, ctx)
        elif field + "Path" in raw:
            path = raw[field + "Path"]
            if intrinsics.is_intrinsic(path):
                try:
                    value = intrinsics.evaluate(path, state_input, ctx, variables)
                except StatesError as e:
                    raise StatesError(e.error, context_prefix(state, ctx) + e.cause) from e
            else:
                value = _path(state, path, state_input, ctx, variables)
        if not isinstance(value, str):
            raise StatesError(
                QUERY_EVALUATION if state.query_language == JSONATA else RUNTIME,
                f"{context_prefix(state, ctx)}The value of the field '{field}' must be a string, got {dumps(value)}",
            )
        out.append(value)
    return out[0], out[1]


def timeout_seconds(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> int | None:
    return _number(state, "TimeoutSeconds", state_input, ctx, variables, 1)


def heartbeat_seconds(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> int | None:
    return _number(state, "HeartbeatSeconds", state_input, ctx, variables, 1)


def max_concurrency(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> int:
    value = _number(state, "MaxConcurrency", state_input, ctx, variables)
    return value or 0


def tolerated(
    state: State,
    total: int,
    failed: int,
    state_input: Any = None,
    ctx: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
) -> bool:
    ctx = ctx or {}
    variables = variables or {}
    if failed == 0:
        return True
    count = _number(state, "ToleratedFailureCount", state_input, ctx, variables)
    percentage = _percentage(state, state_input, ctx, variables)
    if count is None and percentage is None:
        return False
    if count is not None and failed > count:
        return False
    return not (percentage is not None and total > 0 and failed * 100.0 / total > percentage)


def _percentage(state: State, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> float | None:
    raw = state.raw
    if "ToleratedFailurePercentage" in raw:
        value = raw["ToleratedFailurePercentage"]
        if query.is_expression(value):
            value = _eval(
                state, value, _jsonata_bindings(state_input, ctx, variables), "ToleratedFailurePercentage", ctx
            )
    elif "ToleratedFailurePercentagePath" in raw:
        data = _input_path(state, state_input, ctx, variables)
        value = _path(state, raw["ToleratedFailurePercentagePath"], data, ctx, variables)
    else:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise StatesError(
            RUNTIME,
            f"{context_prefix(state, ctx)}The value of the field 'ToleratedFailurePercentage' must be a number "
            f"between 0 and 100, got {dumps(value)}",
        )
    return float(value)


def retry_delay(state: State, error: str, attempts: list[int], rng: random.Random) -> tuple[int, float] | None:
    return _retry_delay(state.retry, error, attempts, rng)


def catch(
    state: State, error: str, cause: str, state_input: Any, ctx: dict[str, Any], variables: dict[str, Any]
) -> tuple[str, Any, dict[str, Any]] | None:
    catcher = matching_catcher(state.catch, error)
    if catcher is None:
        return None
    error_output = {"Error": error, "Cause": cause}
    if state.query_language == JSONATA:
        bindings = _jsonata_bindings(state_input, ctx, variables, errorOutput=error_output)
        output = _eval(state, catcher.output, bindings, "Output", ctx) if catcher.output is not None else error_output
        new_vars = variables
        if catcher.assign is not None:
            new_vars = {**variables, **_eval(state, catcher.assign, bindings, "Assign", ctx)}
        return catcher.next, output, new_vars
    output = state_input if catcher.result_path is None else put(catcher.result_path, state_input, error_output)
    new_vars = variables
    if catcher.assign is not None:
        new_vars = payload.assign(catcher.assign, error_output, ctx, variables, context_prefix(state, ctx))
    check_size(output, state)
    return catcher.next, output, new_vars
