"""Document paths (``a.b[2].c``): reading inside an item, projecting, and the overlap rules.

A resolved path is a tuple of map keys (str) and list indexes (int); its first element is always a name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import values
from .errors import ValidationException

Path = tuple[str | int, ...]
Item = dict[str, Any]

INVALID_PATH = "The document path provided in the update expression is invalid for update"


def path_str(path: Path) -> str:
    """DynamoDB's rendering of a path in messages: ``[a, b, [2]]``."""
    return "[" + ", ".join(f"[{p}]" if isinstance(p, int) else p for p in path) + "]"


def get(item: Item | None, path: Path) -> dict[str, Any] | None:
    """The value at ``path``, or None when any part of it is missing or of the wrong type."""
    if item is None:
        return None
    first = path[0]
    value = item.get(first) if isinstance(first, str) else None
    for part in path[1:]:
        if value is None:
            return None
        if isinstance(part, int):
            elements = value.get("L")
            value = elements[part] if elements is not None and part < len(elements) else None
        else:
            members = value.get("M")
            value = members.get(part) if members is not None else None
    return value


class _Branch:
    """A node of the tree of paths: its branches by part, the paths that end here, the first path through it."""

    __slots__ = ("born", "ends", "kids", "part")

    def __init__(self, born: int, part: str | int | None) -> None:
        self.born = born
        self.part = part
        self.kids: dict[tuple[bool, str | int], _Branch] = {}
        self.ends: list[int] = []


def check_overlaps(paths: Iterable[Path], prefix: str = "") -> None:
    """Refuse two paths where one is inside the other or both are the same (overlap), or that use one
    attribute as a list and as a map (conflict: ``a.b`` and ``a[0]``), as DynamoDB does in update and
    projection expressions. Like DynamoDB, the paths go into a tree that is walked newest branch first, so the
    clash reported is the one DynamoDB reports; ``prefix`` ("Invalid UpdateExpression: ") leads the message."""
    listed = list(paths)
    root = _Branch(-1, None)
    for index, path in enumerate(listed):
        node = root
        for part in path:
            node = node.kids.setdefault((isinstance(part, int), part), _Branch(index, part))
        node.ends.append(index)

    def entries(node: _Branch) -> list[tuple[int, _Branch | None]]:
        found: list[tuple[int, _Branch | None]] = [(kid.born, kid) for kid in node.kids.values()]
        found += [(end, None) for end in node.ends]
        found.sort(key=lambda entry: (-entry[0], entry[1] is not None))  # newest first, a path's end first
        return found

    def end_in(node: _Branch) -> int:
        while True:
            index, kid = entries(node)[0]
            if kid is None:
                return index
            node = kid

    def clash(what: str, x: int, y: int) -> ValidationException:
        one, two = listed[min(x, y)], listed[max(x, y)]
        return ValidationException(
            f"{prefix}Two document paths {what} with each other; must remove or rewrite one of these paths; "
            f"path one: {path_str(one)}, path two: {path_str(two)}"
        )

    def visit(node: _Branch) -> None:
        listing = entries(node)
        for entry in listing:
            index, kid = entry
            if kid is not None:
                visit(kid)
            for other in listing:
                if other is entry:
                    continue
                if kid is None or other[1] is None:
                    raise clash(
                        "overlap",
                        index if kid is None else end_in(kid),
                        other[0] if other[1] is None else end_in(other[1]),
                    )
                if isinstance(other[1].part, int) != isinstance(kid.part, int):
                    raise clash("conflict", end_in(other[1]), end_in(kid))

    visit(root)


def project(item: Item, paths: Iterable[Path]) -> Item:
    """The parts of ``item`` at ``paths``, nested as they are in the item; list elements picked by a path
    are kept in their order, missing paths left out."""
    result: Item = {}
    for path in paths:
        value = get(item, path)
        if value is None:
            continue
        _merge(result, path, values.clone(value))
    return _compact(result)


def _merge(result: Item, path: Path, value: dict[str, Any]) -> None:
    """Place ``value`` under ``path`` in ``result``; list indexes become sparse dicts, compacted afterwards."""
    if len(path) == 1:
        result[str(path[0])] = value
        return
    first = str(path[0])
    node: dict[str, Any] = result.setdefault(first, _node(path[1]))
    for i, part in enumerate(path[1:], start=1):
        kind = "M" if isinstance(part, str) else "L"
        members = node[kind]
        if i == len(path) - 1:
            members[part] = value
            return
        nxt = path[i + 1]
        node = members.setdefault(part, _node(nxt))


def _node(part: str | int) -> dict[str, Any]:
    return {"M": {}} if isinstance(part, str) else {"L": _Sparse()}


class _Sparse(dict[int, Any]):
    """List elements picked by index while projecting; compacted to a list in index order."""


def _compact(node: Any) -> Any:
    if isinstance(node, _Sparse):
        return [_compact(node[k]) for k in sorted(node)]
    if isinstance(node, dict):
        return {k: _compact(v) for k, v in node.items()}
    return node
