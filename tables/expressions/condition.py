"""ConditionExpression and FilterExpression: bound to a request's placeholders, compiled to closures.

A condition is compiled once per request into nested functions of the item, so a Scan's filter costs one
call chain per item. Semantics are DynamoDB's: comparisons are type-strict (values of different types are
unequal, and cannot be ordered), a missing path is an absent attribute (unequal to anything), ``size()`` of
a type without a size makes the comparison false. Checks that need the placeholders (undefined ones,
operands that must be distinct, operand types known before evaluation) run as each operator's operands are
bound, so the first problem in the order written is the one reported.
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
OperandFn = Callable[[Item | None], Value | None]
Test = Callable[[Item | None], bool]

_VALID_TYPES = ("S", "N", "B", "NULL", "SS", "BOOL", "L", "BS", "NS", "M")
_TYPE_NAMES = "{N,BS,L,B,NULL,M,S,SS,NS,BOOL}"
# What DynamoDB names as the operand type when attribute_type's second operand is a document path.
_ANY_TYPE = "{SS,M,DECIMAL,DOUBLESET,HDS,N,B,DICT,INTSET,BOOL,HD,BS,INT,DECIMALSET,NULL,FLOAT,FS,S,L,NS,DOUBLE}"
_ORDERED = ("S", "N", "B")
_SIZED = ("S", "B", "SS", "NS", "BS", "L", "M")
MAX_IN_OPERANDS = 100


class Condition:
    """A compiled condition. ``attributes``: the top-level names it reads; ``paths``: every path it reads."""

    def __init__(self, test: Test, attributes: set[str], read_paths: list[Path]) -> None:
        self._test = test
        self.attributes = attributes
        self.paths = read_paths

    def evaluate(self, item: Item | None) -> bool:
        """True if ``item`` (None: no item) satisfies the condition."""
        return self._test(item)


class Operand:
    """A bound operand: its function of the item, its type when known before evaluation (a value's type,
    N for size()), its path when it is one, its value when it is one."""

    def __init__(
        self, fn: OperandFn, static_type: str | None = None, path: Path | None = None, const: Value | None = None
    ) -> None:
        self.fn = fn
        self.static_type = static_type
        self.path = path
        self.const = const


def bound_text(value: Value) -> str:
    """A value as DynamoDB shows it in a message (its Java form): ``AttributeValue: {N:10}``."""
    kind = values.type_of(value)
    if kind == "B":
        size = len(values.binary(value["B"]))
        return f"AttributeValue: {{B:java.nio.HeapByteBuffer[pos=0 lim={size} cap={size}]}}"
    return f"AttributeValue: {{{kind}:{value[kind]}}}"


class Compiler:
    """Binds a raw condition tree and compiles it. Checks run after an operator's operands are bound, so the
    first problem in the order the expression is written is the one reported."""

    def __init__(self, binder: Binder) -> None:
        self.binder = binder
        self.attributes: set[str] = set()
        self.paths: list[Path] = []

    def fail(self, message: str) -> Exception:
        return self.binder.fail(message)

    def type_problem(self, name: str, kind: str) -> Exception:
        return self.fail(
            f"Incorrect operand type for operator or function; operator or function: {name}, operand type: {kind}"
        )

    def distinct(self, name: str, first: Operand, rest: list[Operand]) -> None:
        if first.path is None:
            return
        for other in rest:
            if other.path == first.path:
                raise self.fail(
                    "The first operand must be distinct from the remaining operands for this operator or function; "
                    f"operator: {name}, first operand: {paths.path_str(first.path)}"
                )

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
        if tag == "cmp":
            return self.comparison(node)
        if tag == "between":
            return self.between(node)
        if tag == "in":
            return self.in_(node)
        return self.function(node)

    def comparison(self, node: Any) -> Test:
        op = node[1]
        a, b = self.operand(node[2]), self.operand(node[3])
        self.distinct(op, a, [b])
        if op not in ("=", "<>"):
            for operand in (a, b):
                if operand.static_type is not None and operand.static_type not in _ORDERED:
                    raise self.type_problem(op, operand.static_type)
        fa, fb = a.fn, b.fn
        return lambda item: values.compare(op, fa(item), fb(item))

    def between(self, node: Any) -> Test:
        a, lo, hi = self.operand(node[1]), self.operand(node[2]), self.operand(node[3])
        self.distinct("BETWEEN", a, [lo, hi])
        for operand in (a, lo, hi):
            if operand.static_type is not None and operand.static_type not in _ORDERED:
                raise self.type_problem("BETWEEN", operand.static_type)
        if lo.const is not None and hi.const is not None:
            shown = f"lower bound operand: {bound_text(lo.const)}, upper bound operand: {bound_text(hi.const)}"
            if values.type_of(lo.const) != values.type_of(hi.const):
                raise self.fail(f"The BETWEEN operator requires same data type for lower and upper bounds; {shown}")
            if values.less(hi.const, lo.const):
                raise self.fail(
                    f"The BETWEEN operator requires upper bound to be greater than or equal to lower bound; {shown}"
                )
        fa, flo, fhi = a.fn, lo.fn, hi.fn

        def between(item: Item | None) -> bool:
            x = fa(item)
            return values.compare(">=", x, flo(item)) and values.compare("<=", x, fhi(item))

        return between

    def in_(self, node: Any) -> Test:
        a = self.operand(node[1])
        candidates = [self.operand(c) for c in node[2]]
        if len(candidates) > MAX_IN_OPERANDS:
            raise self.fail(
                f"The IN operator is provided with too many operands; number of operands: {len(candidates)}"
            )
        self.distinct("IN", a, candidates)
        fa, fns = a.fn, [c.fn for c in candidates]
        return lambda item: any(values.equal(fa(item), c(item)) for c in fns)

    def function(self, node: Any) -> Test:
        name = node[1]
        args = [self.operand(a) for a in node[2]]
        if name in ("attribute_exists", "attribute_not_exists", "attribute_type") and args[0].path is None:
            raise self.fail(f"Operator or function requires a document path; operator or function: {name}")
        self.distinct(name, args[0], args[1:])
        f = args[0].fn
        if name == "attribute_exists":
            return lambda item: f(item) is not None
        if name == "attribute_not_exists":
            return lambda item: f(item) is None
        if name == "attribute_type":
            wanted = self.type_name(args[1])
            return lambda item: (x := f(item)) is not None and values.type_of(x) == wanted
        second = args[1].fn
        if name == "begins_with":
            for arg in args:
                if arg.static_type is not None and arg.static_type not in ("S", "B"):
                    raise self.type_problem(name, arg.static_type)
            return lambda item: values.begins_with(f(item), second(item))
        return lambda item: values.contains(f(item), second(item))

    def type_name(self, arg: Operand) -> str:
        if arg.const is None:
            raise self.type_problem("attribute_type", "N" if arg.static_type == "N" else _ANY_TYPE)
        if arg.static_type != "S":
            raise self.type_problem("attribute_type", str(arg.static_type))
        wanted = str(arg.const["S"])
        if wanted not in _VALID_TYPES:
            raise self.fail(f"Invalid attribute type name found; type: {wanted}, valid types: {_TYPE_NAMES}")
        return wanted

    def operand(self, node: Any) -> Operand:
        node = unwrap(node)
        tag = node[0]
        if tag == "path":
            path = self.binder.path(node[1])
            self.attributes.add(str(path[0]))
            self.paths.append(path)
            return Operand(lambda item: paths.get(item, path), path=path)
        if tag == "value":
            const = self.binder.value(node[1])
            return Operand(lambda item: const, values.type_of(const), const=const)
        # size(): the only function that is an operand (the grammar's checks refused the others)
        inner = self.operand(node[2][0])
        if inner.static_type is not None and inner.static_type not in _SIZED:
            raise self.type_problem("size", inner.static_type)
        f = inner.fn
        return Operand(lambda item: values.size(f(item)), "N")


def compile_condition(
    text: str, names: Mapping[str, str] | None, vals: Mapping[str, Value] | None, kind: str
) -> Condition:
    raw = parse(text, "condition", kind)
    compiler = Compiler(Binder(names, vals, kind))
    test = compiler.condition(raw.tree)
    return Condition(test, compiler.attributes, compiler.paths)
