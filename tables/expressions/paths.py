"""Document paths (``a.b[2].c``): reading, writing and removing inside an item, and the overlap rules.

A resolved path is a tuple of map keys (str) and list indexes (int); its first element is always a name.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from .errors import ValidationException

Path = tuple[str | int, ...]
Item = dict[str, Any]

INVALID_PATH = "The document path provided in the update expression is invalid for update"


def path_str(path: Path) -> str:
    """DynamoDB's rendering of a path in messages: ``[a, b, [2]]``."""
    return "[" + ", ".join(f"[{p}]" if isinstance(p, int) else p for p in path) + "]"


def dotted(path: Path) -> str:
    """``a.b[2]``: the path as an expression would write it."""
    text = ""
    for p in path:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else p)
    return text


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


def _container(item: Item, path: Path) -> Any:
    """The attribute dict or list holding the last element of ``path``; INVALID_PATH if a parent is absent
    or not the map or list the next part needs."""
    holder: Any = item
    for i, part in enumerate(path[:-1]):
        if isinstance(holder, dict) and isinstance(part, str) and part in holder:
            value = holder[part]
        elif isinstance(holder, list) and isinstance(part, int) and part < len(holder):
            value = holder[part]
        else:
            raise ValidationException(INVALID_PATH)
        kind = "L" if isinstance(path[i + 1], int) else "M"
        if kind not in value:
            raise ValidationException(INVALID_PATH)
        holder = value[kind]
    return holder


def set_value(item: Item, path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` at ``path`` in place. Parents must exist; an index past a list's end appends."""
    holder = _container(item, path)
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(holder, list):
            raise ValidationException(INVALID_PATH)
        if last < len(holder):
            holder[last] = value
        else:
            holder.append(value)
    else:
        if not isinstance(holder, dict):
            raise ValidationException(INVALID_PATH)
        holder[last] = value


def remove(item: Item, path: Path) -> None:
    """Remove what is at ``path`` in place; a missing attribute or index is no error, a missing parent is."""
    if len(path) > 1 and path[0] not in item:
        return
    holder = _container(item, path)
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(holder, list):
            raise ValidationException(INVALID_PATH)
        if last < len(holder):
            del holder[last]
    else:
        if not isinstance(holder, dict):
            raise ValidationException(INVALID_PATH)
        holder.pop(last, None)


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
        _merge(result, item, path, copy.deepcopy(value))
    return _compact(result)


def _merge(result: Item, item: Item, path: Path, value: dict[str, Any]) -> None:
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
