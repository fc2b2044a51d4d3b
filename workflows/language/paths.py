"""JSONPath as the States Language uses it: Paths (InputPath, OutputPath, ``.$`` values, ItemsPath...),
Reference Paths (ResultPath), the context object ``$$`` and variables ``$name``.

AWS evaluates paths with Jayway JsonPath: a *definite* path (only fields and indexes) yields one value or fails;
an indefinite one (wildcards, slices, filters, ``..``, unions) yields a list, empty when nothing matches. Simple
dotted paths are walked directly (the common case, and fast); the rest go through jsonpath-ng's extended parser.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse as jsonpath_parse

from workflows.language.errors import RESULT_PATH_MATCH, StatesError

_SIMPLE = re.compile(r"^\$((\.[A-Za-z_][\w-]*)|(\[\d+\])|(\['[^'\\]*'\]))*$")
_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\['([^'\\]*)'\]")
_INDEFINITE = re.compile(r"\*|\.\.|\[\s*\?|:|,|@")
_VARIABLE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)")

# The key of ``ctx`` holding the id of the history event that entered the state (for causes); hidden from ``$$``.
ENTERED_EVENT_ID = "_enteredEventId"


class PathNotFound(Exception):
    """A definite path matched nothing; callers turn it into the States error of their field."""

    def __init__(self, path: str, steps: str) -> None:
        super().__init__(path)
        self.path = path
        self.steps = steps


class InvalidPath(ValueError):
    """Text that is not a JSONPath the States Language accepts (found by validation or at run time)."""


def dumps(value: Any) -> str:
    """Compact JSON as AWS prints values in causes and histories (orjson, or the standard library for what orjson
    refuses, such as integers beyond 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class _Compiled:
    text: str
    steps: tuple[str | int, ...] | None  # the walk of a simple path, else None
    definite: bool
    expr: Any  # jsonpath-ng expression when not simple
    length_of: _Compiled | None = None  # Jayway's ``<path>.length()``


@lru_cache(maxsize=4096)
def compile_path(path: str) -> _Compiled:
    """Parse (once) a path that starts with ``$``; raises ``InvalidPath``."""
    if not path.startswith("$"):
        raise InvalidPath(path)
    if path.endswith(".length()") and len(path) > len("$.length()"):
        return _Compiled(path, None, True, None, compile_path(path[: -len(".length()")]))
    if _SIMPLE.match(path):
        steps: list[str | int] = []
        for m in _STEP.finditer(path):
            field, index, quoted = m.groups()
            steps.append(int(index) if index is not None else (field if field is not None else quoted))
        return _Compiled(path, tuple(steps), True, None)
    try:
        expr = jsonpath_parse(path)
    except (JsonPathLexerError, JsonPathParserError, Exception) as e:
        raise InvalidPath(path) from e
    return _Compiled(path, None, not _INDEFINITE.search(path[1:]), expr)


def is_valid_path(path: str) -> bool:
    """Whether ``path`` is a Path a field accepts: ``$...`` on the data, ``$$...`` on the context object or
    ``$name...`` on a variable."""
    if path.startswith("$$"):
        path = path[1:]
    else:
        m = _VARIABLE.match(path)
        if m:
            path = "$" + path[m.end() :]
    try:
        compile_path(path)
    except InvalidPath:
        return False
    return True


def _render_steps(steps: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{s}]" if isinstance(s, int) else f"['{s}']" for s in steps)


def select(path: str, data: Any) -> Any:
    """The value ``path`` selects in ``data``; raises ``PathNotFound`` for a definite path that matches nothing."""
    compiled = compile_path(path)
    if compiled.length_of is not None:
        value = select(compiled.length_of.text, data)
        if not isinstance(value, (list, dict, str)):
            raise PathNotFound(path, path)
        return len(value)
    if compiled.steps is not None:
        value = data
        for step in compiled.steps:
            if isinstance(step, int):
                if not isinstance(value, list) or step >= len(value):
                    raise PathNotFound(path, _render_steps(compiled.steps))
            elif not isinstance(value, dict) or step not in value:
                raise PathNotFound(path, _render_steps(compiled.steps))
            value = value[step]
        return value
    matches = [m.value for m in compiled.expr.find(data)]
    if compiled.definite:
        if not matches:
            raise PathNotFound(path, path)
        return matches[0]
    return matches


def public_context(ctx: dict[str, Any]) -> dict[str, Any]:
    """The context object as a definition sees it: without the executor's private ``_`` keys."""
    if any(k.startswith("_") for k in ctx):
        return {k: v for k, v in ctx.items() if not k.startswith("_")}
    return ctx


def resolve(path: str, data: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> Any:
    """A Path of a ``.$`` field or a ...Path field: ``$$...`` reads the context object, ``$name...`` a variable,
    ``$...`` the data. Raises ``PathNotFound`` (also for an undefined variable)."""
    if path.startswith("$$"):
        return select(path[1:], public_context(ctx))
    m = _VARIABLE.match(path)
    if m:
        name = m.group(1)
        if name not in variables:
            raise PathNotFound(path, path)
        rest = path[m.end() :]
        return variables[name] if not rest else select("$" + rest, variables[name])
    return select(path, data)


# -- Reference Paths ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def reference_steps(path: str) -> tuple[str | int, ...]:
    """The steps of a Reference Path (``$``, ``$.a.b``, ``$['a'][0]``); raises ``InvalidPath`` otherwise."""
    if not _SIMPLE.match(path):
        raise InvalidPath(path)
    compiled = compile_path(path)
    assert compiled.steps is not None
    return compiled.steps


def is_reference_path(path: str) -> bool:
    try:
        reference_steps(path)
    except InvalidPath:
        return False
    return True


def put(path: str, data: Any, value: Any) -> Any:
    """``data`` with ``value`` placed at the Reference Path ``path`` (ResultPath): missing objects on the way are
    created; a step into something that is not an object raises ``States.ResultPathMatchFailure``. ``data`` is
    not modified (the changed spine is copied)."""
    steps = reference_steps(path)
    if not steps:
        return value
    return _put(steps, 0, data, value)


def _put(steps: tuple[str | int, ...], i: int, node: Any, value: Any) -> Any:
    step = steps[i]
    last = i == len(steps) - 1
    if isinstance(step, int):
        if not isinstance(node, list) or step >= len(node):
            raise StatesError(RESULT_PATH_MATCH, f'Unable to apply step "{step}" to input {dumps(node)}')
        out_list = list(node)
        out_list[step] = value if last else _put(steps, i + 1, node[step], value)
        return out_list
    if not isinstance(node, dict):
        raise StatesError(RESULT_PATH_MATCH, f'Unable to apply step "{step}" to input {dumps(node)}')
    out = dict(node)
    out[step] = value if last else _put(steps, i + 1, node.get(step, {}), value)
    return out
