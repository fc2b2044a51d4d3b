"""KeyConditionExpression, the legacy parameters and the placeholder checks (pure, no server)."""

from __future__ import annotations

import pytest

from tables import expressions as E
from tables.expressions import ValidationException

SCHEMA = {"pk": "HASH", "sk": "RANGE"}
TYPES = {"pk": "S", "sk": "N"}


def N(x: object) -> dict:
    return {"N": str(x)}


def S(x: str) -> dict:
    return {"S": x}


def key(text: str, values: dict, names: dict | None = None, schema: dict = SCHEMA) -> E.KeyCondition:
    return E.key_condition(text, names, values, schema, TYPES)


def key_refused(text: str, values: dict, names: dict | None = None, schema: dict = SCHEMA) -> str:
    with pytest.raises(ValidationException) as info:
        key(text, values, names, schema)
    return info.value.message


@pytest.mark.parametrize(
    ("text", "sort"),
    [
        ("pk = :p", None),
        ("pk = :p AND sk = :a", ("sk", "=", [N(1)])),
        ("pk = :p AND sk < :a", ("sk", "<", [N(1)])),
        ("pk = :p AND sk <= :a", ("sk", "<=", [N(1)])),
        ("pk = :p AND sk > :a", ("sk", ">", [N(1)])),
        ("pk = :p AND sk >= :a", ("sk", ">=", [N(1)])),
        ("pk = :p AND :a > sk", ("sk", "<", [N(1)])),  # written value first
        ("pk = :p AND sk BETWEEN :a AND :b", ("sk", "BETWEEN", [N(1), N(9)])),
        ("sk BETWEEN :a AND :b AND pk = :p", ("sk", "BETWEEN", [N(1), N(9)])),
        ("(pk = :p) AND (sk > :a)", ("sk", ">", [N(1)])),
        ("#k = :p AND #s >= :a", ("sk", ">=", [N(1)])),
    ],
)
def test_key_conditions(text: str, sort: tuple | None) -> None:
    names = {"#k": "pk", "#s": "sk"} if "#" in text else None
    values = {":p": S("x"), ":a": N(1), ":b": N(9)}
    used = {k: v for k, v in values.items() if k in text}
    kc = key(text, used, names)
    assert kc.partition == ("pk", S("x"))
    assert kc.sort == sort


def test_begins_with_on_a_string_sort_key_and_matches() -> None:
    kc = E.key_condition("pk = :p AND begins_with(sk, :s)", None, {":p": S("x"), ":s": S("ab")}, SCHEMA, {"sk": "S"})
    assert kc.sort == ("sk", "begins_with", [S("ab")])
    assert kc.matches({"pk": S("x"), "sk": S("abc")})
    assert not kc.matches({"pk": S("x"), "sk": S("b")})
    assert not kc.matches({"pk": S("y"), "sk": S("abc")})
    between = key("pk = :p AND sk BETWEEN :a AND :b", {":p": S("x"), ":a": N(1), ":b": N(9)})
    assert between.matches({"pk": S("x"), "sk": N("9")}) and not between.matches({"pk": S("x"), "sk": N("9.5")})


OPERAND = "Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: {}"


