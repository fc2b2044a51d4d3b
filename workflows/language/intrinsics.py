"""The 18 intrinsic functions of JSONPath states (``States.Format(...)`` and friends).

The call syntax is parsed with a lark grammar into a small tree (``Call``, ``Literal``, ``PathArg``), cached
per text; evaluation resolves the path arguments and applies the function. Every failure is
``States.IntrinsicFailure`` naming the function, as AWS reports it.

String literals are single-quoted; inside them ``\\'``, ``\\{``, ``\\}`` and ``\\\\`` stand for the character
itself, any other backslash is an error. In ``States.Format``'s template an escaped brace is a literal brace,
while ``{}`` is a placeholder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError

from workflows.language.errors import INTRINSIC, StatesError
from workflows.language.paths import PathNotFound, dumps, resolve

_GRAMMAR = r"""
    start: call
    call: NAME "(" [arg ("," arg)*] ")"
    ?arg: call
        | STRING  -> string
        | NUMBER  -> number
        | PATH    -> path
        | "true"  -> true
        | "false" -> false
        | "null"  -> null
    NAME: /States\.[A-Za-z0-9]+/
    STRING: /'(\\.|[^'\\])*'/
    NUMBER: /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/
    PATH: /\$(\[[^\]]*\]|[^\s,()\[\]])*/
    %import common.WS
    %ignore WS
"""

_PARSER = Lark(_GRAMMAR, parser="lalr")

MAX_NESTING = 10
MAX_ARRAY = 1000
MAX_STRING = 10000


@dataclass(frozen=True)
class Literal:
    value: Any
    raw: str | None = None  # the unescaped-not-yet text of a string literal (States.Format's template)


@dataclass(frozen=True)
class PathArg:
    path: str


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Call | Literal | PathArg, ...]


class IntrinsicSyntaxError(ValueError):
    """Text that is not a well-formed intrinsic call."""


def unescape(raw: str) -> str:
    """A string literal's value: ``\\'``, ``\\{``, ``\\}``, ``\\\\`` become the character; others are errors."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\":
            if i + 1 >= len(raw) or raw[i + 1] not in "'{}\\":
                raise IntrinsicSyntaxError(f"Invalid escape in '{raw}'")
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


class _Build(Transformer[Token, Any]):
    def start(self, children: list[Any]) -> Any:
        return children[0]

    def call(self, children: list[Any]) -> Call:
        name, *args = children
        return Call(str(name), tuple(a for a in args if a is not None))

    def string(self, children: list[Token]) -> Literal:
        raw = str(children[0])[1:-1]
        return Literal(unescape(raw), raw)

    def number(self, children: list[Token]) -> Literal:
        text = str(children[0])
        return Literal(float(text) if any(c in text for c in ".eE") else int(text))

    def path(self, children: list[Token]) -> PathArg:
        return PathArg(str(children[0]))

    def true(self, _: list[Any]) -> Literal:
        return Literal(True)

    def false(self, _: list[Any]) -> Literal:
        return Literal(False)

    def null(self, _: list[Any]) -> Literal:
        return Literal(None)


def _depth(node: Call | Literal | PathArg) -> int:
    if isinstance(node, Call):
        return 1 + max((_depth(a) for a in node.args), default=0)
    return 0


@lru_cache(maxsize=2048)
def parse_call(text: str) -> Call:
    """The tree of an intrinsic call; raises ``IntrinsicSyntaxError`` (unknown function, bad arity, syntax)."""
    try:
        tree = _Build().transform(_PARSER.parse(text))
    except (LarkError, IntrinsicSyntaxError) as e:
        raise IntrinsicSyntaxError(f"Invalid intrinsic function call: {text}") from e
    if _depth(tree) > MAX_NESTING:
        raise IntrinsicSyntaxError(f"Intrinsic functions may be nested at most {MAX_NESTING} deep: {text}")
    _check(tree)
    return tree


def is_intrinsic(text: str) -> bool:
    return text.startswith("States.")


def _check(node: Call | Literal | PathArg) -> None:
    if not isinstance(node, Call):
        return
    spec = _FUNCTIONS.get(node.name)
    if spec is None:
        raise IntrinsicSyntaxError(f"Unknown intrinsic function: {node.name}")
    low, high, _ = spec
    n = len(node.args)
    if n < low or (high is not None and n > high):
        raise IntrinsicSyntaxError(f"Invalid number of arguments for {node.name}: {n}")
    for a in node.args:
        _check(a)


