"""UpdateExpression compiled for one request: placeholders bound and checked in DynamoDB's order.

DynamoDB checks an update's #names in the paths it writes, then whether those paths overlap, then, from the
last action back to the first, every #name and then every value and operand type.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from . import paths, values
from .binding import Binder
from .errors import ValidationException
from .grammar import parse, unwrap
from .update import INCORRECT_TYPE, Action, Compute, Update

Value = dict[str, Any]
Item = dict[str, Any]

_LONG_TYPES = {
    "S": "STRING",
    "N": "NUMBER",
    "B": "BINARY",
    "NULL": "NULL",
    "BOOL": "BOOLEAN",
    "L": "LIST",
    "M": "MAP",
    "SS": "STRING_SET",
    "NS": "NUMBER_SET",
    "BS": "BINARY_SET",
}


class _Compiler:
    def __init__(self, binder: Binder) -> None:
        self.binder = binder

    def type_problem(self, name: str, kind: str) -> Exception:
        return self.binder.fail(
            f"Incorrect operand type for operator or function; operator or function: {name}, operand type: {kind}"
        )

    def names(self, node: Any) -> None:
        """Resolve every #name in a SET operand (DynamoDB checks them all before any value)."""
        node = unwrap(node)
        tag = node[0]
        if tag == "path":
            self.binder.path(node[1])
        elif tag in ("+", "-"):
            self.names(node[1])
            self.names(node[2])
        elif tag == "call":
            for arg in node[2]:
                self.names(arg)

    def value(self, node: Any) -> tuple[Compute, str | None, bool]:
        """A SET operand: its function of the old item, its type when known, whether it is a path."""
        node = unwrap(node)
        tag = node[0]
        if tag == "path":
            path = self.binder.path(node[1])
            return (lambda item: paths.get(item, path)), None, True
        if tag == "value":
            const = self.binder.value(node[1])
            return (lambda item: const), values.type_of(const), False
        if tag in ("+", "-"):
            return self.arithmetic(tag, node[1], node[2]), "N", False
        return self.call(node[1], node[2])

    def arithmetic(self, op: str, left: Any, right: Any) -> Compute:
        fl, tl, _ = self.value(left)
        fr, tr, _ = self.value(right)
        for kind in (tl, tr):
            if kind is not None and kind != "N":
                raise self.type_problem(op, kind)
        context = values.EXACT

        def compute(item: Item) -> Value | None:
            a = fl(item)
            if a is not None and "N" not in a:
                raise ValidationException(INCORRECT_TYPE)
            b = fr(item)
            if b is not None and "N" not in b:
                raise ValidationException(INCORRECT_TYPE)
            if a is None or b is None:
                return None
            x, y = Decimal(a["N"]), Decimal(b["N"])
            result = context.add(x, y) if op == "+" else context.subtract(x, y)
            return {"N": values.number_text(result)}  # checked against the limits after the types

        return compute

    def call(self, name: str, raw_args: tuple[Any, ...]) -> tuple[Compute, str | None, bool]:
        if len(raw_args) != 2:
            raise self.binder.fail(
                "Incorrect number of operands for operator or function; operator or function: "
                f"{name}, number of operands: {len(raw_args)}"
            )
        (f0, t0, is_path0), (f1, t1, _) = (self.value(a) for a in raw_args)
        if name == "if_not_exists":
            if not is_path0:
                raise self.binder.fail(f"Operator or function requires a document path; operator or function: {name}")

            def if_not_exists(item: Item) -> Value | None:
                found = f0(item)
                return found if found is not None else f1(item)

            return if_not_exists, t1, False
        for kind in (t0, t1):
            if kind is not None and kind != "L":
                raise self.type_problem(name, kind)

        def list_append(item: Item) -> Value | None:
            a = f0(item)
            if a is not None and "L" not in a:
                raise ValidationException(INCORRECT_TYPE)
            b = f1(item)
            if b is not None and "L" not in b:
                raise ValidationException(INCORRECT_TYPE)
            if a is None or b is None:
                return None
            return {"L": list(a["L"]) + b["L"]}

        return list_append, "L", False

    def set_operand(self, clause: str, node: Any) -> Value:
        const = self.binder.value(node[1])
        kind = values.type_of(const)
        allowed = ("N", "SS", "NS", "BS") if clause == "ADD" else ("SS", "NS", "BS")
        if kind not in allowed:
            raise self.binder.fail(
                f"Incorrect operand type for operator or function; operator: {clause}, operand type: "
                f"{_LONG_TYPES.get(kind, kind)}, typeSet: ALLOWED_FOR_{clause}_OPERAND"
            )
        return const


def compile_update(text: str, names: Mapping[str, str] | None, vals: Mapping[str, Value] | None) -> Update:
    raw = parse(text, "update", "UpdateExpression")
    binder = Binder(names, vals, "UpdateExpression")
    compiler = _Compiler(binder)
    written = [
        (clause_no, clause, action) for clause_no, (clause, actions) in enumerate(raw.tree) for action in actions
    ]
    targets = [binder.path(action[1] if clause == "REMOVE" else action[0][1]) for _, clause, action in written]
    paths.check_overlaps(targets, binder.prefix)
    for _, clause, action in reversed(written):
        if clause == "SET":
            compiler.names(action[1])
    operands: list[Any] = [None] * len(written)
    for index in reversed(range(len(written))):
        _, clause, action = written[index]
        if clause == "SET":
            operands[index] = compiler.value(action[1])[0]
        elif clause in ("ADD", "DELETE"):
            operands[index] = compiler.set_operand(clause, action[1])
    return Update(
        [
            Action(clause_no, clause, path, operand)
            for (clause_no, clause, _), path, operand in zip(written, targets, operands, strict=True)
        ]
    )