@pytest.mark.parametrize(
    ("text", "values", "message"),
    [
        (
            "pk = :p OR sk = :a",
            {":p": S("x"), ":a": N(1)},
            "Invalid operator used in KeyConditionExpression: OR",
        ),
        (
            "NOT pk = :p",
            {":p": S("x")},
            "Invalid operator used in KeyConditionExpression: NOT",
        ),
        (
            "pk IN (:p)",
            {":p": S("x")},
            "Invalid operator used in KeyConditionExpression: IN",
        ),
        (
            "pk <> :p",
            {":p": S("x")},
            "Invalid operator used in KeyConditionExpression: <>",
        ),
        (
            "pk = :p AND attribute_exists(sk)",
            {":p": S("x")},
            "Invalid operator used in KeyConditionExpression: attribute_exists",
        ),
        ("sk = :a", {":a": N(1)}, "Query condition missed key schema element: pk"),
        ("pk < :p", {":p": S("x")}, "Query key condition not supported"),
        ("pk = :p AND colour = :a", {":p": S("x"), ":a": N(1)}, "Query condition missed key schema element: sk"),
        (
            "pk = :p AND sk > :a AND sk < :b",
            {":p": S("x"), ":a": N(1), ":b": N(5)},
            "Invalid KeyConditionExpression: KeyConditionExpressions must only contain one condition per key",
        ),
        (
            "pk = :p AND sk > :a AND extra = :b",
            {":p": S("x"), ":a": N(1), ":b": N(5)},
            "The number of query conditions (3) exceeds the number of key attributes defined in the schema (2)",
        ),
        ("pk = :p AND begins_with(sk, :v)", {":p": S("q"), ":v": N(1)}, OPERAND.format("begins_with, operand type: N")),
        (
            "pk = :p AND begins_with(sk, :v)",
            {":p": S("q"), ":v": {"BOOL": True}},
            OPERAND.format("begins_with, operand type: BOOL"),
        ),
        (
            "pk = :p AND begins_with(sk, :v)",
            {":p": S("q"), ":v": S("a")},
            "One or more parameter values were invalid: Condition parameter type does not match schema type",
        ),
        ("pk = :p AND sk < :v", {":p": S("q"), ":v": {"BOOL": True}}, OPERAND.format("<, operand type: BOOL")),
        ("pk = :p AND :v >= sk", {":p": S("q"), ":v": {"BOOL": True}}, OPERAND.format(">=, operand type: BOOL")),
        (
            "pk = :p AND sk BETWEEN :a AND :b",
            {":p": S("q"), ":a": {"BOOL": False}, ":b": {"BOOL": True}},
            OPERAND.format("BETWEEN, operand type: BOOL"),
        ),
        (
            "pk = :p AND sk = :v",
            {":p": S("q"), ":v": {"BOOL": True}},
            "One or more parameter values were invalid: Condition parameter type does not match schema type",
        ),
        (
            "pk = :missing AND begins_with(sk, :n)",
            {":n": N(1)},
            "Invalid KeyConditionExpression: An expression attribute value used in expression is not defined; "
            "attribute value: :missing",
        ),
        ("begins_with(sk, :n) AND pk = :missing", {":n": N(1)}, OPERAND.format("begins_with, operand type: N")),
        (
            "pk = sk",
            {},
            "Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition",
        ),
        (
            ":a = :b",
            {":a": S("x"), ":b": S("y")},
            "Invalid condition in KeyConditionExpression: No key attribute specified",
        ),
        ("", {}, "Invalid KeyConditionExpression: The expression can not be empty;"),
        (
            "pk = :p AND sk > size(x)",
            {":p": S("x")},
            "KeyConditionExpressions cannot contain nested operations",
        ),
        (
            "pk = :p AND :a BETWEEN sk AND :b",
            {":p": S("x"), ":a": N(1), ":b": N(2)},
            "Invalid condition in KeyConditionExpression: BETWEEN operator must have the key attribute as its "
            "first operand",
        ),
        (
            "pk = :p AND begins_with(:a, sk)",
            {":p": S("x"), ":a": S("a")},
            "Invalid condition in KeyConditionExpression: begins_with operator must have the key attribute as its "
            "first operand",
        ),
        ("pk.x = :p", {":p": S("x")}, "KeyConditionExpressions cannot have conditions on nested attributes"),
        (
            "pk = :p",
            {":p": S("")},
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an "
            "empty string value. Key: pk",
        ),
        ("pk = ", {}, 'Invalid KeyConditionExpression: Syntax error; token: "<EOF>", near: "= "'),
    ],
)
def test_key_condition_errors(text: str, values: dict, message: str) -> None:
    assert key_refused(text, values) == message


# ---- legacy parameters


ITEM = {"a": N(5), "s": S("hello"), "ss": {"SS": ["x", "y"]}, "l": {"L": [S("x")]}}


