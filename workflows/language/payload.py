"""Payload templates of JSONPath states: Parameters, ResultSelector, ItemSelector and Assign.

A key ending in ``.$`` takes the value of its Path (``$...`` the data, ``$$...`` the context object,
``$name...`` a variable) or of an intrinsic call, under the key without the suffix; other values are literals,
objects and arrays are walked.
"""

from __future__ import annotations

from typing import Any

from workflows.language import intrinsics
from workflows.language.errors import RUNTIME, StatesError
from workflows.language.paths import PathNotFound, dumps, public_context, resolve


def expand(template: Any, data: Any, ctx: dict[str, Any], variables: dict[str, Any], context: str = "") -> Any:
    """The template with every ``.$`` field resolved against ``data``; ``context`` prefixes causes
    (``An error occurred while executing the state ...``)."""
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                out[key[:-2]] = _dynamic(key, value, data, ctx, variables, context)
            else:
                out[key] = expand(value, data, ctx, variables, context)
        return out
    if isinstance(template, list):
        return [expand(v, data, ctx, variables, context) for v in template]
    return template


def _dynamic(key: str, value: str, data: Any, ctx: dict[str, Any], variables: dict[str, Any], context: str) -> Any:
    if intrinsics.is_intrinsic(value):
        try:
            return intrinsics.evaluate(value, data, ctx, variables)
        except StatesError as e:
            raise StatesError(e.error, context + e.cause) from e
    try:
        return resolve(value, data, ctx, variables)
    except PathNotFound as e:
        source = public_context(ctx) if value.startswith("$$") else data
        raise StatesError(
            RUNTIME,
            f"{context}The JSONPath '{value}' specified for the field '{key}' could not be found in the input "
            f"'{dumps(source)}'",
        ) from e


def assign(
    template: dict[str, Any], data: Any, ctx: dict[str, Any], variables: dict[str, Any], context: str = ""
) -> dict[str, Any]:
    """The variables after a JSONPath ``Assign``: every value is computed from the variables *before* the
    assignment (assignments in one Assign do not see each other), then merged over them."""
    values = expand(template, data, ctx, variables, context)
    return {**variables, **values}
