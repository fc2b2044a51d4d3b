"""EventBridge event patterns: parsing with AWS's validation, matching, and an index over many rules.

Semantics follow EventBridge's documentation ("Event patterns", "Content filtering"):

- a pattern is a JSON object whose leaves are non-empty arrays; an array is an OR of its
  elements; every field named in the pattern must match (AND); nested objects match nested
  fields;
- array elements are exact values (strings, numbers compared as numbers, true, false, null,
  ``""``) or one operator object: ``prefix``, ``suffix`` (both with an ``equals-ignore-case``
  form), ``anything-but`` (a value, a list, or ``prefix``/``suffix``/``wildcard`` (each a string or a list)/
  ``equals-ignore-case``), ``numeric`` (``=``, ``<``, ``<=``, ``>``, ``>=`` pairs), ``exists``,
  ``equals-ignore-case``, ``wildcard`` (``*``; ``\\*`` is a literal star) and ``cidr``;
- ``$or`` at any object level: an array of at least two sub-patterns, one of which must match;
- an event field that is an array matches when any of its elements matches; a sub-pattern matched
  against an array of objects must match within one element;
- ``exists`` looks at leaf values only, as event-ruler does: an object or an empty array is not a
  leaf, so ``{"exists": true}`` does not match it and ``{"exists": false}`` does.

:class:`RuleIndex` is event-ruler's idea in small: each rule is filed under the combination of one
or two (field path, exact value or prefix) conditions it requires (the least shared ones), so an
event is verified only against the rules filed under the values it actually has, plus the few
rules that require no such value at all. The index never changes the result, only how many rules
are tried.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from kambda.aws.errors import InvalidEventPattern

MAX_PATTERN_LENGTH = 4096
#: kambda's bound on nesting (matching walks a pattern recursively; real patterns are a few levels deep).
MAX_PATTERN_DEPTH = 100
NUMERIC_LIMIT = 5.0e9
_NUMERIC_OPS = ("<", "<=", "=", ">", ">=")
_MISSING = object()


def _invalid(reason: str, path: str = "") -> InvalidEventPattern:
    where = f" (at {path})" if path else ""
    return InvalidEventPattern(f"Event pattern is not valid. Reason: {reason}{where}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- matchers of one value --------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    """One element of a leaf array. ``kind`` names the operator; ``test`` is called per leaf value."""

    kind: str
    arg: Any = None
    regex: re.Pattern[str] | None = None
    negate: bool = False

    def test(self, value: object) -> bool:
        kind = self.kind
        if kind == "exact":
            return _exact_key(value) == self.arg
        if kind == "numeric":
            return _is_number(value) and all(_compare(op, value, bound) for op, bound in self.arg)  # type: ignore[arg-type]
        if kind == "anything-but":
            return _exact_key(value) not in self.arg
        if kind in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
            hit = isinstance(value, str) and self.regex is not None and self.regex.fullmatch(value) is not None
            return (not hit and isinstance(value, str)) if self.negate else hit
        if kind == "cidr":
            if not isinstance(value, str):
                return False
            try:
                return ipaddress.ip_address(value) in self.arg
            except ValueError:
                return False
        return kind == "exists" and self.arg is True  # a leaf value exists


def _compare(op: str, value: float, bound: float) -> bool:
    return {"<": value < bound, "<=": value <= bound, "=": value == bound,
            ">": value > bound, ">=": value >= bound}[op]


def _exact_key(value: object) -> Hashable:
    """A typed key, so that "1", 1 and true never compare equal, while 1 and 1.0 do."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if _is_number(value):
        return ("num", float(value))  # type: ignore[arg-type]
    if isinstance(value, str):
        return ("str", value)
    return ("other", id(value))


def _string_regex(kind: str, text: str, ignore_case: bool) -> re.Pattern[str]:
    flags = re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL
    if kind == "prefix":
        return re.compile(re.escape(text) + ".*", flags)
    if kind == "suffix":
        return re.compile(".*" + re.escape(text), flags)
    if kind == "wildcard":
        parts = re.split(r"(\\\*|\*)", text)
        return re.compile("".join(".*" if p == "*" else re.escape("*" if p == "\\*" else p) for p in parts), flags)
    return re.compile(re.escape(text), flags)


# -- parsing ------------------------------------------------------------------------------------


@dataclass
class Node:
    """A compiled (sub-)pattern: fields that must all match, and $or groups of which one must."""

    leaves: dict[str, list[Matcher]] = field(default_factory=dict)
    children: dict[str, Node] = field(default_factory=dict)
    ors: list[list[Node]] = field(default_factory=list)