@pytest.mark.parametrize(
    ("expected", "operator", "result"),
    [
        ({"a": {"Value": N(5)}}, None, True),
        ({"a": {"Value": N(5), "ComparisonOperator": "EQ"}}, None, True),
        ({"a": {"ComparisonOperator": "CONTAINS", "AttributeValueList": [{"BOOL": True}]}}, None, False),
        ({"a": {"Value": N(6)}}, None, False),
        ({"a": {"Exists": True, "Value": N(5)}}, None, True),
        ({"gone": {"Exists": False}}, None, True),
        ({"a": {"Exists": False}}, None, False),
        ({"a": {"ComparisonOperator": "EQ", "AttributeValueList": [N(5)]}}, None, True),
        ({"a": {"ComparisonOperator": "NE", "AttributeValueList": [N(5)]}}, None, False),
        ({"gone": {"ComparisonOperator": "NE", "AttributeValueList": [N(5)]}}, None, True),
        ({"a": {"ComparisonOperator": "LT", "AttributeValueList": [N(6)]}}, None, True),
        ({"a": {"ComparisonOperator": "LE", "AttributeValueList": [N(5)]}}, None, True),
        ({"a": {"ComparisonOperator": "GT", "AttributeValueList": [N(5)]}}, None, False),
        ({"a": {"ComparisonOperator": "GE", "AttributeValueList": [N(5)]}}, None, True),
        ({"a": {"ComparisonOperator": "GE", "AttributeValueList": [S("5")]}}, None, False),
        ({"a": {"ComparisonOperator": "NOT_NULL"}}, None, True),
        ({"gone": {"ComparisonOperator": "NULL"}}, None, True),
        ({"s": {"ComparisonOperator": "CONTAINS", "AttributeValueList": [S("ell")]}}, None, True),
        ({"ss": {"ComparisonOperator": "CONTAINS", "AttributeValueList": [S("y")]}}, None, True),
        ({"ss": {"ComparisonOperator": "NOT_CONTAINS", "AttributeValueList": [S("z")]}}, None, True),
        ({"s": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [S("he")]}}, None, True),
        ({"a": {"ComparisonOperator": "IN", "AttributeValueList": [N(1), N(5)]}}, None, True),
        ({"a": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [N(1), N(5)]}}, None, True),
        ({"a": {"Value": N(5)}, "gone": {"Exists": False}}, "AND", True),
        ({"a": {"Value": N(6)}, "gone": {"Exists": False}}, "AND", False),
        ({"a": {"Value": N(6)}, "gone": {"Exists": False}}, "OR", True),
    ],
)
def test_expected(expected: dict, operator: str | None, result: bool) -> None:
    assert E.from_expected(expected, operator).evaluate(ITEM) is result


def test_expected_without_an_item() -> None:
    assert E.from_expected({"pk": {"Exists": False}}).evaluate(None)
    assert not E.from_expected({"pk": {"Value": S("x")}}).evaluate(None)


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        (
            {"a": {"ComparisonOperator": "EQ", "AttributeValueList": []}},
            "One or more parameter values were invalid: Invalid number of argument(s) for the EQ ComparisonOperator",
        ),
        (
            {"a": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [N(1)]}},
            "One or more parameter values were invalid: "
            "Invalid number of argument(s) for the BETWEEN ComparisonOperator",
        ),
        (
            {"a": {"ComparisonOperator": "NULL", "AttributeValueList": [N(1)]}},
            "One or more parameter values were invalid: Invalid number of argument(s) for the NULL ComparisonOperator",
        ),
        (
            {"a": {"Exists": False, "Value": N(1)}},
            "One or more parameter values were invalid: Value cannot be used when Exists is false for Attribute: a",
        ),
        (
            {"a": {}},
            "One or more parameter values were invalid: Value must be provided when Exists is null for Attribute: a",
        ),
        (
            {"a": {"Exists": True}},
            "One or more parameter values were invalid: Value must be provided when Exists is true for Attribute: a",
        ),
        (
            {"a": {"ComparisonOperator": "LT"}},
            "One or more parameter values were invalid: Value or AttributeValueList must be used with "
            "ComparisonOperator: LT for Attribute: a",
        ),
        (
            {"a": {"Exists": True, "ComparisonOperator": "LT"}},
            "One or more parameter values were invalid: Exists and ComparisonOperator cannot be used together for "
            "Attribute: a",
        ),
        (
            {"a": {"ComparisonOperator": "LT", "Value": S("a"), "AttributeValueList": [S("a")]}},
            "One or more parameter values were invalid: Value and AttributeValueList cannot be used together for "
            "Attribute: a",
        ),
        (
            {"a": {"Exists": True, "AttributeValueList": [S("a")]}},
            "One or more parameter values were invalid: AttributeValueList can only be used with a "
            "ComparisonOperator for Attribute: a",
        ),
        (
            {"a": {"ComparisonOperator": "NULL", "Value": S("a")}},
            "One or more parameter values were invalid: Invalid number of argument(s) for the NULL ComparisonOperator",
        ),
        (
            {"a": {"ComparisonOperator": "LT", "AttributeValueList": [{"BOOL": True}]}},
            "One or more parameter values were invalid: "
            "ComparisonOperator LT is not valid for BOOL AttributeValue type",
        ),
        (
            {"a": {"ComparisonOperator": "IN", "AttributeValueList": [S("b"), N(1)]}},
            "One or more parameter values were invalid: AttributeValues inside AttributeValueList must be of same type",
        ),
    ],
)
def test_expected_errors(expected: dict, message: str) -> None:
    with pytest.raises(ValidationException) as info:
        E.from_expected(expected)
    assert info.value.message == message


