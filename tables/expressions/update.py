"""UpdateExpression: SET (with + and -, if_not_exists, list_append), REMOVE, ADD and DELETE.

Every operand is read from the item as it was before the update (DynamoDB evaluates the whole expression
against the old item), then the actions are applied to a copy: SET, then REMOVE (list indexes from the
highest, so ``REMOVE l[1], l[2]`` removes the two original elements), then ADD, then DELETE.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from . import paths, values
from .binding import Binder
from .errors import ValidationException
from .grammar import parse
from .paths import Path

Value = dict[str, Any]
Item = dict[str, Any]
Compute = Callable[[Item], Value]

INCORRECT_TYPE = "An operand in the update expression has an incorrect data type"
MISSING = "The provided expression refers to an attribute that does not exist in the item"


class Update:
    """A compiled update. ``updated_paths``: the top-level names it touches; ``targets``: every path it writes."""

    def __init__(
        self,
        sets: list[tuple[Path, Compute]],
        removes: list[Path],
        adds: list[tuple[Path, Value]],
        deletes: list[tuple[Path, Value]],
    ) -> None:
        self.sets, self.removes, self.adds, self.deletes = sets, removes, adds, deletes
        self.targets: list[Path] = [p for p, _ in sets] + removes + [p for p, _ in adds] + [p for p, _ in deletes]
        self.updated_paths = {str(p[0]) for p in self.targets}

    def apply(self, item: Item | None) -> Item:
        """The new item (a copy; ``item`` is not changed). Raises ValidationException for what DynamoDB refuses
        at run time: an invalid document path, an operand of the wrong type, a missing operand."""
        old = item or {}
        computed = [(path, compute(old)) for path, compute in self.sets]
        new = copy.deepcopy(old)
        for path, value in computed:  # copied: values may be the request's or parts of the old item
            paths.set_value(new, path, copy.deepcopy(value))
        for path in sorted(self.removes, key=_removal_order):
            paths.remove(new, path)
        for path, value in self.adds:
            _add(new, path, value)
        for path, value in self.deletes:
            _delete(new, path, value)
        return new

    def updated(self, item: Item) -> Item:
        """The parts of ``item`` at the paths this update writes (ReturnValues UPDATED_OLD on the old item,
        UPDATED_NEW on the new one), nested as DynamoDB returns them."""
        return paths.project(item, self.targets)

    def check_key(self, key_names: Iterable[str]) -> None:
        """Refuse an update of a key attribute, as DynamoDB does before reading the item."""
        keys = set(key_names)
        for path in self.targets:
            if path[0] in keys:
                raise ValidationException(
                    f"One or more parameter values were invalid: Cannot update attribute {path[0]}. "
                    "This attribute is part of the key"
                )


def _removal_order(path: Path) -> tuple[str, int]:
    last = path[-1]
    return (repr(path[:-1]), -last if isinstance(last, int) else 0)


def _add(item: Item, path: Path, value: Value) -> None:
    current = paths.get(item, path)
    kind = values.type_of(value)
    if current is None:
        paths.set_value(item, path, copy.deepcopy(value))
        return
    if values.type_of(current) != kind:
        raise ValidationException(INCORRECT_TYPE)
    if kind == "N":
        total = values.add(Decimal(current["N"]), Decimal(value["N"]))
        paths.set_value(item, path, {"N": values.number_text(total)})
        return
    if kind == "L":
        paths.set_value(item, path, {"L": list(current["L"]) + copy.deepcopy(value["L"])})
        return
    members = list(current[kind])
    seen = {_member_key(kind, m) for m in members}
    for member in value[kind]:
        if _member_key(kind, member) not in seen:
            members.append(member)
            seen.add(_member_key(kind, member))
    paths.set_value(item, path, {kind: members})


def _delete(item: Item, path: Path, value: Value) -> None:
    current = paths.get(item, path)
    if current is None:
        return
    kind = values.type_of(value)
    if values.type_of(current) != kind:
        raise ValidationException(INCORRECT_TYPE)
    gone = {_member_key(kind, m) for m in value[kind]}
    members = [m for m in current[kind] if _member_key(kind, m) not in gone]
    if members:
        paths.set_value(item, path, {kind: members})
    else:
        paths.remove(item, path)


def _member_key(kind: str, member: Any) -> Any:
    if kind == "NS":
        return Decimal(member)
    if kind == "BS":
        return values.binary(member)
    return member


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
        tag = node[0]
        if tag == "path":
            path = self.binder.path(node[1])

            def read(item: Item) -> Value:
                found = paths.get(item, path)
                if found is None:
                    raise ValidationException(MISSING)
                return found

            return read, None, True
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
        combine = values.add if op == "+" else values.subtract

        def compute(item: Item) -> Value:
            a, b = fl(item), fr(item)
            if "N" not in a or "N" not in b:
                raise ValidationException(INCORRECT_TYPE)
            return {"N": values.number_text(combine(Decimal(a["N"]), Decimal(b["N"])))}

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
            path = self.binder.path(raw_args[0][1])

            def if_not_exists(item: Item) -> Value:
                found = paths.get(item, path)
                return found if found is not None else f1(item)

            return if_not_exists, t1, False
        for kind in (t0, t1):
            if kind is not None and kind != "L":
                raise self.type_problem(name, kind)

        def list_append(item: Item) -> Value:
            a, b = f0(item), f1(item)
            if "L" not in a or "L" not in b:
                raise ValidationException(INCORRECT_TYPE)
            return {"L": a["L"] + b["L"]}

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
    """Bind an update in DynamoDB's order: the #names of the paths it writes, then whether those paths
    overlap, then, from the last action back to the first, every #name and then every value and type."""
    raw = parse(text, "update", "UpdateExpression")
    binder = Binder(names, vals, "UpdateExpression")
    compiler = _Compiler(binder)
    actions = [(clause, action) for clause, clause_actions in raw.tree for action in clause_actions]
    targets = [binder.path(action[1] if clause == "REMOVE" else action[0][1]) for clause, action in actions]
    paths.check_overlaps(targets, binder.prefix)
    for clause, action in reversed(actions):
        if clause == "SET":
            compiler.names(action[1])
    sets: list[tuple[Path, Compute]] = []
    removes: list[Path] = []
    adds: list[tuple[Path, Value]] = []
    deletes: list[tuple[Path, Value]] = []
    bound: list[Any] = [None] * len(actions)
    for index in reversed(range(len(actions))):
        clause, action = actions[index]
        if clause == "SET":
            bound[index] = compiler.value(action[1])[0]
        elif clause in ("ADD", "DELETE"):
            bound[index] = compiler.set_operand(clause, action[1])
    for (clause, _), path, operand in zip(actions, targets, bound, strict=True):
        if clause == "SET":
            sets.append((path, operand))
        elif clause == "REMOVE":
            removes.append(path)
        elif clause == "ADD":
            adds.append((path, operand))
        else:
            deletes.append((path, operand))
    return Update(sets, removes, adds, deletes)
