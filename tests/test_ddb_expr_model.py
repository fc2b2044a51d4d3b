"""Conditions and updates against brute-force models, over random items and random expressions (hypothesis).

The models are written from DynamoDB's documented semantics independently of tables.expressions: a random
condition tree is rendered to expression text with placeholders, compiled, and evaluated on a random item;
the result must equal the model's evaluation of the same tree.
"""

from __future__ import annotations

import base64
import copy
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tables import expressions as E

NAMES = ["a0", "a1", "a2", "a3"]

scalars = st.one_of(
    st.builds(lambda n: {"N": str(n)}, st.decimals(-1000, 1000, places=2, allow_nan=False)),
    st.builds(lambda s: {"S": s}, st.text(alphabet="abcé", max_size=4)),
    st.builds(lambda b: {"B": base64.b64encode(b).decode()}, st.binary(max_size=3)),
)
values = st.one_of(
    scalars,
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda xs: {"SS": sorted(xs)}, st.sets(st.text(alphabet="abc", max_size=3), min_size=1, max_size=3)),
    st.builds(lambda xs: {"L": xs}, st.lists(scalars, max_size=3)),
)
items = st.dictionaries(st.sampled_from(NAMES), values, max_size=4)


# ---- the model


def kind(v: dict) -> str:
    return next(iter(v))


def key(v: dict) -> Any:
    k = kind(v)
    if k == "N":
        return Decimal(v["N"])
    if k == "B":
        return base64.b64decode(v["B"])
    if k == "S":
        return v["S"].encode()
    if k == "SS":
        return frozenset(v["SS"])
    if k == "L":
        return tuple((kind(x), key(x)) for x in v["L"])
    return v[k]


def m_eq(x: dict | None, y: dict | None) -> bool:
    return x is not None and y is not None and kind(x) == kind(y) and key(x) == key(y)


def m_lt(x: dict | None, y: dict | None) -> bool | None:
    if x is None or y is None or kind(x) != kind(y) or kind(x) not in ("N", "S", "B"):
        return None
    return bool(key(x) < key(y))


def m_cmp(op: str, x: dict | None, y: dict | None) -> bool:
    if op == "=":
        return m_eq(x, y)
    if op == "<>":
        return not m_eq(x, y)
    if op == "<":
        return m_lt(x, y) is True
    if op == ">":
        return m_lt(y, x) is True
    if op == "<=":
        return m_lt(y, x) is False
    return m_lt(x, y) is False  # >=


def m_size(v: dict | None) -> dict | None:
    if v is None or kind(v) in ("N", "BOOL", "NULL"):
        return None
    if kind(v) == "B":
        return {"N": str(len(base64.b64decode(v["B"])))}
    return {"N": str(len(v[kind(v)]))}


def m_contains(x: dict | None, y: dict | None) -> bool:
    if x is None or y is None:
        return False
    if kind(x) == "S":
        return kind(y) == "S" and y["S"] in x["S"]
    if kind(x) == "B":
        return kind(y) == "B" and base64.b64decode(y["B"]) in base64.b64decode(x["B"])
    if kind(x) == "SS":
        return kind(y) == "S" and y["S"] in x["SS"]
    if kind(x) == "L":
        return any(m_eq(e, y) for e in x["L"])
    return False


def m_begins(x: dict | None, y: dict | None) -> bool:
    if x is None or y is None or kind(x) != kind(y):
        return False
    if kind(x) == "S":
        return x["S"].startswith(y["S"])
    if kind(x) == "B":
        return base64.b64decode(x["B"]).startswith(base64.b64decode(y["B"]))
    return False


def operand_value(op: tuple, item: dict) -> dict | None:
    if op[0] == "path":
        return item.get(op[1])
    if op[0] == "value":
        return op[1]
    return m_size(item.get(op[1]))  # ("size", name)


