"""Numbers, the order-preserving sort-key encoding, item sizes and value validation (pure; hypothesis)."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tables import expressions as E
from tables.expressions import ValidationException

OVERFLOW = "Number overflow. Attempting to store a number with magnitude larger than supported range"
UNDERFLOW = "Number underflow. Attempting to store a number with magnitude smaller than supported range"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "The parameter cannot be converted to a numeric value: abc"),
        ("", "The parameter cannot be converted to a numeric value: "),
        ("NaN", "The parameter cannot be converted to a numeric value: NaN"),
        ("Infinity", "The parameter cannot be converted to a numeric value: Infinity"),
        ("1e9223372036854775808", "The parameter cannot be converted to a numeric value: 1e9223372036854775808"),
        ("1" * 39, "Attempting to store more than 38 significant digits in a Number"),
        ("0.000000000000000000000000000000000000001234", None),
        ("1e99999999999", OVERFLOW),
        ("1e2147483648", OVERFLOW),
        ("1e126", OVERFLOW),
        ("-1e126", OVERFLOW),
        ("0e126", OVERFLOW),
        ("1e-99999999999", UNDERFLOW),
        ("1e-131", UNDERFLOW),
        ("0e-131", UNDERFLOW),
        ("9.9999999999999999999999999999999999999E+125", None),
        ("1E-130", None),
        ("0e125", None),
        ("-0", None),
        ("1" * 38 + "000", None),  # trailing zeros are not significant
    ],
)
def test_number_rules(text: str, message: str | None) -> None:
    if message is None:
        assert E.number(text) == Decimal(text)
    else:
        with pytest.raises(ValidationException) as info:
            E.number(text)
        assert info.value.message == message


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0042.1200", "42.12"),
        ("1E125", "1" + "0" * 125),
        ("-0", "0"),
        ("0e125", "0"),
        ("1.0", "1"),
        ("-1.5e-3", "-0.0015"),
    ],
)
def test_number_text(text: str, canonical: str) -> None:
    assert E.number_text(text) == canonical


# Decimals inside DynamoDB's range: up to 38 significant digits, exponents across the whole range, both signs.
DECIMALS = st.builds(
    lambda sign, digits, exponent: Decimal((sign, tuple(int(c) for c in str(digits)), exponent)),
    st.integers(0, 1),
    st.integers(0, 10**38 - 1),
    st.integers(-130, 87),
).filter(lambda d: -130 <= (d.adjusted() if d else 0) <= 125)


@settings(max_examples=600, deadline=None)
@given(DECIMALS, DECIMALS)
def test_sort_key_bytes_order_is_numeric_order(a: Decimal, b: Decimal) -> None:
    ka, kb = E.sort_key_bytes({"N": str(a)}), E.sort_key_bytes({"N": str(b)})
    assert (ka < kb) == (a < b)
    assert (ka == kb) == (a == b)


@given(st.lists(DECIMALS, min_size=2, max_size=30))
def test_sorting_by_key_bytes_sorts_numbers(numbers: list[Decimal]) -> None:
    by_bytes = sorted(numbers, key=lambda d: E.sort_key_bytes({"N": str(d)}))
    assert [Decimal(x) for x in by_bytes] == sorted(numbers)


def test_sort_key_bytes_edges() -> None:
    ordered = ["-9.9999999999999999999999999999999999999E+125", "-1", "-0.5", "-1E-130", "0", "1E-130", "0.5", "1",
               "10", "10.5", "9.9999999999999999999999999999999999999E+125"]  # fmt: skip
    keys = [E.sort_key_bytes({"N": x}) for x in ordered]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert E.sort_key_bytes({"N": "1.50"}) == E.sort_key_bytes({"N": "15E-1"})


@given(st.text(), st.text())
def test_sort_key_bytes_of_strings_is_utf8_order(a: str, b: str) -> None:
    ka, kb = E.sort_key_bytes({"S": a}), E.sort_key_bytes({"S": b})
    assert ka == a.encode()
    assert (ka < kb) == (a.encode() < b.encode())


@given(st.binary(), st.binary())
def test_sort_key_bytes_of_binaries_is_byte_order(a: bytes, b: bytes) -> None:
    ka, kb = (
        E.sort_key_bytes({"B": base64.b64encode(a).decode()}),
        E.sort_key_bytes({"B": base64.b64encode(b).decode()}),
    )
    assert ka == a and (ka < kb) == (a < b)


@pytest.mark.parametrize(
    ("literal", "size"),
    [("1", 2), ("1E125", 2), ("3.14159", 5), ("123456", 4), ("-1", 3), ("0", 1), ("0042.1200", 3), ("12.3", 3)],
)
def test_number_sizes(literal: str, size: int) -> None:
    # the item {"n": N} is 1 byte of name plus the number
    assert E.item_size({"n": {"N": literal}}) == 1 + size


def test_item_size_rules() -> None:
    assert E.item_size({"name": {"S": "héllo"}}) == 4 + 6  # UTF-8 bytes of name and value
    assert E.item_size({"b": {"B": base64.b64encode(b"\x00" * 10).decode()}}) == 1 + 10
    assert E.item_size({"t": {"BOOL": True}, "z": {"NULL": True}}) == 2 + 2
    assert E.item_size({"ss": {"SS": ["ab", "c"]}}) == 2 + 3
    assert E.item_size({"ns": {"NS": ["1", "3.14159"]}}) == 2 + 2 + 5
    assert E.item_size({"l": {"L": []}}) == 1 + 3
    assert E.item_size({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}) == 1 + 3 + (1 + 2) + (1 + 2)
    assert E.item_size({"m": {"M": {"k": {"S": "ab"}}}}) == 1 + 3 + (1 + 1 + 2)
    assert E.item_size({}) == 0


def test_item_size_at_the_400_kb_limit() -> None:
    item = {"pk": {"S": "k"}, "p": {"S": "x" * (409600 - 2 - 1 - 1)}}
    assert E.item_size(item) == 409600


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"SS": []}, "One or more parameter values were invalid: An string set  may not be empty"),
        ({"NS": []}, "One or more parameter values were invalid: An number set  may not be empty"),
        ({"BS": []}, "One or more parameter values were invalid: Binary sets should not be empty"),
        ({"SS": ["a", "a"]}, "One or more parameter values were invalid: Input collection [a, a] contains duplicates."),
        (
            {"NS": ["1", "1.0"]},
            "Input collection contains duplicates",
        ),
        (
            {"BS": ["Yg==", "Yg=="]},
            "One or more parameter values were invalid: Input collection [Yg==, Yg==]of type BS contains duplicates.",
        ),
        (
            {"NULL": False},
            "One or more parameter values were invalid: Null attribute value types must have the value of true",
        ),
        ({}, "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"),
        (
            {"S": "a", "N": "1"},
            "Supplied AttributeValue has more than one datatypes set, "
            "must contain exactly one of the supported datatypes",
        ),
        ({"L": [{"N": "x"}]}, "The parameter cannot be converted to a numeric value: x"),
        ({"M": {"a": {"SS": []}}}, "One or more parameter values were invalid: An string set  may not be empty"),
    ],
)
def test_validate_value(value: dict, message: str) -> None:
    with pytest.raises(ValidationException) as info:
        E.validate_value(value)
    assert info.value.message == message


SCHEMA = {"pk": "HASH", "sk": "RANGE"}
TYPES = {"pk": "S", "sk": "N"}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ({"pk": {"S": "a"}}, "The provided key element does not match the schema"),
        ({"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"N": "1"}}, "The provided key element does not match the schema"),
        ({"pk": {"S": "a"}, "sk": {"S": "1"}}, "The provided key element does not match the schema"),
        (
            {"pk": {"S": ""}, "sk": {"N": "1"}},
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an "
            "empty string value. Key: pk",
        ),
        (
            {"pk": {"S": "x" * 2049}, "sk": {"N": "1"}},
            "One or more parameter values were invalid: "
            "Size of hashkey has exceeded the maximum size limit of2048 bytes",
        ),
    ],
)
def test_validate_key(key: dict, message: str) -> None:
    with pytest.raises(ValidationException) as info:
        E.validate_key(key, SCHEMA, TYPES)
    assert info.value.message == message


def deep(levels: int) -> dict:
    value: dict = {"S": "leaf"}
    for _ in range(levels):
        value = {"M": {"n": value}}
    return value


def test_nesting_depth() -> None:
    E.validate_value(deep(31))  # the leaf at level 32
    E.validate_value({"L": [deep(30)]})
    with pytest.raises(ValidationException) as info:
        E.validate_value(deep(32))
    assert info.value.message == (
        "Nesting Levels have exceeded supported limits: Attributes in the item have nested levels beyond "
        "supported limit"
    )


def test_validate_item() -> None:
    E.validate_item({"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"SS": ["a"]}}, SCHEMA, TYPES)
    with pytest.raises(ValidationException) as info:
        E.validate_item({"pk": {"S": "a"}}, SCHEMA, TYPES)
    assert info.value.message == "One or more parameter values were invalid: Missing the key sk in the item"
    with pytest.raises(ValidationException) as info:
        E.validate_item({"pk": {"N": "1"}, "sk": {"N": "1"}}, SCHEMA, TYPES)
    assert (
        info.value.message
        == "One or more parameter values were invalid: Type mismatch for key pk expected: S actual: N"
    )
    with pytest.raises(ValidationException) as info:
        E.validate_item({"pk": {"B": ""}, "sk": {"N": "1"}}, {"pk": "HASH", "sk": "RANGE"}, {"pk": "B", "sk": "N"})
    assert info.value.message.endswith("cannot contain an empty binary value. Key: pk")


def test_binary_and_set_semantics() -> None:
    item = {"b": {"B": "AAECAw=="}, "bs": {"BS": ["AA==", "AQI="]}}
    assert E.condition("contains(b, :p)", None, {":p": {"B": "AQI="}}).evaluate(item)
    assert not E.condition("contains(b, :p)", None, {":p": {"S": "x"}}).evaluate(item)
    assert E.item_size(item) == 1 + 4 + 2 + 1 + 2
    new = E.update("DELETE bs :v", None, {":v": {"BS": ["AQI="]}}).apply(item)
    assert new["bs"] == {"BS": ["AA=="]}
    with pytest.raises(ValidationException):
        E.sort_key_bytes({"SS": ["a"]})
    with pytest.raises(ValidationException) as info:
        E.validate_key(
            {"pk": {"S": "a"}, "sk": {"S": "x" * 1025}}, {"pk": "HASH", "sk": "RANGE"}, {"pk": "S", "sk": "S"}
        )
    assert info.value.message == (
        "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size limit "
        "of 1024 bytes"
    )
