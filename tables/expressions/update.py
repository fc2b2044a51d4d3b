"""UpdateExpression's run-time semantics: SET, REMOVE, ADD and DELETE applied to a copy of an item.

Every operand is read from the item as it was before the update, as DynamoDB does, and problems are
reported in DynamoDB's order: a path whose parent is there but is not the map or list it needs; then a
wrong type anywhere (in the order written); then, clause by clause from the last written, a path that
cannot be written (its parent is missing) and an attribute a SET reads that is not there; then numbers out
of range. Writes into one list use the positions its elements had before the update: ``REMOVE l[1], l[2]``
removes the two original elements, and indexes past the end append, in the order of the index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import paths, values
from .errors import ValidationException
from .paths import INVALID_PATH, Path

Value = dict[str, Any]
Item = dict[str, Any]
# A SET operand: its value read from the old item, None when an attribute it reads is missing; it raises
# INCORRECT_TYPE for an operand of the wrong type.
Compute = Callable[[Item], Value | None]

INCORRECT_TYPE = "An operand in the update expression has an incorrect data type"
MISSING = "The provided expression refers to an attribute that does not exist in the item"


@dataclass(frozen=True)
class Action:
    """One action: ``clause`` is the position of its clause in the expression; ``operand`` a Compute for SET,
    the value for ADD and DELETE, None for REMOVE."""

    clause: int
    kind: str
    path: Path
    operand: Any = None


class Update:
    """A compiled update. ``updated_paths``: the top-level names it touches; ``targets``: every path it writes."""

    def __init__(self, actions: list[Action], type_error: str = INCORRECT_TYPE) -> None:
        """``type_error``: the message for ADD or DELETE on an attribute of another type (the legacy
        AttributeUpdates has its own)."""
        self.actions = actions
        self.type_error = type_error
        self.targets: list[Path] = [a.path for a in actions]
        self.updated_paths = {str(p[0]) for p in self.targets}

    def apply(self, item: Item | None) -> Item:
        """The new item (a copy sharing nothing with ``item`` or the request). Raises ValidationException for
        what DynamoDB refuses at run time: an invalid document path, an operand of the wrong type, a missing
        operand, a number out of range."""
        old = item or {}
        for action in self.actions:
            parent = paths.get(old, action.path[:-1]) if len(action.path) > 1 else None
            if parent is not None and not _holds(parent, action.path[-1]):
                raise ValidationException(INVALID_PATH)
        computed: dict[int, Value] = {}
        missing: set[int] = set()
        for index, action in enumerate(self.actions):
            if action.kind == "SET":
                value = action.operand(old)
                if value is None:
                    missing.add(index)
                else:
                    computed[index] = value
            elif action.kind in ("ADD", "DELETE"):
                current = paths.get(old, action.path) if _writable(old, action.path) else None
                if current is not None:
                    _check_set_operation(action, current, self.type_error)
        for clause in sorted({a.clause for a in self.actions}, reverse=True):
            in_clause = [(i, a) for i, a in enumerate(self.actions) if a.clause == clause]
            for _, action in in_clause:
                if not _writable(old, action.path):
                    raise ValidationException(INVALID_PATH)
            if any(i in missing for i, _ in in_clause):
                raise ValidationException(MISSING)
        for value in computed.values():
            if "N" in value:
                values.number(value["N"])
        writes: list[tuple[Path, Value | None]] = []  # None: remove
        for index, action in enumerate(self.actions):
            if action.kind == "SET":
                writes.append((action.path, values.clone(computed[index])))
            elif action.kind == "REMOVE":
                writes.append((action.path, None))
            else:
                current = paths.get(old, action.path)
                if action.kind == "ADD":
                    writes.append((action.path, _added(current, action.operand)))
                elif current is not None:
                    writes.append((action.path, _deleted(current, action.operand)))
        return _write(old, writes)

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


def _holds(parent: Value, part: str | int) -> bool:
    """Whether ``parent`` is the container ``part`` needs: a list for an index, a map for a name."""
    return ("L" in parent) if isinstance(part, int) else ("M" in parent)


def _writable(item: Item, path: Path) -> bool:
    if len(path) == 1:
        return True
    parent = paths.get(item, path[:-1])
    return parent is not None and _holds(parent, path[-1])


def _check_set_operation(action: Action, current: Value, type_error: str) -> None:
    kind, wanted = values.type_of(current), values.type_of(action.operand)
    if action.kind == "ADD":
        fits = kind == wanted and wanted in ("N", "SS", "NS", "BS", "L")
    else:
        fits = kind == wanted
    if not fits:
        raise ValidationException(type_error)
    if action.kind == "ADD" and kind == "N":
        values.add(Decimal(current["N"]), Decimal(action.operand["N"]))


def _added(current: Value | None, value: Value) -> Value:
    if current is None:
        return values.clone(value)
    kind = values.type_of(value)
    if kind == "N":
        return {"N": values.number_text(values.add(Decimal(current["N"]), Decimal(value["N"])))}
    if kind == "L":  # the legacy AttributeUpdates ADD appends to a list
        return {"L": values.clone(current["L"] + value["L"])}
    members = list(current[kind])
    seen = {_member_key(kind, m) for m in members}
    for member in value[kind]:
        if _member_key(kind, member) not in seen:
            members.append(member)
            seen.add(_member_key(kind, member))
    return {kind: members}


def _deleted(current: Value, value: Value) -> Value | None:
    kind = values.type_of(value)
    gone = {_member_key(kind, m) for m in value[kind]}
    members = [m for m in current[kind] if _member_key(kind, m) not in gone]
    return {kind: members} if members else None  # a set emptied is removed


def _member_key(kind: str, member: Any) -> Any:
    if kind == "NS":
        return Decimal(member)
    if kind == "BS":
        return values.binary(member)
    return member


def _write(old: Item, writes: list[tuple[Path, Value | None]]) -> Item:
    new = values.clone(old)
    lists: dict[int, tuple[list[Any], list[tuple[int, Value | None]]]] = {}
    for path, value in writes:
        if len(path) == 1:
            if value is None:
                new.pop(str(path[0]), None)
            else:
                new[str(path[0])] = value
            continue
        parent = paths.get(new, path[:-1])
        assert parent is not None  # _writable held on the old item, and paths do not overlap
        last = path[-1]
        if isinstance(last, str):
            if value is None:
                parent["M"].pop(last, None)
            else:
                parent["M"][last] = value
        else:
            lists.setdefault(id(parent), (parent["L"], []))[1].append((last, value))
    for elements, operations in lists.values():
        before = list(elements)
        removed: set[int] = set()
        appended: list[tuple[int, Value]] = []
        for index, value in operations:
            if value is None:
                if index < len(before):
                    removed.add(index)
            elif index < len(before):
                before[index] = value
            else:
                appended.append((index, value))
        elements[:] = [x for i, x in enumerate(before) if i not in removed] + [
            v for _, v in sorted(appended, key=lambda x: x[0])
        ]
    return new
