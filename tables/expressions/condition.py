"""ConditionExpression and FilterExpression: bound to a request's placeholders, compiled to closures.

A condition is compiled once per request into nested functions of the item, so a Scan's filter costs one
call chain per item. Semantics are DynamoDB's: comparisons are type-strict (different types compare false,
``<>`` true), a missing path is an absent attribute, ``size()`` of a type without a size makes the
comparison false.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import paths, values
from .binding import Binder
from .grammar import parse, unwrap
from .paths import Path

Value = dict[str, Any]
Item = dict[str, Any]
Operand = Callable[[Item | None], Value | None]
Test = Callable[[Item | None], bool]

_VALID_TYPES = ("S", "N", "B", "NULL", "SS", "BOOL", "L", "BS", "NS", "M")


class Condition:
    """A compiled condition. ``attributes``: the top-level names it reads; ``paths``: every path it reads."""

    def __init__(self, test: Test, attributes: set[str], read_paths: list[Path]) -> None:
        self._test = test
        self.attributes = attributes
        self.paths = read_paths

    def evaluate(self, item: Item | None) -> bool:
        """True if ``item`` (None: no item) satisfies the condition."""
        return self._test(item)


class _Operand:
    """A bound operand: its function of the item, its type when known before evaluation (a value's type,
    N for size()), and its path when it is one."""

    def __init__(self, fn: Operand, static_type: str | None = None, path: Path | None = None) -> None:
        self.fn = fn
        self.static_type = static_type
        self.path = path
        self.const: Value | None = None


class _Compiler:
    def __init__(self, binder: Binder) -> None:
        self.binder = binder
        self.attributes: set[str] = set()
        self.paths: list[Path] = []

    def condition(self, node: Any) -> Test:
        tag = node[0]
        if tag == "paren":
            return self.condition(node[1])
        if tag in ("and", "or"):
            left, right = self.condition(node[1]), self.condition(node[2])
            if tag == "and":
                return lambda item: left(item) and right(item)
            return lambda item: left(item) or right(item)
        if tag == "not":
            inner = self.condition(node[1])
            return lambda item: not inner(item)
        with self.binder.clause():
            return self.clause(node)

    def clause(self, node: Any) -> Test:
        tag = node[0]
        if tag == "cmp":
            op = node[1]
            a, b = self.operand(node[2]), self.operand(node[3])
            self.distinct(op, [a, b])
            fa, fb = a.fn, b.fn
            return lambda item: values.compare(op, fa(item), fb(item))
        if tag == "between":
            a, lo, hi = self.operand(node[1]), self.operand(node[2]), self.operand(node[3])
            self.between_bounds(lo, hi)
            fa, flo, fhi = a.fn, lo.fn, hi.fn

            def between(item: Item | None) -> bool:
                x = fa(item)
                return values.compare(">=", x, flo(item)) and values.compare("<=", x, fhi(item))

            return between
        if tag == "in":
            a = self.operand(node[1])
            candidates = [self.operand(c).fn for c in node[2]]
            fa = a.fn
            return lambda item: any(values.equal(fa(item), c(item)) for c in candidates)
        return self.function(node)

    def function(self, node: Any) -> Test:
        name, raw_args = node[1], node[2]
        args = [self.operand(a) for a in raw_args]
        if not self.arity(name, args):
            return lambda item: False
        self.distinct(name, args)
        if name in ("attribute_exists", "attribute_not_exists"):
            if args[0].path is None:
                self.binder.note(
                    "function", f"Operator or function requires a document path; operator or function: {name}"
                )
            f = args[0].fn
            if name == "attribute_exists":
                return lambda item: f(item) is not None
            return lambda item: f(item) is None
        if name == "attribute_type":
            wanted = self.type_name(args[1])
            f = args[0].fn
            return lambda item: (x := f(item)) is not None and values.type_of(x) == wanted
        first, second = args[0].fn, args[1].fn
        if name == "begins_with":
            for arg in args:
                if arg.static_type is not None and arg.static_type not in ("S", "B"):
                    self.operand_type(name, arg.static_type)
            return lambda item: values.begins_with(first(item), second(item))
        return lambda item: values.contains(first(item), second(item))

    def arity(self, name: str, args: list[_Operand]) -> bool:
        wanted = {"attribute_type": 2, "begins_with": 2, "contains": 2}.get(name, 1)
        if len(args) != wanted:
            self.binder.note(
                "operand",
                f"Incorrect number of operands for operator or function; operator or function: {name}, "
                f"number of operands: {len(args)}",
            )
            return False
        return True

    def operand_type(self, name: str, kind: str) -> None:
        self.binder.note(
            "function",
            f"Incorrect operand type for operator or function; operator or function: {name}, operand type: {kind}",
        )

    def type_name(self, arg: _Operand) -> str | None:
        if arg.static_type != "S" or arg.const is None:
            self.operand_type("attribute_type", arg.static_type or "{NS,SS,L,BS,N,M,B,BOOL,NULL,S}")
            return None
        wanted = str(arg.const["S"])
        if wanted not in _VALID_TYPES:
            self.binder.note(
                "function",
                f"Invalid attribute type name found; type: {wanted}, valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}",
            )
        return wanted

    def distinct(self, name: str, args: list[_Operand]) -> None:
        if len(args) == 2 and args[0].path is not None and args[0].path == args[1].path:
            self.binder.note(
                "distinct",
                "The first operand must be distinct from the remaining operands for this operator or function; "
                f"operator: {name}, first operand: {paths.path_str(args[0].path)}",
            )

    def between_bounds(self, lo: _Operand, hi: _Operand) -> None:
        if lo.const is None or hi.const is None:
            return
        tl, th = values.type_of(lo.const), values.type_of(hi.const)
        shown = (
            f"lower bound operand: AttributeValue: {{{tl}:{lo.const[tl]}}}, "
            f"upper bound operand: AttributeValue: {{{th}:{hi.const[th]}}}"
        )
        if tl != th:
            self.binder.note(
                "function", f"The BETWEEN operator requires same data type for lower and upper bounds; {shown}"
            )
        elif values.less(hi.const, lo.const):
            self.binder.note(
                "function",
                f"The BETWEEN operator requires upper bound to be greater than or equal to lower bound; {shown}",
            )

    def operand(self, node: Any) -> _Operand:
        node = unwrap(node)
        tag = node[0]
        if tag == "path":
            path = self.binder.path(node[1])
            self.attributes.add(str(path[0]))
            self.paths.append(path)
            return _Operand(lambda item: paths.get(item, path), path=path)
        if tag == "value":
            const = self.binder.value(node[1])
            result = _Operand(lambda item: const, values.type_of(const) if const else None)
            result.const = const
            return result
        # size(): the only function that is an operand (the grammar checks left the others out)
        args = [self.operand(a) for a in node[2]]
        if not self.arity("size", args):
            return _Operand(lambda item: None, "N")
        inner = args[0]
        if inner.static_type in ("N", "BOOL", "NULL"):
            self.operand_type("size", inner.static_type)
        f = inner.fn
        return _Operand(lambda item: values.size(f(item)), "N")


def compile_condition(
    text: str, names: Mapping[str, str] | None, vals: Mapping[str, Value] | None, kind: str
) -> Condition:
    raw = parse(text, "condition", kind)
    compiler = _Compiler(Binder(names, vals, kind))
    test = compiler.condition(raw.tree)
    return Condition(test, compiler.attributes, compiler.paths)