def model(node: tuple, item: dict) -> bool:
    tag = node[0]
    if tag == "and":
        return model(node[1], item) and model(node[2], item)
    if tag == "or":
        return model(node[1], item) or model(node[2], item)
    if tag == "not":
        return not model(node[1], item)
    if tag == "cmp":
        return m_cmp(node[1], operand_value(node[2], item), operand_value(node[3], item))
    if tag == "between":
        x = operand_value(node[1], item)
        return m_cmp(">=", x, node[2]) and m_cmp("<=", x, node[3])
    if tag == "in":
        return any(m_eq(item.get(node[1]), v) for v in node[2])
    if tag == "exists":
        return (node[1] in item) is node[2]
    if tag == "contains":
        return m_contains(item.get(node[1]), node[2])
    return m_begins(item.get(node[1]), node[2])


# ---- random condition trees, rendered to text


names = st.sampled_from(NAMES)
operands = st.one_of(
    st.builds(lambda n: ("path", n), names),
    st.builds(lambda v: ("value", v), values),
    st.builds(lambda n: ("size", n), names),
)


def _distinct(node: tuple) -> bool:
    return not (node[2][0] == "path" and node[3][0] == "path" and node[2][1] == node[3][1])


def _orderable(node: tuple) -> bool:
    """An ordering comparison of a value that is not S, N or B is refused before evaluation (tested apart)."""
    return node[1] in ("=", "<>") or all(o[0] != "value" or kind(o[1]) in ("S", "N", "B") for o in node[2:])


def _bounds_ok(node: tuple) -> bool:
    lo, hi = node[2], node[3]
    return kind(lo) == kind(hi) and m_lt(hi, lo) is not True


leaves = st.one_of(
    st.builds(
        lambda op, a, b: ("cmp", op, a, b), st.sampled_from(["=", "<>", "<", "<=", ">", ">="]), operands, operands
    )
    .filter(_distinct)
    .filter(_orderable),
    st.builds(lambda n, lo, hi: ("between", ("path", n), lo, hi), names, scalars, scalars).filter(_bounds_ok),
    st.builds(lambda n, vs: ("in", n, vs), names, st.lists(values, min_size=1, max_size=3)),
    st.builds(lambda n, e: ("exists", n, e), names, st.booleans()),
    st.builds(lambda n, v: ("contains", n, v), names, scalars),
    st.builds(
        lambda n, v: ("begins", n, v), names, st.one_of(st.builds(lambda s: {"S": s}, st.text("abé", max_size=2)))
    ),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.tuples(st.just("and"), inner, inner),
        st.tuples(st.just("or"), inner, inner),
        st.tuples(st.just("not"), inner),
    ),
    max_leaves=6,
)


class Renderer:
    def __init__(self) -> None:
        self.values: dict[str, dict] = {}
        self.names: dict[str, str] = {}

    def value(self, v: dict) -> str:
        ref = f":v{len(self.values)}"
        self.values[ref] = v
        return ref

    def name(self, n: str) -> str:
        ref = f"#{n}"
        self.names[ref] = n
        return ref

    def operand(self, op: tuple) -> str:
        if op[0] == "path":
            return self.name(op[1])
        if op[0] == "value":
            return self.value(op[1])
        return f"size({self.name(op[1])})"

    def render(self, node: tuple) -> str:
        tag = node[0]
        if tag in ("and", "or"):
            return f"({self.render(node[1])}) {tag.upper()} ({self.render(node[2])})"
        if tag == "not":
            return f"NOT ({self.render(node[1])})"
        if tag == "cmp":
            return f"{self.operand(node[2])} {node[1]} {self.operand(node[3])}"
        if tag == "between":
            return f"{self.operand(node[1])} BETWEEN {self.value(node[2])} AND {self.value(node[3])}"
        if tag == "in":
            return f"{self.name(node[1])} IN ({', '.join(self.value(v) for v in node[2])})"
        if tag == "exists":
            return f"attribute_{'' if node[2] else 'not_'}exists({self.name(node[1])})"
        if tag == "contains":
            return f"contains({self.name(node[1])}, {self.value(node[2])})"
        return f"begins_with({self.name(node[1])}, {self.value(node[2])})"


@settings(max_examples=400, deadline=None)
@given(trees, st.lists(items, min_size=1, max_size=5))
def test_condition_equals_the_model(tree: tuple, sample: list[dict]) -> None:
    r = Renderer()
    text = r.render(tree)
    cond = E.condition(text, r.names, r.values)
    for item in sample:
        assert cond.evaluate(item) is model(tree, item), (text, item)