def evaluate(text: str, data: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> Any:
    """The value of the intrinsic call ``text`` against ``data`` (the input), ``$$`` and variables."""
    try:
        call = parse_call(text)
    except IntrinsicSyntaxError as e:
        raise StatesError(INTRINSIC, str(e)) from e
    return _eval(call, data, ctx, variables)


def _eval(node: Call | Literal | PathArg, data: Any, ctx: dict[str, Any], variables: dict[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, PathArg):
        try:
            return resolve(node.path, data, ctx, variables)
        except PathNotFound as e:
            raise StatesError(
                INTRINSIC, f"The JSONPath '{node.path}' could not be found in the input '{dumps(data)}'"
            ) from e
    _, _, fn = _FUNCTIONS[node.name]
    if node.name == "States.Format":
        template = node.args[0]
        args = [_eval(a, data, ctx, variables) for a in node.args[1:]]
        if isinstance(template, Literal) and template.raw is not None:
            return _format_raw(template.raw, args)
        value = _eval(template, data, ctx, variables)
        if not isinstance(value, str):
            raise _fail(node.name, "The first argument must be a string")
        return _format_raw(value.replace("\\", "\\\\"), args)
    return fn(node.name, [_eval(a, data, ctx, variables) for a in node.args])


def _fail(name: str, message: str) -> StatesError:
    return StatesError(INTRINSIC, f"Invalid arguments in {name}: {message}")


# -- the functions ---------------------------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """How States.Format prints an argument: strings as they are, objects Java-style ``{a=1, b=[]}``,
    other values as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={format_value(v)}" for k, v in value.items()) + "}"
    return dumps(value)


def _format_raw(raw: str, args: list[Any]) -> str:
    out: list[str] = []
    used = 0
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            out.append(raw[i + 1])
            i += 2
        elif raw.startswith("{}", i):
            if used >= len(args):
                raise _fail("States.Format", "The number of arguments does not match the number of placeholders")
            out.append(format_value(args[used]))
            used += 1
            i += 2
        else:
            out.append(c)
            i += 1
    if used != len(args):
        raise _fail("States.Format", "The number of arguments does not match the number of placeholders")
    return "".join(out)


def _array(_: str, args: list[Any]) -> Any:
    return list(args)


def _want_array(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(name, f"Expected an array but got {dumps(value)}")
    return value


def _want_int(name: str, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, f"Expected an integer {what} but got {dumps(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(name, f"Expected an integer {what} but got {dumps(value)}")
        # AWS runs on the JVM: Math.round, half up.
        return math.floor(value + 0.5)
    return value


def _want_string(name: str, value: Any, limit: int | None = None) -> str:
    if not isinstance(value, str):
        raise _fail(name, f"Expected a string but got {dumps(value)}")
    if limit is not None and len(value) > limit:
        raise _fail(name, f"The input string exceeds the maximum of {limit} characters")
    return value


def _array_partition(name: str, args: list[Any]) -> Any:
    array = _want_array(name, args[0])
    size = _want_int(name, args[1], "chunk size")
    if size <= 0:
        raise _fail(name, "The chunk size must be a positive integer")
    return [array[i : i + size] for i in range(0, len(array), size)]


def _array_contains(name: str, args: list[Any]) -> Any:
    return any(_same(v, args[1]) for v in _want_array(name, args[0]))


def _same(a: Any, b: Any) -> bool:
    """JSON equality (1 == 1.0, but true is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _array_range(name: str, args: list[Any]) -> Any:
    start = _want_int(name, args[0], "start")
    end = _want_int(name, args[1], "end")
    step = _want_int(name, args[2], "step")
    if step == 0:
        raise _fail(name, "The step must not be 0")
    count = max(0, (end - start) // step + 1)
    if count > MAX_ARRAY:
        raise _fail(name, f"The array cannot contain more than {MAX_ARRAY} items")
    return list(range(start, end + (1 if step > 0 else -1), step))


def _array_get_item(name: str, args: list[Any]) -> Any:
    array = _want_array(name, args[0])
    index = _want_int(name, args[1], "index")
    if index < 0 or index >= len(array):
        raise _fail(name, f"The index {index} is out of bounds of an array of {len(array)} items")
    return array[index]


def _array_length(name: str, args: list[Any]) -> Any:
    return len(_want_array(name, args[0]))


def _array_unique(name: str, args: list[Any]) -> Any:
    out: list[Any] = []
    for v in _want_array(name, args[0]):
        if not any(_same(v, u) for u in out):
            out.append(v)
    return out


def _base64_encode(name: str, args: list[Any]) -> Any:
    text = _want_string(name, args[0], MAX_STRING)
    return base64.b64encode(text.encode()).decode()


def _base64_decode(name: str, args: list[Any]) -> Any:
    text = _want_string(name, args[0], MAX_STRING)
    try:
        return base64.b64decode(text, validate=True).decode()
    except ValueError as e:  # binascii.Error, UnicodeDecodeError, non-ASCII text
        raise _fail(name, "The input is not valid base64") from e


_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def _hash(name: str, args: list[Any]) -> Any:
    data = args[0]
    if data is None:
        raise _fail(name, "The input data must not be null")
    text = data if isinstance(data, str) else dumps(data)
    if len(text) > MAX_STRING:
        raise _fail(name, f"The input string exceeds the maximum of {MAX_STRING} characters")
    algorithm = args[1]
    if not isinstance(algorithm, str) or algorithm not in _HASHES:
        raise _fail(name, f"The hash algorithm must be one of {', '.join(_HASHES)}, got {dumps(algorithm)}")
    return hashlib.new(_HASHES[algorithm], text.encode()).hexdigest()


def _json_merge(name: str, args: list[Any]) -> Any:
    first, second, deep = args
    if not isinstance(first, dict) or not isinstance(second, dict):
        raise _fail(name, "Both arguments to merge must be JSON objects")
    if not isinstance(deep, bool):
        raise _fail(name, "The third argument must be a boolean")
    if deep:
        raise _fail(name, "Only shallow merge is supported: the third argument must be false")
    return {**first, **second}


def _string_to_json(name: str, args: list[Any]) -> Any:
    text = _want_string(name, args[0])
    try:
        return json.loads(text)
    except ValueError as e:
        raise _fail(name, f"The string is not valid JSON: {text}") from e


def _json_to_string(_: str, args: list[Any]) -> Any:
    return dumps(args[0])


def _math_random(name: str, args: list[Any]) -> Any:
    start = _want_int(name, args[0], "start")
    end = _want_int(name, args[1], "end")
    if start > end:
        raise _fail(name, "The start must not be greater than the end")
    rng = random.Random(_want_int(name, args[2], "seed")) if len(args) == 3 else random.Random()
    return rng.randint(start, end)


_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def _math_add(name: str, args: list[Any]) -> Any:
    a = _want_int(name, args[0], "value")
    b = _want_int(name, args[1], "step")
    for v in (a, b):
        if not _INT_MIN <= v <= _INT_MAX:
            raise _fail(name, f"The value {v} is out of the 32-bit integer range")
    return a + b


def _string_split(name: str, args: list[Any]) -> Any:
    text = _want_string(name, args[0])
    delimiters = _want_string(name, args[1])
    parts = [text]
    for d in delimiters:
        parts = [p for part in parts for p in part.split(d)]
    return [p for p in parts if p]


def _uuid(_: str, args: list[Any]) -> Any:
    return str(uuid.uuid4())


def _unreachable(name: str, args: list[Any]) -> Any:
    raise AssertionError(name)


# name -> (min args, max args or None, implementation)
_FUNCTIONS: dict[str, tuple[int, int | None, Callable[[str, list[Any]], Any]]] = {
    "States.Format": (1, None, _unreachable),
    "States.StringToJson": (1, 1, _string_to_json),
    "States.JsonToString": (1, 1, _json_to_string),
    "States.Array": (0, None, _array),
    "States.ArrayPartition": (2, 2, _array_partition),
    "States.ArrayContains": (2, 2, _array_contains),
    "States.ArrayRange": (3, 3, _array_range),
    "States.ArrayGetItem": (2, 2, _array_get_item),
    "States.ArrayLength": (1, 1, _array_length),
    "States.ArrayUnique": (1, 1, _array_unique),
    "States.Base64Encode": (1, 1, _base64_encode),
    "States.Base64Decode": (1, 1, _base64_decode),
    "States.Hash": (2, 2, _hash),
    "States.JsonMerge": (3, 3, _json_merge),
    "States.MathRandom": (2, 3, _math_random),
    "States.MathAdd": (2, 2, _math_add),
    "States.StringSplit": (2, 2, _string_split),
    "States.UUID": (0, 0, _uuid),
}

FUNCTION_NAMES = frozenset(_FUNCTIONS)
