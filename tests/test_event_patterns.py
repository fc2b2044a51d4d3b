"""Event patterns: every operator against matching and non-matching events (from EventBridge's
documentation examples), invalid patterns, and the index agreeing with trying every rule."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import patterns

EC2_EVENT = {
    "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2", "account": "111122223333", "time": "2017-12-22T18:43:48Z", "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated", "c-count": 5, "d-count": 3,
               "x-limit": 301.8, "source-ip": "10.0.0.123", "location": "eu-west", "filename": "image.png",
               "empty": "", "nothing": None, "flag": True},
}


def with_detail(**detail: object) -> dict:
    return {**EC2_EVENT, "detail": {**EC2_EVENT["detail"], **detail}}


# (pattern, event, expected)
TABLE = [
    # exact values; arrays are OR; fields are AND; nested fields
    ({"source": ["aws.ec2"]}, EC2_EVENT, True),
    ({"source": ["aws.s3"]}, EC2_EVENT, False),
    ({"source": ["aws.s3", "aws.ec2"]}, EC2_EVENT, True),
    ({"source": ["aws.ec2"], "detail-type": ["Other"]}, EC2_EVENT, False),
    ({"detail": {"state": ["terminated"]}}, EC2_EVENT, True),
    ({"detail": {"state": ["running"]}}, EC2_EVENT, False),
    ({"detail": {"missing": ["x"]}}, EC2_EVENT, False),
    # numbers compare as numbers, never as strings; booleans are booleans
    ({"detail": {"c-count": [5]}}, EC2_EVENT, True),
    ({"detail": {"c-count": [5.0]}}, EC2_EVENT, True),
    ({"detail": {"c-count": ["5"]}}, EC2_EVENT, False),
    ({"detail": {"flag": [True]}}, EC2_EVENT, True),
    ({"detail": {"flag": [1]}}, EC2_EVENT, False),
    # null and empty string
    ({"detail": {"nothing": [None]}}, EC2_EVENT, True),
    ({"detail": {"empty": [None]}}, EC2_EVENT, False),
    ({"detail": {"empty": [""]}}, EC2_EVENT, True),
    ({"detail": {"nothing": [""]}}, EC2_EVENT, False),
    ({"detail": {"missing": [None]}}, EC2_EVENT, False),
    # arrays in the event: any element
    ({"resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"]}, EC2_EVENT, True),
    ({"resources": ["arn:other"]}, EC2_EVENT, False),
    ({"detail": {"tags": ["b"]}}, with_detail(tags=["a", "b"]), True),
    ({"detail": {"tags": ["c"]}}, with_detail(tags=["a", "b"]), False),
    # prefix and suffix, and their equals-ignore-case forms
    ({"time": [{"prefix": "2017-12-22"}]}, EC2_EVENT, True),
    ({"time": [{"prefix": "2018"}]}, EC2_EVENT, False),
    ({"detail": {"filename": [{"suffix": ".png"}]}}, EC2_EVENT, True),
    ({"detail": {"filename": [{"suffix": ".PNG"}]}}, EC2_EVENT, False),
    ({"detail": {"filename": [{"suffix": {"equals-ignore-case": ".PNG"}}]}}, EC2_EVENT, True),
    ({"detail": {"location": [{"prefix": {"equals-ignore-case": "EU-"}}]}}, EC2_EVENT, True),
    ({"detail": {"location": [{"prefix": {"equals-ignore-case": "US-"}}]}}, EC2_EVENT, False),
    ({"detail": {"c-count": [{"prefix": "5"}]}}, EC2_EVENT, False),  # prefix matches strings only
    # anything-but: a value, a list, numbers, prefix, suffix, wildcard, equals-ignore-case
    ({"detail": {"state": [{"anything-but": "initializing"}]}}, EC2_EVENT, True),
    ({"detail": {"state": [{"anything-but": "terminated"}]}}, EC2_EVENT, False),
    ({"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}}, EC2_EVENT, True),
    ({"detail": {"state": [{"anything-but": ["stopped", "terminated"]}]}}, EC2_EVENT, False),
    ({"detail": {"x-limit": [{"anything-but": 123}]}}, EC2_EVENT, True),
    ({"detail": {"c-count": [{"anything-but": [100, 5]}]}}, EC2_EVENT, False),
    ({"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}, EC2_EVENT, True),
    ({"detail": {"state": [{"anything-but": {"prefix": "term"}}]}}, EC2_EVENT, False),
    ({"detail": {"filename": [{"anything-but": {"suffix": ".txt"}}]}}, EC2_EVENT, True),
    ({"detail": {"filename": [{"anything-but": {"suffix": ".png"}}]}}, EC2_EVENT, False),
    ({"detail": {"filename": [{"anything-but": {"wildcard": "*/lib/*"}}]}}, EC2_EVENT, True),
    ({"detail": {"filename": [{"anything-but": {"wildcard": "image.*"}}]}}, EC2_EVENT, False),
    ({"detail": {"state": [{"anything-but": {"equals-ignore-case": ["TERMINATED", "x"]}}]}}, EC2_EVENT, False),
    ({"detail": {"state": [{"anything-but": {"equals-ignore-case": "RUNNING"}}]}}, EC2_EVENT, True),
    ({"detail": {"missing": [{"anything-but": "x"}]}}, EC2_EVENT, False),  # a missing field is not "anything"
    # a dotted key names the nested field, in the pattern and in the event alike (event-ruler flattens both)
    ({"detail": {"state.status": ["ok"]}}, with_detail(state={"status": "ok"}), True),
    ({"detail": {"state.status": ["ok"]}}, with_detail(state={"status": "bad"}), False),
    ({"detail": {"state": {"status": ["ok"]}}}, with_detail(**{"state.status": "ok"}), True),
    ({"detail": {"state.status": ["ok"]}}, with_detail(**{"state.status": "ok"}), True),
    ({"detail.state": ["terminated"]}, EC2_EVENT, True),
    ({"detail": {"s": {"a": [1], "b": [2]}}}, with_detail(s={"a": 1}, **{"s.b": 2}), True),
    # anything-but prefix, suffix and wildcard take a list too: the value must match none of them
    ({"detail": {"state": [{"anything-but": {"prefix": ["init", "run"]}}]}}, EC2_EVENT, True),
    ({"detail": {"state": [{"anything-but": {"prefix": ["init", "term"]}}]}}, EC2_EVENT, False),
    ({"detail": {"filename": [{"anything-but": {"suffix": [".txt", ".jpg"]}}]}}, EC2_EVENT, True),
    ({"detail": {"filename": [{"anything-but": {"suffix": [".txt", ".png"]}}]}}, EC2_EVENT, False),
    ({"detail": {"filename": [{"anything-but": {"wildcard": ["*/lib/*", "*.txt"]}}]}}, EC2_EVENT, True),
    ({"detail": {"filename": [{"anything-but": {"wildcard": ["*/lib/*", "image.*"]}}]}}, EC2_EVENT, False),
    # numeric ranges
    ({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}, EC2_EVENT, True),
    ({"detail": {"c-count": [{"numeric": [">", 5]}]}}, EC2_EVENT, False),
    ({"detail": {"d-count": [{"numeric": ["<", 10]}]}}, EC2_EVENT, True),
    ({"detail": {"x-limit": [{"numeric": ["=", 301.8]}]}}, EC2_EVENT, True),
    ({"detail": {"x-limit": [{"numeric": [">=", 302]}]}}, EC2_EVENT, False),
    ({"detail": {"state": [{"numeric": [">", 0]}]}}, EC2_EVENT, False),
    # exists true / false (leaves only)
    ({"detail": {"state": [{"exists": True}]}}, EC2_EVENT, True),
    ({"detail": {"missing": [{"exists": True}]}}, EC2_EVENT, False),
    ({"detail": {"missing": [{"exists": False}]}}, EC2_EVENT, True),
    ({"detail": {"state": [{"exists": False}]}}, EC2_EVENT, False),
    ({"detail": [{"exists": True}]}, EC2_EVENT, False),  # detail is an object, not a leaf
    ({"detail": {"nothing": [{"exists": True}]}}, EC2_EVENT, True),  # null is a value
    ({"detail": {"tags": [{"exists": False}]}}, with_detail(tags=[]), True),
    # equals-ignore-case
    ({"detail-type": [{"equals-ignore-case": "ec2 instance state-change notification"}]}, EC2_EVENT, True),
    ({"detail-type": [{"equals-ignore-case": "ec2 instance"}]}, EC2_EVENT, False),
    # wildcard
    ({"detail": {"filename": [{"wildcard": "*.png"}]}}, EC2_EVENT, True),
    ({"detail": {"filename": [{"wildcard": "*.jpg"}]}}, EC2_EVENT, False),
    ({"detail": {"location": [{"wildcard": "eu-*"}]}}, EC2_EVENT, True),
    ({"detail": {"path": [{"wildcard": "dir/*/x\\*"}]}}, with_detail(path="dir/a/x*"), True),
    ({"detail": {"path": [{"wildcard": "dir/*/x\\*"}]}}, with_detail(path="dir/a/xy"), False),
    # cidr, IPv4 and IPv6
    ({"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}, EC2_EVENT, True),
    ({"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}, EC2_EVENT, False),
    ({"detail": {"ip": [{"cidr": "2001:db8::/32"}]}}, with_detail(ip="2001:db8::1"), True),
    ({"detail": {"ip": [{"cidr": "2001:db8::/32"}]}}, with_detail(ip="2001:db9::1"), False),
    ({"detail": {"ip": [{"cidr": "10.0.0.0/8"}]}}, with_detail(ip="not an ip"), False),
    # $or, at the top and nested
    ({"$or": [{"detail": {"c-count": [{"numeric": [">", 10]}]}}, {"detail": {"d-count": [3]}}]}, EC2_EVENT, True),
    ({"$or": [{"detail": {"c-count": [{"numeric": [">", 10]}]}}, {"detail": {"d-count": [4]}}]}, EC2_EVENT, False),
    ({"source": ["aws.ec2"], "detail": {"$or": [{"state": ["running"]}, {"location": [{"prefix": "eu"}]}]}},
     EC2_EVENT, True),
    # arrays of objects: a sub-pattern matches within one element
    ({"detail": {"items": {"name": ["a"], "size": [1]}}}, with_detail(items=[{"name": "a", "size": 1}]), True),
    ({"detail": {"items": {"name": ["a"]}}}, with_detail(items=[{"name": "b"}, {"name": "a"}]), True),
    ({"detail": {"items": {"name": ["a"], "size": [1]}}},
     with_detail(items=[{"name": "a", "size": 2}, {"name": "b", "size": 1}]), False),
    # mixed operators in one array are an OR
    ({"detail": {"state": ["running", {"prefix": "term"}]}}, EC2_EVENT, True),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), TABLE, ids=[json.dumps(p)[:80] for p, _, _ in TABLE])
def test_operator_table(pattern, event, expected) -> None:
    assert patterns.test_event_pattern(json.dumps(pattern), event) is expected
    index = patterns.RuleIndex([("r", patterns.parse(pattern))])
    assert index.match(event) == (["r"] if expected else [])


INVALID = [
    ("not json", "not valid JSON"),
    ("[]", "not an object"),
    ({}, "Empty objects"),
    ({"source": "aws.ec2"}, "must be an object or an array"),
    ({"source": []}, "Empty arrays"),
    ({"source": [["nested"]]}, "Match value must be"),
    ({"source": [{"unknown-op": 1}]}, "Unrecognized match type unknown-op"),
    ({"source": [{"prefix": 5}]}, "\"prefix\" match pattern must be a string"),
    ({"source": [{"prefix": "a", "suffix": "b"}]}, "exactly one key"),
    ({"x": [{"numeric": [">", "5"]}]}, "must be a number"),
    ({"x": [{"numeric": [">", 5, ">", 6]}]}, "one lower bound"),
    ({"x": [{"numeric": [">", 10, "<", 5]}]}, "Bottom must be less than top"),
    ({"x": [{"numeric": ["!=", 1]}]}, "Unrecognized numeric range operator"),
    ({"x": [{"numeric": [">", 1e10]}]}, "between -5.0e9 and 5.0e9"),
    ({"x": [{"exists": "yes"}]}, "\"exists\" takes true or false"),
    ({"x": [{"cidr": "10.0.0.300/24"}]}, "Nonstandard IP address"),
    ({"x": [{"wildcard": "a**b"}]}, "Consecutive wildcard characters"),
    ({"x": [{"anything-but": ["a", 1]}]}, "only strings or only numbers"),
    ({"x": [{"anything-but": {"contains": "a"}}]}, "Unsupported anything-but pattern"),
    ({"x": [{"anything-but": {"prefix": []}}]}, "non-empty list of non-empty strings"),
    ({"x": [{"anything-but": {"suffix": ["a", 1]}}]}, "non-empty list of non-empty strings"),
    ({"x": [{"anything-but": {"wildcard": ["a*", "b**"]}}]}, "Consecutive wildcard characters"),
    ({"$or": [{"a": ["b"]}]}, "at least two"),
    ({"$or": [{"a": ["b"]}, "c"]}, "must be an object"),
]


@pytest.mark.parametrize(("pattern", "reason"), INVALID, ids=[str(p)[:60] for p, _ in INVALID])
def test_invalid_patterns_say_what_is_wrong(pattern, reason) -> None:
    with pytest.raises(patterns.InvalidEventPattern) as caught:
        patterns.parse(pattern if isinstance(pattern, str) else json.dumps(pattern))
    assert caught.value.code == "InvalidEventPatternException"
    assert reason in caught.value.message, caught.value.message


def test_an_invalid_pattern_names_where_the_problem_is() -> None:
    with pytest.raises(patterns.InvalidEventPattern, match=r"at detail\.count"):
        patterns.parse({"detail": {"count": [{"numeric": ["<", "x"]}]}})


# -- the index returns what trying every rule returns ----------------------------------------

FIELDS = ["source", "detail-type", "detail.a", "detail.b", "detail.n"]
STRINGS = ["x", "y", "z", "xy", "Xz", ""]
NUMBERS = [0, 1, 2.5, 10]


def _value_matcher(rng: random.Random, field: str) -> object:
    kind = rng.choice(["exact", "exact", "exact", "prefix", "anything-but", "numeric", "exists", "null"])
    if kind == "exact":
        return rng.choice(NUMBERS) if field == "detail.n" else rng.choice(STRINGS)
    if kind == "prefix":
        return {"prefix": rng.choice(["x", "X"])}
    if kind == "anything-but":
        return {"anything-but": rng.sample(STRINGS, 2)}
    if kind == "numeric":
        return {"numeric": [">=", rng.choice(NUMBERS)]}
    if kind == "exists":
        return {"exists": rng.random() < 0.5}
    return None


def _nest(flat: dict[str, object]) -> dict:
    out: dict = {}
    for path, value in flat.items():
        here = out
        *parents, last = path.split(".")
        for p in parents:
            here = here.setdefault(p, {})
        here[last] = value
    return out


def _rule(rng: random.Random) -> dict:
    fields = rng.sample(FIELDS, rng.randint(1, 3))
    pattern = _nest({f: [_value_matcher(rng, f) for _ in range(rng.randint(1, 2))] for f in fields})
    if rng.random() < 0.15:
        pattern = {"$or": [pattern, _nest({"source": [rng.choice(STRINGS)]})]}
    return pattern


def _event(rng: random.Random) -> dict:
    flat: dict[str, object] = {}
    for f in FIELDS:
        if rng.random() < 0.8:
            flat[f] = rng.choice(NUMBERS) if f == "detail.n" else rng.choice(STRINGS)
    if rng.random() < 0.3:
        flat["detail.a"] = rng.sample(STRINGS, 2)
    return _nest(flat)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_the_index_matches_exactly_what_brute_force_matches(seed: int) -> None:
    rng = random.Random(seed)
    rules = {f"r{i}": patterns.parse(_rule(rng)) for i in range(rng.randint(1, 40))}
    index = patterns.RuleIndex(rules.items())
    for _ in range(20):
        event = _event(rng)
        assert index.match(event) == sorted(n for n, node in rules.items() if patterns.matches(node, event))


def test_the_index_tries_only_rules_filed_under_the_events_values() -> None:
    rules = [(f"r{i}", patterns.parse({"source": [f"s{i}"], "detail": {"k": [i]}})) for i in range(1000)]
    index = patterns.RuleIndex(rules)
    assert index.candidates({"source": "s7", "detail": {"k": 7}}) == {"r7"}
    assert index.match({"source": "s7", "detail": {"k": 7}}) == ["r7"]
    assert index.match({"source": "s7", "detail": {"k": 8}}) == []