def test_query_filter() -> None:
    cond = E.from_query_filter({"a": {"ComparisonOperator": "GT", "AttributeValueList": [N(1)]}})
    assert cond.evaluate(ITEM) and cond.attributes == {"a"}
    with pytest.raises(ValidationException):
        E.from_query_filter({"a": {"Exists": False}})


def test_attribute_updates() -> None:
    upd = E.from_attribute_updates(
        {
            "a": {"Action": "ADD", "Value": N(2)},
            "s": {"Action": "PUT", "Value": S("new")},
            "ss": {"Action": "DELETE", "Value": {"SS": ["x"]}},
            "l": {"Action": "DELETE"},
            "c": {"Value": N(1)},  # PUT by default
            "more": {"Action": "ADD", "Value": {"NS": ["1"]}},
        }
    )
    assert E.from_attribute_updates({"l": {"Action": "ADD", "Value": {"L": [N(1)]}}}).apply(ITEM)["l"] == {
        "L": [S("x"), N(1)]
    }
    assert upd.apply(ITEM) == {"a": N(7), "s": S("new"), "ss": {"SS": ["y"]}, "c": N(1), "more": {"NS": ["1"]}}
    assert upd.updated_paths == {"a", "s", "ss", "l", "c", "more"}
    for updates in (
        {"ss": {"Action": "DELETE", "Value": {"NS": ["1"]}}},
        {"ss": {"Action": "ADD", "Value": {"NS": ["1"]}}},
        {"a": {"Action": "DELETE", "Value": {"NS": ["1"]}}},
    ):
        with pytest.raises(ValidationException) as info:
            E.from_attribute_updates(updates).apply(ITEM)
        assert info.value.message == "Type mismatch for attribute to update"
    with pytest.raises(ValidationException) as info:
        E.from_attribute_updates({"s": {"Action": "ADD", "Value": S("x")}})
    assert info.value.message == "One or more parameter values were invalid: ADD action is not supported for the type S"


def test_legacy_key_conditions() -> None:
    kc = E.from_key_conditions(
        {
            "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [S("x")]},
            "sk": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [N(1), N(2)]},
        },
        SCHEMA,
    )
    assert kc.partition == ("pk", S("x")) and kc.sort == ("sk", "BETWEEN", [N(1), N(2)])
    with pytest.raises(ValidationException) as info:
        E.from_key_conditions({"pk": {"ComparisonOperator": "NE", "AttributeValueList": [S("x")]}}, SCHEMA)
    assert info.value.message == "Attempted conditional constraint is not an indexable operation"
    with pytest.raises(ValidationException) as info:
        E.from_key_conditions({"sk": {"ComparisonOperator": "EQ", "AttributeValueList": [N(1)]}}, SCHEMA)
    assert info.value.message == "Query condition missed key schema element: pk"
    with pytest.raises(ValidationException) as info:
        E.from_key_conditions({}, SCHEMA)
    assert info.value.message == "Conditions can be of length 1 or 2 only"
    with pytest.raises(ValidationException) as info:
        E.from_key_conditions({"pk": {"ComparisonOperator": "EQ"}}, SCHEMA)
    assert info.value.message == (
        "One or more parameter values were invalid: Invalid number of argument(s) for the EQ ComparisonOperator"
    )
    with pytest.raises(ValidationException) as info:
        E.from_key_conditions({"sk": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [N(2), N(1)]}}, SCHEMA)
    assert info.value.message == (
        "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound"
    )