def parse(pattern: str | dict[str, Any]) -> Node:
    """Parse and validate a pattern (JSON text or an object); raises :class:`InvalidEventPattern`."""
    if isinstance(pattern, str):
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise _invalid(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters")
        try:
            pattern = orjson.loads(pattern)
        except ValueError as exc:
            raise _invalid(f"Filter is not valid JSON: {exc}") from None
    if not isinstance(pattern, dict):
        raise _invalid("Filter is not an object")
    return _parse_object(pattern, "", 1)


def _parse_object(obj: dict[str, Any], path: str, depth: int) -> Node:
    if depth > MAX_PATTERN_DEPTH:
        raise _invalid(f"the pattern is nested deeper than {MAX_PATTERN_DEPTH} levels", path[:200])
    if not obj:
        raise _invalid("Empty objects are not allowed", path)
    node = Node()
    for key, value in obj.items():
        where = f"{path}.{key}" if path else key
        if "." in key and key != "$or" and all(key.split(".")):
            # A dotted key names the nested field, as event-ruler flattens patterns and events alike.
            head, rest = key.split(".", 1)
            _merge(node, _parse_object({head: {rest: value}}, path, depth))
            continue
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2:
                raise _invalid("\"$or\" must be an array of at least two objects", where)
            if not all(isinstance(alt, dict) for alt in value):
                raise _invalid("every element of \"$or\" must be an object", where)
            node.ors.append([_parse_object(alt, where, depth + 1) for alt in value])
        elif isinstance(value, dict):
            node.children[key] = _parse_object(value, where, depth + 1)
        elif isinstance(value, list):
            if not value:
                raise _invalid("Empty arrays are not allowed", where)
            node.leaves[key] = [_parse_value(v, where) for v in value]
        else:
            raise _invalid(f"\"{key}\" must be an object or an array", where)
    return node


def _merge(node: Node, other: Node) -> None:
    """Fold ``other`` (the nested form of a dotted key) into ``node``: both must match."""
    for key, matchers in other.leaves.items():
        if key in node.leaves:
            raise _invalid(f"the field \"{key}\" is given twice (dotted and nested)")
        node.leaves[key] = matchers
    for key, child in other.children.items():
        if key in node.children:
            _merge(node.children[key], child)
        else:
            node.children[key] = child
    node.ors.extend(other.ors)


def _parse_value(value: object, path: str) -> Matcher:
    if value is None or isinstance(value, str | bool) or _is_number(value):
        return Matcher("exact", _exact_key(value))
    if isinstance(value, list):
        raise _invalid("Match value must be String, number, true, false, or null (not an array)", path)
    if not isinstance(value, dict) or len(value) != 1:
        raise _invalid("an operator object must have exactly one key", path)
    (op, arg), = value.items()
    if op in ("prefix", "suffix"):
        if isinstance(arg, dict):
            if set(arg) != {"equals-ignore-case"} or not isinstance(arg["equals-ignore-case"], str):
                raise _invalid(f"\"{op}\" takes a string or {{\"equals-ignore-case\": string}}", path)
            return Matcher(op, arg["equals-ignore-case"], _string_regex(op, arg["equals-ignore-case"], True))
        if not isinstance(arg, str):
            raise _invalid(f"\"{op}\" match pattern must be a string", path)
        return Matcher(op, arg, _string_regex(op, arg, False))
    if op == "equals-ignore-case":
        if not isinstance(arg, str):
            raise _invalid("\"equals-ignore-case\" match pattern must be a string", path)
        return Matcher(op, arg, _string_regex(op, arg, True))
    if op == "wildcard":
        return Matcher(op, _check_wildcard(arg, path), _string_regex(op, arg, False))
    if op == "exists":
        if not isinstance(arg, bool):
            raise _invalid("\"exists\" takes true or false", path)
        return Matcher("exists", arg)
    if op == "cidr":
        if not isinstance(arg, str):
            raise _invalid("\"cidr\" takes a string such as 10.0.0.0/24", path)
        try:
            return Matcher("cidr", ipaddress.ip_network(arg, strict=False))
        except ValueError:
            raise _invalid(f"Nonstandard IP address: {arg}", path) from None
    if op == "numeric":
        return Matcher("numeric", _parse_numeric(arg, path))
    if op == "anything-but":
        return _parse_anything_but(arg, path)
    raise _invalid(f"Unrecognized match type {op}", path)


def _check_wildcard(arg: object, path: str) -> str:
    if not isinstance(arg, str):
        raise _invalid("\"wildcard\" match pattern must be a string", path)
    if "**" in arg.replace("\\*", ""):
        raise _invalid("Consecutive wildcard characters at pos " + str(arg.index("**")), path)
    return arg


def _parse_numeric(arg: object, path: str) -> tuple[tuple[str, float], ...]:
    if not isinstance(arg, list) or not arg or len(arg) % 2:
        raise _invalid("\"numeric\" takes [operator, number] pairs", path)
    pairs = []
    for i in range(0, len(arg), 2):
        op, bound = arg[i], arg[i + 1]
        if op not in _NUMERIC_OPS:
            raise _invalid(f"Unrecognized numeric range operator: {op}", path)
        if not _is_number(bound) or not math.isfinite(bound) or abs(bound) > NUMERIC_LIMIT:
            raise _invalid(f"Value of {op} must be a number between -5.0e9 and 5.0e9", path)
        pairs.append((op, float(bound)))
    ops = [op for op, _ in pairs]
    lower = [b for op, b in pairs if op in (">", ">=")]
    upper = [b for op, b in pairs if op in ("<", "<=")]
    if ("=" in ops and len(pairs) > 1) or len(lower) > 1 or len(upper) > 1:
        raise _invalid("\"numeric\" takes one lower bound, one upper bound, or one \"=\"", path)
    if lower and upper and lower[0] >= upper[0]:
        raise _invalid("Bottom must be less than top", path)
    return tuple(pairs)


def _parse_anything_but(arg: object, path: str) -> Matcher:
    if isinstance(arg, dict):
        if len(arg) != 1:
            raise _invalid("\"anything-but\" takes one of prefix, suffix, wildcard, equals-ignore-case", path)
        (op, inner), = arg.items()
        if op in ("prefix", "suffix", "wildcard"):
            # One string, or a list of them: the value must match none.
            texts = inner if isinstance(inner, list) else [inner]
            if not texts or not all(isinstance(t, str) and (op == "wildcard" or t) for t in texts):
                raise _invalid(f"\"anything-but\"/\"{op}\" takes a non-empty string or a non-empty list of "
                               "non-empty strings", path)
            if op == "wildcard":
                for text in texts:
                    _check_wildcard(text, path)
            alternation = "|".join(f"(?:{_string_regex(op, t, False).pattern})" for t in texts)
            return Matcher(op, tuple(texts), re.compile(alternation, re.DOTALL), negate=True)
        if op == "equals-ignore-case":
            values = inner if isinstance(inner, list) else [inner]
            if not values or not all(isinstance(v, str) for v in values):
                raise _invalid("\"anything-but\"/\"equals-ignore-case\" takes a string or a list of strings", path)
            alternation = "|".join(re.escape(v) for v in values)
            return Matcher(op, tuple(values), re.compile(f"(?:{alternation})", re.IGNORECASE | re.DOTALL),
                           negate=True)
        raise _invalid(f"Unsupported anything-but pattern: {op}", path)
    values = arg if isinstance(arg, list) else [arg]
    if not values:
        raise _invalid("\"anything-but\" list must not be empty", path)
    if not (all(isinstance(v, str) for v in values) or all(_is_number(v) for v in values)):
        raise _invalid("Inside anything-but list, only strings or only numbers are allowed", path)
    return Matcher("anything-but", frozenset(_exact_key(v) for v in values))


# -- matching -----------------------------------------------------------------------------------


def _leaf_values(value: object) -> Iterator[object]:
    """The leaf values at a field: a scalar, or the scalars of an array (nested arrays flattened)."""
    if value is _MISSING or isinstance(value, dict):
        return
    if isinstance(value, list):
        for item in value:
            yield from _leaf_values(item)
    else:
        yield value


def _objects(value: object) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def _leaf_matches(matchers: list[Matcher], value: object) -> bool:
    leaves = list(_leaf_values(value))
    for matcher in matchers:
        if matcher.kind == "exists":
            if bool(leaves) == matcher.arg:
                return True
        elif any(matcher.test(leaf) for leaf in leaves):
            return True
    return False


def matches(node: Node, event: dict[str, Any]) -> bool:
    """Does ``event`` (a decoded JSON object) match the compiled pattern ``node``?"""
    for key, matchers in node.leaves.items():
        if not _leaf_matches(matchers, event.get(key, _MISSING)):
            return False
    for key, child in node.children.items():
        if not any(matches(child, obj) for obj in _nested(event, key)):
            return False
    return all(any(matches(alt, event) for alt in group) for group in node.ors)


def _nested(event: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The objects a nested pattern under ``key`` is matched against: the event's objects at ``key``, with
    the event's dotted keys under it (``"key.field"``) folded in, as event-ruler flattens both to one path."""
    objects = list(_objects(event.get(key, _MISSING))) or [{}]
    dotted = {k[len(key) + 1:]: v for k, v in event.items() if k.startswith(key + ".") and len(k) > len(key) + 1}
    if dotted:
        objects = [{**obj, **dotted} for obj in objects]
    return objects


def test_event_pattern(pattern: str | dict[str, Any], event: dict[str, Any]) -> bool:
    return matches(parse(pattern), event)


# -- the index ----------------------------------------------------------------------------------


def _anchors(node: Node, prefix: str = "") -> Iterator[tuple[str, frozenset[Hashable]]]:
    """(path, keys) pairs of which an event must have one for ``node`` to match: leaves outside any
    $or whose matchers are all exact values (key: the typed value) or case-sensitive prefixes (key:
    ``("prefix", text)``). Paths join nested keys with dots."""
    for key, matchers in node.leaves.items():
        if all(m.kind == "exact" for m in matchers):
            yield prefix + key, frozenset(m.arg for m in matchers)
        elif all(m.kind == "exact" or (m.kind == "prefix" and not m.negate and m.regex is not None
                                       and not m.regex.flags & re.IGNORECASE) for m in matchers):
            yield prefix + key, frozenset(m.arg if m.kind == "exact" else ("prefix", m.arg) for m in matchers)
    for key, child in node.children.items():
        yield from _anchors(child, prefix + key + ".")


def flatten(event: object, prefix: str = "", out: dict[str, list[Hashable]] | None = None) -> dict[str, list[Hashable]]:
    """Every leaf value of an event by dotted path (through arrays), as typed exact keys."""
    out = {} if out is None else out
    if isinstance(event, dict):
        for key, value in event.items():
            flatten(value, prefix + key + ".", out)
    elif isinstance(event, list):
        for item in event:
            flatten(item, prefix, out)
    else:
        out.setdefault(prefix[:-1], []).append(_exact_key(event))
    return out


class RuleIndex:
    """The compiled rules of one bus. ``match(event)`` returns the names of the rules that match.

    Each rule is filed under the one or two of its anchors that the fewest other rules share, as a
    combination: a rule on ``source`` and ``detail.status`` is tried only for events that have both
    of its values. Prefix anchors are found by looking up each prefix length in use at that path.
    """

    def __init__(self, rules: Iterable[tuple[str, Node]]) -> None:
        self._rules = dict(rules)
        candidates = {name: list(_anchors(node)) for name, node in self._rules.items()}
        shared: defaultdict[tuple[str, Hashable], int] = defaultdict(int)
        for anchors in candidates.values():
            for path, keys in anchors:
                for k in keys:
                    shared[(path, k)] += 1
        #: paths (one or two, sorted) -> keys of those paths (same order) -> rules
        self._filed: defaultdict[tuple[str, ...], defaultdict[tuple[Hashable, ...], list[str]]] = \
            defaultdict(lambda: defaultdict(list))
        self._prefix_lengths: defaultdict[str, set[int]] = defaultdict(set)
        self._unanchored: list[str] = []
        for name, anchors in candidates.items():
            if not anchors:
                self._unanchored.append(name)
                continue
            chosen = sorted(sorted(anchors, key=lambda a: sum(shared[(a[0], k)] for k in a[1]))[:2])
            paths = tuple(path for path, _ in chosen)
            for path, keys in chosen:
                for k in keys:
                    if isinstance(k, tuple) and k[0] == "prefix":
                        self._prefix_lengths[path].add(len(k[1]))
            for combination in itertools.product(*(sorted(keys, key=repr) for _, keys in chosen)):
                self._filed[paths][combination].append(name)

    def __len__(self) -> int:
        return len(self._rules)

    def _keys_at(self, flat: dict[str, list[Hashable]], path: str) -> list[Hashable]:
        keys = list(flat[path])
        lengths = self._prefix_lengths.get(path)
        if lengths:
            for key in flat[path]:
                if isinstance(key, tuple) and key[0] == "str":
                    keys.extend(("prefix", key[1][:n]) for n in lengths if n <= len(key[1]))
        return keys

    def candidates(self, event: dict[str, Any]) -> set[str]:
        """The rules worth verifying: those filed under values the event has, and the unanchored."""
        flat = flatten(event)
        chosen: set[str] = set(self._unanchored)
        for paths, filed in self._filed.items():
            if not all(path in flat for path in paths):
                continue
            for combination in itertools.product(*(self._keys_at(flat, path) for path in paths)):
                chosen.update(filed.get(combination, ()))
        return chosen

    def match(self, event: dict[str, Any]) -> list[str]:
        return sorted(name for name in self.candidates(event) if matches(self._rules[name], event))
