"""The intermediate values of one state's data processing, for TestState's ``inspectionData`` (DEBUG level).

AWS's InspectionData names the step after which each value is taken: ``afterInputPath``, ``afterParameters``
(``afterArguments`` in JSONata), ``result``, ``afterResultSelector``, ``afterResultPath``, and the ``variables``
after the state's Assign. Values are plain JSON; the API serialises them (the wire shape is JSON text).
"""

from __future__ import annotations

from typing import Any

from workflows.language import payload, process
from workflows.language.model import JSONATA, State
from workflows.language.paths import put


def inspect(
    state: State, state_input: Any, result: Any, ctx: dict[str, Any], variables: dict[str, Any]
) -> dict[str, Any]:
    """The inspection data of running ``state`` on ``state_input`` with ``result`` as its work's result (ignored
    for Pass, whose result is its Result or effective input, and for states without a result)."""
    data: dict[str, Any] = {"input": state_input}
    effective = process.enter(state, state_input, ctx, variables)
    if state.query_language == JSONATA:
        if "Arguments" in state.raw:
            data["afterArguments"] = effective
    else:
        data["afterInputPath"] = process._input_path(state, state_input, ctx, variables)
        if "Parameters" in state.raw and state.type in ("Task", "Pass", "Parallel"):
            data["afterParameters"] = effective
    if state.type == "Pass" and state.query_language != JSONATA:
        result = state.raw.get("Result", effective)
    if state.type in ("Task", "Pass", "Parallel", "Map"):
        data["result"] = result
        if state.query_language != JSONATA:
            selected = result
            if state.type != "Pass" and "ResultSelector" in state.raw:
                selected = payload.expand(
                    state.raw["ResultSelector"], result, ctx, variables, process.context_prefix(state, ctx)
                )
                data["afterResultSelector"] = selected
            if "ResultPath" in state.raw and state.raw["ResultPath"] is None:
                data["afterResultPath"] = state_input
            else:
                data["afterResultPath"] = put(state.raw.get("ResultPath", "$"), state_input, selected)
    if state.type == "Choice":
        data["variables"] = process.decide(state, state_input, ctx, variables)[2]
    elif state.type == "Fail":
        data["variables"] = variables
    else:
        given = effective if state.type == "Pass" else result
        data["variables"] = process.leave(state, state_input, given, ctx, variables)[1]
    return data