def test_attributes_to_get() -> None:
    assert E.from_attributes_to_get(["a", "s", "gone"]).apply(ITEM) == {"a": N(5), "s": S("hello")}
    with pytest.raises(ValidationException) as info:
        E.from_attributes_to_get(["a", "a"])
    assert info.value.message == "One or more parameter values were invalid: Duplicate value in attribute name: a"


# ---- placeholders


def placeholders_refused(expressions: list, names: dict | None, values: dict | None) -> str:
    with pytest.raises(ValidationException) as info:
        E.check_placeholders(expressions, names, values)
    return info.value.message


def test_placeholder_maps() -> None:
    E.check_placeholder_maps({"#a": "a"}, {":v": N(1)})
    E.check_placeholder_maps(None, None)
    with pytest.raises(ValidationException) as info:
        E.check_placeholder_maps(None, {":b": {"N": "x"}, ":a": {"SS": []}})
    assert info.value.message == (  # :a comes first in Java's HashSet order
        "ExpressionAttributeValues contains invalid value: One or more parameter values were invalid: "
        "An string set  may not be empty for key :a"
    )
    with pytest.raises(ValidationException) as info:
        E.check_placeholder_maps({"#" + "a" * 255: "x"}, None)
    assert info.value.message == (
        "ExpressionAttributeNames contains invalid key: The expression attribute map contains a key that is too "
        "long; size of key: 256"
    )


def test_placeholders_used_across_expressions() -> None:
    E.check_placeholders(["SET #a = :v", None, "attribute_exists(#b)"], {"#a": "a", "#b": "b"}, {":v": N(1)})
    E.check_placeholders([None], None, None)


def test_unused_and_misplaced_placeholders() -> None:
    assert placeholders_refused(["SET a = :v"], {"#unused": "x"}, {":v": N(1)}) == (
        "Value provided in ExpressionAttributeNames unused in expressions: keys: {#unused}"
    )
    assert placeholders_refused(["SET a = :v"], None, {":v": N(1), ":unused": N(2)}) == (
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:unused}"
    )
    assert placeholders_refused(["a = :v"], None, {":v": N(1), ":x": N(1), ":y": N(1)}) == (
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:x, :y}"
    )
    # several keys are listed in the order of Java's HashSet, not the request's
    assert placeholders_refused(["a = :v"], None, {":v": N(1), ":b": N(1), ":a": N(1)}) == (
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:a, :b}"
    )
    assert placeholders_refused(["a = b"], {"#": "x", "#a": "a"}, None) == (
        'ExpressionAttributeNames contains invalid key: Syntax error; key: "#"'
    )
    assert placeholders_refused(["#a = b"], {"#a": ""}, None) == (
        "ExpressionAttributeNames contains invalid value: Empty attribute name for key #a"
    )
    assert placeholders_refused([None], {"#a": "a"}, None) == (
        "ExpressionAttributeNames can only be specified when using expressions"
    )
    assert placeholders_refused([None, None], None, {":v": N(1)}) == (
        "ExpressionAttributeValues can only be specified when using expressions"
    )
    assert placeholders_refused(["a = b"], {}, None) == "ExpressionAttributeNames must not be empty"
    assert placeholders_refused(["a = b"], None, {}) == "ExpressionAttributeValues must not be empty"
    assert placeholders_refused(["a = b"], {"a": "x"}, None) == (
        'ExpressionAttributeNames contains invalid key: Syntax error; key: "a"'
    )
    assert placeholders_refused(["a = b"], None, {"v": N(1)}) == (
        'ExpressionAttributeValues contains invalid key: Syntax error; key: "v"'
    )


def test_paths_into_key_attributes() -> None:
    E.check_key_paths(E.condition("pk = :v AND a.b = :v", None, {":v": N(1)}).paths, ["pk"])
    with pytest.raises(ValidationException) as info:
        E.check_key_paths(E.projection("a, pk.x").paths, ["pk", "sk"])
    assert info.value.message == (
        "Key attributes must be scalars; list random access '[]' and map lookup '.' are not allowed: Key: pk"
    )
