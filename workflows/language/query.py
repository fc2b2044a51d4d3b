"""JSONata in the States Language: ``{% expression %}`` strings evaluated with the ``jsonata-python`` library.

Each expression is compiled once (cached by text) with AWS's extra functions registered (``$partition``,
``$range``, ``$hash``, ``$random``, ``$uuid``, ``$parse``; ``$eval`` is not available, as on AWS). An evaluation
binds ``$states`` (input, result, errorOutput, context) and the variables in scope as JSONata variables, so no
text is rebuilt per call.

jsonata-python represents JSON null as a sentinel and "nothing" (undefined) as None; results are turned back
into plain JSON, and an expression that yields nothing is AWS's ``States.QueryEvaluationError``.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from functools import lru_cache
from typing import Any

import jsonata  # type: ignore[import-untyped]
from jsonata import utils as jsonata_utils

from workflows.language.errors import QUERY_EVALUATION, StatesError
from workflows.language.intrinsics import MAX_ARRAY, _hash

_EXPRESSION = re.compile(r"^\{%(.*)%\}$", re.DOTALL)
_NULL = jsonata_utils.Utils.NULL_VALUE

# A runaway expression (an infinite tail recursion, a huge loop) must not hold a worker: each evaluation is
# bounded in time and depth, and fails as States.QueryEvaluationError past either.
TIMEOUT_MS = 1000
MAX_DEPTH = 500


def is_expression(value: Any) -> bool:
    """Whether a field value is a JSONata expression ``{% ... %}``."""
    return isinstance(value, str) and value.startswith("{%") and value.endswith("%}") and len(value) >= 4


def body(text: str) -> str:
    m = _EXPRESSION.match(text)
    return m.group(1).strip() if m else text


class QuerySyntaxError(ValueError):
    """An expression jsonata cannot compile (a validation error)."""


def _fail(message: str) -> StatesError:
    return StatesError(QUERY_EVALUATION, message)


def _partition(array: Any, size: Any) -> Any:
    if not isinstance(array, list) or isinstance(size, bool) or not isinstance(size, (int, float)) or size <= 0:
        raise _fail("$partition expects an array and a positive chunk size")
    n = int(size)
    return [list(array[i : i + n]) for i in range(0, len(array), n)]


def _range(start: Any, end: Any, step: Any) -> Any:
    for v in (start, end, step):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _fail("$range expects three numbers")
    if step == 0:
        raise _fail("$range expects a step other than 0")
    out: list[Any] = []
    v = start
    while (v <= end) if step > 0 else (v >= end):
        out.append(v)
        if len(out) > MAX_ARRAY:
            raise _fail(f"$range cannot produce more than {MAX_ARRAY} items")
        v += step
    return out


def _hash_fn(data: Any, algorithm: Any) -> Any:
    try:
        return _hash("$hash", [_plain(data), _plain(algorithm)])
    except StatesError as e:
        raise _fail(e.cause.replace("Invalid arguments in $hash: ", "$hash: ")) from e


def _random(seed: Any = None) -> Any:
    return random.Random(seed).random() if seed is not None else random.random()


def _uuid() -> Any:
    return str(uuid.uuid4())


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        raise _fail("$parse expects a string")
    try:
        return json.loads(text)
    except ValueError as e:
        raise _fail(f"$parse: the string is not valid JSON: {text}") from e


def _no_eval(*_: Any) -> Any:
    raise _fail("The JSONata function $eval is not supported by Step Functions; use $parse")


_AWS_FUNCTIONS = {
    "eval": _no_eval,
    "partition": _partition,
    "range": _range,
    "hash": _hash_fn,
    "random": _random,
    "uuid": _uuid,
    "parse": _parse,
}


@lru_cache(maxsize=4096)
def compile_expression(text: str) -> Any:
    """The compiled expression of a ``{% %}`` string (or of a bare expression); raises ``QuerySyntaxError``."""
    try:
        expr = jsonata.Jsonata(body(text))
    except Exception as e:  # jsonata raises JException (and others) for syntax errors
        raise QuerySyntaxError(f"{body(text)}: {e}") from e
    expr.set_output_convert_nulls(False)
    for name, fn in _AWS_FUNCTIONS.items():
        expr.register_lambda(name, fn)
    return expr


def reads_the_root(text: str) -> bool:
    """Whether an expression, as a whole, is ``$``, ``$$`` or a path starting with a bare field name: AWS rejects
    those (there is no root document in Step Functions; the input is ``$states.input``)."""
    ast = compile_expression(text).ast
    kind = getattr(ast, "type", None)
    if kind == "variable":
        return getattr(ast, "value", None) in ("", "$")
    if kind == "name":
        return True
    if kind == "path":
        steps = getattr(ast, "steps", None) or []
        return bool(steps) and getattr(steps[0], "type", None) == "name"
    return False


def _plain(value: Any) -> Any:
    """A jsonata result as plain JSON (null sentinel to None, sequences to plain lists)."""
    if value is _NULL:
        return None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _to_jsonata(value: Any) -> Any:
    """JSON data as jsonata reads it: null is its sentinel (None would be "nothing")."""
    if value is None:
        return _NULL
    if isinstance(value, list):
        return [_to_jsonata(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_jsonata(v) for k, v in value.items()}
    return value


def bind(states: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
    """The JSONata bindings of one state's evaluations: ``$states`` and the variables in scope, built once and
    shared by the expressions of the state."""
    bindings = {name: _to_jsonata(v) for name, v in variables.items()}
    bindings["states"] = _to_jsonata(states)
    return bindings


def evaluate(text: str, bindings: dict[str, Any], field: str) -> Any:
    """The value of a ``{% %}`` expression for the field ``field`` with ``bindings`` (see ``bind``).

    Raises ``StatesError(States.QueryEvaluationError)`` when evaluation fails or yields nothing."""
    try:
        expr = compile_expression(text)
    except QuerySyntaxError as e:
        raise _fail(f"The JSONata expression '{body(text)}' specified for the field '{field}' is invalid: {e}") from e
    frame = jsonata.Jsonata.Frame(None)
    frame.bindings.update(bindings)
    frame.set_runtime_bounds(TIMEOUT_MS, MAX_DEPTH)
    try:
        result = expr.evaluate(None, frame)
    except StatesError:
        raise
    except Exception as e:
        raise _fail(
            f"An error occurred while evaluating the JSONata expression '{body(text)}' specified for the field "
            f"'{field}': {e}"
        ) from e
    if result is None:
        raise _fail(
            f"The JSONata expression '{body(text)}' specified for the field '{field}' returned nothing (undefined)."
        )
    if callable(getattr(result, "call", None)):
        raise _fail(
            f"The JSONata expression '{body(text)}' specified for the field '{field}' returned an unsupported "
            "result type."
        )
    return _plain(result)


def render(template: Any, bindings: dict[str, Any], field: str) -> Any:
    """A JSONata-state template (Arguments, Output, Assign values...): strings that are ``{% %}`` expressions are
    evaluated, objects and arrays are walked, everything else is a literal."""
    if isinstance(template, str):
        return evaluate(template, bindings, field) if is_expression(template) else template
    if isinstance(template, dict):
        return {k: render(v, bindings, field) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, bindings, field) for v in template]
    return template
