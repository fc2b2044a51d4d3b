"""ASL conformance: the 18 intrinsic functions, their results (AWS's documentation examples) and their errors."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.language import StatesError
from workflows.language.intrinsics import FUNCTION_NAMES, IntrinsicSyntaxError, evaluate, parse_call

NINE = {"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9]}


def ev(text: str, data: Any = None, ctx: dict[str, Any] | None = None, variables: dict[str, Any] | None = None) -> Any:
    return evaluate(text, data if data is not None else {}, ctx or {}, variables or {})


def fails(text: str, data: Any = None) -> StatesError:
    with pytest.raises(StatesError) as e:
        ev(text, data)
    assert e.value.error == "States.IntrinsicFailure"
    return e.value


def test_all_eighteen_functions_are_known() -> None:
    assert len(FUNCTION_NAMES) == 18


def test_format_from_the_docs() -> None:
    data = {"name": "Arnav", "template": "Hello, my name is {}."}
    assert ev("States.Format('Hello, my name is {}.', $.name)", data) == "Hello, my name is Arnav."
    assert ev("States.Format($.template, $.name)", data) == "Hello, my name is Arnav."


def test_format_escapes_and_value_rendering() -> None:
    assert ev(r"States.Format('\{\} is {} \'quoted\' \\ end', 1)") == r"{} is 1 'quoted' \ end"
    data = {"o": {"Arg1": 1, "Arg2": []}, "n": None, "f": 1.1, "b": True, "s": "x"}
    assert ev("States.Format('{} {} {} {} {}', $.o, $.n, $.f, $.b, $.s)", data) == "{Arg1=1, Arg2=[]} null 1.1 true x"
    fails("States.Format('{} {}', 1)")
    fails("States.Format('{}', 1, 2)")
    with pytest.raises(IntrinsicSyntaxError):
        parse_call(r"States.Format('bad \escape')")


def test_string_to_json_and_json_to_string() -> None:
    assert ev("States.StringToJson($.escapedJsonString)", {"escapedJsonString": '{"foo": "bar"}'}) == {"foo": "bar"}
    assert ev("States.JsonToString($.unescapedJson)", {"unescapedJson": {"foo": "bar"}}) == '{"foo":"bar"}'
    fails("States.StringToJson('{not json')")


def test_array() -> None:
    assert ev("States.Array($.Id)", {"Id": 123456}) == [123456]
    assert ev("States.Array()") == []
    assert ev("States.Array('a', 1, true, null, $.o)", {"o": {"k": []}}) == ["a", 1, True, None, {"k": []}]


def test_array_partition() -> None:
    assert ev("States.ArrayPartition($.inputArray, 4)", NINE) == [[1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert ev("States.ArrayPartition($.a, 2)", {"a": []}) == []
    fails("States.ArrayPartition($.inputArray, 0)", NINE)
    fails("States.ArrayPartition('nope', 2)")


@given(size=st.integers(1, 6), array=st.lists(st.integers(), max_size=12))
def test_array_partition_concatenates_back(size: int, array: list[int]) -> None:
    chunks = ev(f"States.ArrayPartition($.a, {size})", {"a": array})
    assert [x for c in chunks for x in c] == array
    assert all(len(c) == size for c in chunks[:-1])


def test_array_contains() -> None:
    assert ev("States.ArrayContains($.inputArray, $.lookingFor)", {**NINE, "lookingFor": 5}) is True
    assert ev("States.ArrayContains($.a, $.v)", {"a": [[1, 2, 3], 2], "v": [1, 2, 3]}) is True
    assert ev("States.ArrayContains($.a, $.v)", {"a": [True, False], "v": 1}) is False
    assert ev("States.ArrayContains($.a, $.v)", {"a": [], "v": None}) is False


def test_array_range() -> None:
    assert ev("States.ArrayRange(1, 9, 2)") == [1, 3, 5, 7, 9]
    assert ev("States.ArrayRange(0, 10, 3)") == [0, 3, 6, 9]
    assert ev("States.ArrayRange(1, 9, 9)") == [1]
    assert len(ev("States.ArrayRange(1, 1000, 1)")) == 1000
    fails("States.ArrayRange(1, 1001, 1)")
    fails("States.ArrayRange(1, 9, 0)")


def test_array_get_item_length_unique() -> None:
    assert ev("States.ArrayGetItem($.inputArray, $.index)", {**NINE, "index": 5}) == 6
    fails("States.ArrayGetItem($.inputArray, 9)", NINE)
    assert ev("States.ArrayLength($.inputArray)", NINE) == 9
    assert ev("States.ArrayUnique($.a)", {"a": [1, 2, 3, 3, 3, 3, 3, 3, 4]}) == [1, 2, 3, 4]
    assert ev("States.ArrayUnique($.a)", {"a": [None, None, True, 1, 1.0, {"a": 1}, {"a": 1}, [], []]}) == [
        None,
        True,
        1,
        {"a": 1},
        [],
    ]
    fails("States.ArrayLength($.x)", {"x": "string"})


def test_base64() -> None:
    assert ev("States.Base64Encode($.input)", {"input": "Data to encode"}) == "RGF0YSB0byBlbmNvZGU="
    assert ev("States.Base64Decode($.base64)", {"base64": "RGF0YSB0byBlbmNvZGU="}) == "Data to encode"
    fails("States.Base64Decode('%%%')")
    fails("States.Base64Encode($.s)", {"s": "x" * 10001})


@given(st.text(max_size=50))
def test_base64_round_trip(text: str) -> None:
    encoded = ev("States.Base64Encode($.t)", {"t": text})
    assert encoded == base64.b64encode(text.encode()).decode()
    assert ev("States.Base64Decode($.e)", {"e": encoded}) == text


def test_hash() -> None:
    data = {"Data": "input data", "Algorithm": "SHA-1"}
    assert ev("States.Hash($.Data, $.Algorithm)", data) == "aaff4a450a104cd177d28d18d74485e8cae074b7"
    for name, algo in (("MD5", "md5"), ("SHA-256", "sha256"), ("SHA-384", "sha384"), ("SHA-512", "sha512")):
        assert ev(f"States.Hash('abc', '{name}')") == hashlib.new(algo, b"abc").hexdigest()
    fails("States.Hash('abc', 'SHA-3')")


def test_json_merge_is_shallow_only() -> None:
    data = {"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}}
    assert ev("States.JsonMerge($.json1, $.json2, false)", data) == {"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3}
    fails("States.JsonMerge($.json1, $.json2, true)", data)
    fails("States.JsonMerge($.json1, 1, false)", data)


def test_math_random_and_add() -> None:
    for _ in range(20):
        assert 1 <= ev("States.MathRandom($.start, $.end)", {"start": 1, "end": 999}) <= 999
    assert ev("States.MathRandom(1, 1000, 7)") == ev("States.MathRandom(1, 1000, 7)")
    assert ev("States.MathAdd($.value1, $.step)", {"value1": 111, "step": -1}) == 110
    assert ev("States.MathAdd(1.5, 1)") == 3  # non-integers are rounded, half up, as the JVM does
    fails("States.MathAdd('1', 1)")
    fails("States.MathAdd(2147483648, 1)")


def test_string_split() -> None:
    assert ev("States.StringSplit($.inputString, $.splitter)", {"inputString": "1,2,3,4,5", "splitter": ","}) == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    data = {"inputString": "This.is+a,test=string", "splitter": ".+,="}
    assert ev("States.StringSplit($.inputString, $.splitter)", data) == ["This", "is", "a", "test", "string"]


def test_uuid_is_a_v4() -> None:
    value = ev("States.UUID()")
    assert uuid.UUID(value).version == 4
    assert value != ev("States.UUID()")


def test_nesting_context_and_variables() -> None:
    arn = {"ImageRecipe": {"Arn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/sample-recipe/1.0.0"}}
    version = "States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2)"
    part = f"States.ArrayGetItem(States.StringSplit({version}, '.'), {{}})"
    text = f"States.Format('{{}}.{{}}.{{}}', {part.format(0)}, {part.format(1)}, {part.format(2)})"
    assert ev(text, arn) == "1.0.0"
    assert ev("States.Array($$.Execution.Name, $v)", {}, {"Execution": {"Name": "e"}}, {"v": 3}) == ["e", 3]
    deep = "States.Array(" * 11 + ")" * 11
    with pytest.raises(IntrinsicSyntaxError):
        parse_call(deep)


def test_syntax_errors_and_missing_paths() -> None:
    for bad in ("States.Nope(1)", "States.Array(", "States.UUID(1)", "States.ArrayLength()", "Array(1)"):
        with pytest.raises(IntrinsicSyntaxError):
            parse_call(bad)
    e = fails("States.Array($.missing)", {"a": 1})
    assert "$.missing" in e.cause
