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


def check_overlaps(paths: Iterable[Path], prefix: str = "") -> None:
    """Refuse two paths where one is a prefix of the other (overlap) or that disagree on a part's kind
    (conflict: ``a.b`` and ``a[0]``), as DynamoDB does in update and projection expressions; ``prefix``
    ("Invalid UpdateExpression: ") is put before the message."""
    seen: list[Path] = []
    try:
        for path in paths:
            for other in seen:
                _check_pair(other, path)
            seen.append(path)
    except ValidationException as exc:
        raise ValidationException(prefix + exc.message) from None


def _check_pair(one: Path, two: Path) -> None:
    for p, q in zip(one, two, strict=False):
        if isinstance(p, int) != isinstance(q, int):
            raise ValidationException(
                "Two document paths conflict with each other; must remove or rewrite one of these paths; "
                f"path one: {path_str(one)}, path two: {path_str(two)}"
            )
        if p != q:
            return
    raise ValidationException(
        "Two document paths overlap with each other; must remove or rewrite one of these paths; "
        f"path one: {path_str(one)}, path two: {path_str(two)}"
    )


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
