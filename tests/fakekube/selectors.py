"""Label and field selectors, parsed the way the API server parses them.

A selector string (``app=x,tier!=db,env in (a,b),!legacy``) becomes a list of requirements
``(key, operator, values)``; a Deployment's ``spec.selector`` (matchLabels, matchExpressions)
becomes the same list, so one matcher serves both.
"""

from __future__ import annotations

import re
from typing import Any

Requirement = tuple[str, str, tuple[str, ...]]

_SET = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQ = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)\s*$")
_EXISTS = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)\s*$")


class SelectorError(ValueError):
    """The selector does not parse (the API server answers 400 BadRequest)."""


def _split(text: str) -> list[str]:
    """Split at the commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def parse_labels(text: str) -> list[Requirement]:
    requirements: list[Requirement] = []
    for part in _split(text or ""):
        if match := _SET.match(part):
            values = tuple(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append((match["key"], match["op"], values))
        elif match := _EQ.match(part):
            op = "!=" if match["op"] == "!=" else "="
            requirements.append((match["key"], op, (match["value"],)))
        elif match := _EXISTS.match(part):
            requirements.append((match["key"], "!" if match["neg"] else "exists", ()))
        else:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
    return requirements


def from_label_selector(selector: dict[str, Any] | None) -> list[Requirement]:
    """A ``metav1.LabelSelector`` (matchLabels, matchExpressions) as requirements."""
    selector = selector or {}
    requirements: list[Requirement] = [(k, "=", (v,)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        requirements.append((expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ())))
    return requirements


def to_string(requirements: list[Requirement]) -> str:
    """The selector as a string (the Scale subresource's ``status.selector``)."""
    out = []
    for key, op, values in requirements:
        if op in ("=", "!="):
            out.append(f"{key}{op}{values[0]}")
        elif op in ("in", "notin"):
            out.append(f"{key} {op} ({','.join(values)})")
        else:
            out.append(key if op == "exists" else f"!{key}")
    return ",".join(out)


def matches(requirements: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, values in requirements:
        present = key in labels
        value = labels.get(key)
        if op == "=" and value != values[0]:
            return False
        if op == "!=" and present and value == values[0]:
            return False
        if op == "in" and value not in values:
            return False
        if op == "notin" and present and value in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


_FIELDS = {
    "metadata.name": lambda obj: obj.get("metadata", {}).get("name"),
    "metadata.namespace": lambda obj: obj.get("metadata", {}).get("namespace"),
    "status.phase": lambda obj: (obj.get("status") or {}).get("phase"),
    "spec.nodeName": lambda obj: (obj.get("spec") or {}).get("nodeName"),
}


def parse_fields(text: str) -> list[Requirement]:
    requirements: list[Requirement] = []
    for part in _split(text or ""):
        match = _EQ.match(part)
        if not match:
            raise SelectorError(f"invalid field selector: {part.strip()!r}")
        if match["key"] not in _FIELDS:
            raise SelectorError(f'field label not supported: {match["key"]}')
        requirements.append((match["key"], "!=" if match["op"] == "!=" else "=", (match["value"],)))
    return requirements


def fields_match(requirements: list[Requirement], obj: dict[str, Any]) -> bool:
    for key, op, (value,) in requirements:
        actual = _FIELDS[key](obj) or ""
        if (actual == value) != (op == "="):
            return False
    return True