# ---- updates on top-level attributes against a model


numbers = st.builds(lambda n: {"N": str(n)}, st.integers(-50, 50))
string_sets = st.builds(lambda xs: {"SS": sorted(xs)}, st.sets(st.sampled_from("abcd"), min_size=1, max_size=3))
actions = st.one_of(
    st.tuples(st.just("SET"), names, values),
    st.tuples(st.just("INC"), names, numbers),
    st.tuples(st.just("REMOVE"), names),
    st.tuples(st.just("ADD"), names, st.one_of(numbers, string_sets)),
    st.tuples(st.just("DELETE"), names, string_sets),
)


def m_update(item: dict, plan: list[tuple]) -> dict | str:
    """The model of an update: the new item, or the error DynamoDB gives: "type" (an operand of the wrong
    type, reported before anything else), "missing" (an operand that is not in the item)."""
    new = copy.deepcopy(item)
    wrong_type = missing = False
    for action in plan:
        tag, name = action[0], action[1]
        current = item.get(name)
        if tag == "SET":
            new[name] = action[2]
        elif tag == "INC":
            if current is None:
                missing = True
            elif kind(current) != "N":
                wrong_type = True
            else:
                new[name] = {"N": str(Decimal(current["N"]) + Decimal(action[2]["N"]))}
        elif tag == "REMOVE":
            new.pop(name, None)
        elif tag == "ADD":
            operand = action[2]
            if current is None:
                new[name] = operand
            elif kind(current) != kind(operand):
                wrong_type = True
            elif kind(operand) == "N":
                new[name] = {"N": str(Decimal(current["N"]) + Decimal(operand["N"]))}
            else:
                new[name] = {"SS": sorted(set(current["SS"]) | set(operand["SS"]))}
        elif current is not None:  # DELETE
            if kind(current) != "SS":
                wrong_type = True
                continue
            left = set(current["SS"]) - set(action[2]["SS"])
            if left:
                new[name] = {"SS": sorted(left)}
            else:
                new.pop(name)
    return "type" if wrong_type else "missing" if missing else new


def render_update(plan: list[tuple]) -> tuple[str, dict, dict]:
    clauses: dict[str, list[str]] = {}
    vals: dict[str, dict] = {}
    for i, action in enumerate(plan):
        tag, name = action[0], action[1]
        ref = f":v{i}"
        if tag == "REMOVE":
            clauses.setdefault("REMOVE", []).append(f"#{name}")
            continue
        vals[ref] = action[2]
        if tag == "SET":
            clauses.setdefault("SET", []).append(f"#{name} = {ref}")
        elif tag == "INC":
            clauses.setdefault("SET", []).append(f"#{name} = #{name} + {ref}")
        else:
            clauses.setdefault(tag, []).append(f"#{name} {ref}")
    text = " ".join(f"{clause} {', '.join(parts)}" for clause, parts in clauses.items())
    return text, {f"#{n}": n for n in {a[1] for a in plan}}, vals


def _normal(item: dict) -> dict:
    out = {}
    for name, v in item.items():
        if kind(v) == "SS":
            out[name] = {"SS": sorted(v["SS"])}
        elif kind(v) == "N":
            out[name] = {"N": str(Decimal(v["N"]).normalize())}
        else:
            out[name] = v
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(actions, min_size=1, max_size=4, unique_by=lambda a: a[1]), items)
def test_update_equals_the_model(plan: list[tuple], item: dict) -> None:
    text, names_, vals = render_update(plan)
    upd = E.update(text, names_, vals)
    expected = m_update(item, plan)
    try:
        got = upd.apply(item)
    except E.ValidationException as exc:
        wanted = {
            "type": "An operand in the update expression has an incorrect data type",
            "missing": "The provided expression refers to an attribute that does not exist in the item",
        }
        assert isinstance(expected, str) and exc.message == wanted[expected], (text, item, exc.message)
        return
    assert not isinstance(expected, str), (text, item, got)
    assert _normal(got) == _normal(expected), (text, item)
