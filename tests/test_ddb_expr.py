"""ConditionExpression / FilterExpression: every form, its evaluation and its errors (pure, no server)."""

from __future__ import annotations

import pytest

from tables import expressions as E
from tables.expressions import ValidationException

ITEM = {
    "pk": {"S": "user#1"},
    "n": {"N": "5"},
    "neg": {"N": "-2.5"},
    "s": {"S": "hello world"},
    "b": {"B": "AAEC"},  # bytes 00 01 02
    "ss": {"SS": ["x", "y"]},
    "ns": {"NS": ["1", "2.0"]},
    "bs": {"BS": ["AA==", "AQ=="]},
    "l": {"L": [{"N": "1"}, {"S": "two"}, {"M": {"deep": {"BOOL": True}}}]},
    "m": {"M": {"child": {"M": {"v": {"N": "10"}}}, "flag": {"BOOL": False}}},
    "nul": {"NULL": True},
    "t": {"BOOL": True},
    "u": {"S": "é𝄞"},
}


def ok(text: str, values: dict | None = None, names: dict | None = None, item: dict | None = ITEM) -> bool:
    return E.condition(text, names, values).evaluate(item)


def refused(text: str, values: dict | None = None, names: dict | None = None, kind: str = "condition") -> str:
    with pytest.raises(ValidationException) as info:
        (E.condition if kind == "condition" else E.filter_)(text, names, values)
    return info.value.message


N = lambda x: {"N": str(x)}  # noqa: E731
S = lambda x: {"S": x}  # noqa: E731


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("n = :v", {":v": N(5)}, True),
        ("n = :v", {":v": N("5.000")}, True),
        ("n = :v", {":v": S("5")}, False),  # type-strict
        ("n <> :v", {":v": S("5")}, True),
        ("n <> :v", {":v": N(5)}, False),
        ("gone <> :v", {":v": N(5)}, True),
        ("gone <> nope", None, True),
        ("gone = :v", {":v": N(5)}, False),
        ("n < :v", {":v": N(6)}, True),
        ("n <= :v", {":v": N(5)}, True),
        ("n > :v", {":v": N("4.99")}, True),
        ("n >= :v", {":v": N(6)}, False),
        ("neg < :v", {":v": N(-2)}, True),
        ("n < :v", {":v": S("6")}, False),
        ("n >= :v", {":v": S("6")}, False),
        ("gone < :v", {":v": N(6)}, False),
        ("s < :v", {":v": S("hellp")}, True),
        ("s > :v", {":v": S("Hello")}, True),  # by UTF-8 bytes: 'h' > 'H'
        ("b < :v", {":v": {"B": "AAED"}}, True),
        ("ss = :v", {":v": {"SS": ["y", "x"]}}, True),  # sets are unordered
        ("ns = :v", {":v": {"NS": ["2", "1"]}}, True),
        ("bs = :v", {":v": {"BS": ["AQ==", "AA=="]}}, True),
        ("ss = :v", {":v": {"SS": ["x"]}}, False),
        ("l = :v", {":v": {"L": [N(1), S("two"), {"M": {"deep": {"BOOL": True}}}]}}, True),
        ("l = :v", {":v": {"L": [S("two"), N(1), {"M": {"deep": {"BOOL": True}}}]}}, False),
        ("m.child = :v", {":v": {"M": {"v": N(10)}}}, True),
        ("nul = :v", {":v": {"NULL": True}}, True),
        ("t = :v", {":v": {"BOOL": True}}, True),
        ("n BETWEEN :a AND :b", {":a": N(5), ":b": N(5)}, True),
        ("n BETWEEN :a AND :b", {":a": N(1), ":b": N(4)}, False),
        ("s BETWEEN :a AND :b", {":a": S("h"), ":b": S("i")}, True),
        ("n IN (:a, :b)", {":a": N(1), ":b": N(5)}, True),
        ("n IN (:a)", {":a": S("5")}, False),
        ("m.child.v = :v", {":v": N(10)}, True),
        ("l[1] = :v", {":v": S("two")}, True),
        ("l[2].deep = :v", {":v": {"BOOL": True}}, True),
        ("l[9] = :v", {":v": S("two")}, False),
        ("s.x = :v", {":v": S("two")}, False),  # a path through a non-map is absent
        ("l.x = :v", {":v": S("two")}, False),
        ("m[0] = :v", {":v": S("two")}, False),
    ],
)
def test_comparisons(text: str, values: dict, expected: bool) -> None:
    assert ok(text, values) is expected


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("attribute_exists(n)", None, True),
        ("attribute_exists(gone)", None, False),
        ("attribute_exists(m.child.v)", None, True),
        ("attribute_exists(m.nope)", None, False),
        ("attribute_not_exists(gone)", None, True),
        ("attribute_not_exists(l[5])", None, True),
        ("attribute_type(n, :t)", {":t": S("N")}, True),
        ("attribute_type(ss, :t)", {":t": S("SS")}, True),
        ("attribute_type(ss, :t)", {":t": S("L")}, False),
        ("attribute_type(nul, :t)", {":t": S("NULL")}, True),
        ("begins_with(s, :p)", {":p": S("hell")}, True),
        ("begins_with(s, :p)", {":p": S("world")}, False),
        ("begins_with(b, :p)", {":p": {"B": "AAE="}}, True),
        ("begins_with(n, :p)", {":p": S("5")}, False),
        ("contains(s, :p)", {":p": S("o w")}, True),
        ("contains(ss, :p)", {":p": S("x")}, True),
        ("contains(ss, :p)", {":p": S("z")}, False),
        ("contains(ns, :p)", {":p": N("2")}, True),  # 2.0 == 2
        ("contains(bs, :p)", {":p": {"B": "AQ=="}}, True),
        ("contains(l, :p)", {":p": S("two")}, True),
        ("contains(l, :p)", {":p": {"M": {"deep": {"BOOL": True}}}}, True),
        ("contains(l, :p)", {":p": N(2)}, False),
        ("contains(n, :p)", {":p": N(5)}, False),
        ("contains(gone, :p)", {":p": N(5)}, False),
        ("size(s) = :v", {":v": N(11)}, True),
        ("size(b) = :v", {":v": N(3)}, True),
        ("size(ss) = :v", {":v": N(2)}, True),
        ("size(l) = :v", {":v": N(3)}, True),
        ("size(m) = :v", {":v": N(2)}, True),
        ("size(n) = :v", {":v": N(1)}, False),  # numbers have no size
        ("size(gone) <> :v", {":v": N(1)}, True),
        ("size(s) > size(ss)", None, True),
        ("size(m.child) = :v", {":v": N(1)}, True),
        ("size(u) = :v", {":v": N(3)}, True),  # UTF-16 code units, as DynamoDB counts
    ],
)
def test_functions(text: str, values: dict | None, expected: bool) -> None:
    assert ok(text, values) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("attribute_exists(n) AND attribute_exists(gone)", False),
        ("attribute_exists(n) OR attribute_exists(gone)", True),
        ("NOT attribute_exists(gone)", True),
        ("not attribute_exists(n)", False),
        # NOT binds tighter than AND, AND tighter than OR
        ("attribute_exists(gone) AND attribute_exists(n) OR attribute_exists(s)", True),
        ("attribute_exists(gone) AND (attribute_exists(n) OR attribute_exists(s))", False),
        ("NOT attribute_exists(gone) AND attribute_exists(gone)", False),
        ("NOT (attribute_exists(gone) AND attribute_exists(nope))", True),
        ("attribute_exists(n) or attribute_exists(gone) and attribute_exists(nope)", True),
        ("(attribute_exists(n))", True),
        ("NOT NOT attribute_exists(n)", True),
    ],
)
def test_logic_and_precedence(text: str, expected: bool) -> None:
    assert ok(text) is expected


def test_no_item_means_every_path_absent() -> None:
    assert ok("attribute_not_exists(pk)", item=None)
    assert not ok("pk = :v", {":v": S("x")}, item=None)
    assert ok("pk <> :v", {":v": S("x")}, item=None)


def test_placeholders_for_names_and_nested_paths() -> None:
    names = {"#s": "status", "#m": "m", "#i": "child"}
    assert ok("#m.#i.v = :v AND attribute_not_exists(#s)", {":v": N(10)}, names)
    cond = E.condition("#m.#i.v = :v AND attribute_exists(l[0])", names, {":v": N(10)})
    assert cond.attributes == {"m", "l"}


def test_operands_in_parentheses_and_reversed_comparisons() -> None:
    assert ok("(n) = :v", {":v": N(5)})
    assert ok(":v < n", {":v": N(4)})


def test_words_on_the_published_list_that_dynamodb_accepts_as_names() -> None:
    assert ok("size = :v OR convert = :v", {":v": N(1)}, item={"size": N(1)})


def test_keywords_are_case_insensitive() -> None:
    assert ok("n between :a and :b", {":a": N(1), ":b": N(9)})
    assert ok("n in (:a)", {":a": N(5)})


@pytest.mark.parametrize(
    ("text", "values", "names", "message"),
    [
        ("", None, None, "Invalid ConditionExpression: The expression can not be empty;"),
        ("   ", None, None, 'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "   "'),
        ("_a = :v", {":v": N(1)}, None, 'Invalid ConditionExpression: Syntax error; token: "_", near: "_a"'),
        ("a[01] = :v", {":v": N(1)}, None, 'Invalid ConditionExpression: Syntax error; token: "1", near: "01]"'),
        ("set = :v", {":v": N(1)}, None, 'Invalid ConditionExpression: Syntax error; token: "set", near: "set ="'),
        ("a = # OR b", None, None, 'Invalid ConditionExpression: Syntax error; token: "#", near: "= # OR"'),
        ("a-b", None, None, 'Invalid ConditionExpression: Syntax error; token: "-", near: "a-b"'),
        (
            "attribute_exists(car_id) AND NOT #has_air_conditioner",
            None,
            {"#has_air_conditioner": "x"},
            'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "#has_air_conditioner"',
        ),
        ("contains()", None, None, 'Invalid ConditionExpression: Syntax error; token: ")", near: "()"'),
        ("a = :v AND", {":v": N(1)}, None, 'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "AND"'),
        ("a == :v", {":v": N(1)}, None, 'Invalid ConditionExpression: Syntax error; token: "=", near: "== :v"'),
        ("a = $x", None, None, 'Invalid ConditionExpression: Syntax error; token: "$", near: "= $x"'),
        (
            "a = :v OR OR b",
            {":v": N(1)},
            None,
            'Invalid ConditionExpression: Syntax error; token: "OR", near: "OR OR b"',
        ),
        (
            "status = :v",
            {":v": N(1)},
            None,
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status",
        ),
        (
            "a.Name = :v",
            {":v": N(1)},
            None,
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: Name",
        ),
        (
            "a = :v",
            None,
            None,
            "Invalid ConditionExpression: An expression attribute value used in expression is not defined; "
            "attribute value: :v",
        ),
        (
            "#a = :v",
            {":v": N(1)},
            None,
            "Invalid ConditionExpression: An expression attribute name used in the document path is not defined; "
            "attribute name: #a",
        ),
        ("foo(a)", None, None, "Invalid ConditionExpression: Invalid function name; function: foo"),
        (
            "if_not_exists(a, :v)",
            {":v": N(1)},
            None,
            "Invalid ConditionExpression: The function is not allowed in a condition expression; "
            "function: if_not_exists",
        ),
        (
            "size(a)",
            None,
            None,
            "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; "
            "function: size",
        ),
        (
            "a = attribute_exists(b)",
            None,
            None,
            "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; "
            "function: attribute_exists",
        ),
        (
            "begins_with(a)",
            None,
            None,
            "Invalid ConditionExpression: Incorrect number of operands for operator or function; "
            "operator or function: begins_with, number of operands: 1",
        ),
        (
            "attribute_exists(a, b)",
            None,
            None,
            "Invalid ConditionExpression: Incorrect number of operands for operator or function; "
            "operator or function: attribute_exists, number of operands: 2",
        ),
        (
            "attribute_exists(:v)",
            {":v": N(1)},
            None,
            "Invalid ConditionExpression: Operator or function requires a document path; "
            "operator or function: attribute_exists",
        ),
        (
            "begins_with(a, :v)",
            {":v": N(1)},
            None,
            "Invalid ConditionExpression: Incorrect operand type for operator or function; "
            "operator or function: begins_with, operand type: N",
        ),
        (
            "size(:v) = :v",
            {":v": N(1)},
            None,
            "Invalid ConditionExpression: Incorrect operand type for operator or function; "
            "operator or function: size, operand type: N",
        ),
        (
            "attribute_type(a, :v)",
            {":v": N(1)},
            None,
            "Invalid ConditionExpression: Incorrect operand type for operator or function; "
            "operator or function: attribute_type, operand type: N",
        ),
        (
            "attribute_type(a, :v)",
            {":v": S("STRING")},
            None,
            "Invalid ConditionExpression: Invalid attribute type name found; type: STRING, "
            "valid types: {N,BS,L,B,NULL,M,S,SS,NS,BOOL}",
        ),
        (
            "a = a",
            None,
            None,
            "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this "
            "operator or function; operator: =, first operand: [a]",
        ),
        (
            "contains(#a, #a)",
            None,
            {"#a": "data"},
            "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this "
            "operator or function; operator: contains, first operand: [data]",
        ),
        (
            "a BETWEEN :hi AND :lo",
            {":hi": N(10), ":lo": N(1)},
            None,
            "Invalid ConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to "
            "lower bound; lower bound operand: AttributeValue: {N:10}, upper bound operand: AttributeValue: {N:1}",
        ),
        (
            "a BETWEEN :lo AND :s",
            {":lo": N(1), ":s": S("x")},
            None,
            "Invalid ConditionExpression: The BETWEEN operator requires same data type for lower and upper bounds; "
            "lower bound operand: AttributeValue: {N:1}, upper bound operand: AttributeValue: {S:x}",
        ),
        ("((a = :v))", {":v": N(1)}, None, "Invalid ConditionExpression: The expression has redundant parentheses;"),
        (
            "t < :v",
            {":v": {"BOOL": True}},
            None,
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: <, "
            "operand type: BOOL",
        ),
        (
            "a BETWEEN :lo AND :hi",
            {":lo": {"SS": ["a"]}, ":hi": {"SS": ["b"]}},
            None,
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: "
            "BETWEEN, operand type: SS",
        ),
        (
            "a BETWEEN :lo AND :hi",
            {":lo": {"B": "AQ=="}, ":hi": {"B": "AA=="}},
            None,
            "Invalid ConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to "
            "lower bound; lower bound operand: AttributeValue: {B:java.nio.HeapByteBuffer[pos=0 lim=1 cap=1]}, "
            "upper bound operand: AttributeValue: {B:java.nio.HeapByteBuffer[pos=0 lim=1 cap=1]}",
        ),
        (
            "a IN (a, :v)",
            {":v": N(1)},
            None,
            "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this "
            "operator or function; operator: IN, first operand: [a]",
        ),
        (
            "a IN (" + ", ".join(f":v{i}" for i in range(101)) + ")",
            {f":v{i}": N(i) for i in range(101)},
            None,
            "Invalid ConditionExpression: The IN operator is provided with too many operands; number of operands: 101",
        ),
        (
            "a[2147483648] = :v",
            {":v": N(1)},
            None,
            "Invalid ConditionExpression: List index is not within the allowable range; index: [2147483648]",
        ),
        (
            ".".join(["a"] * 33) + " = :v",
            {":v": N(1)},
            None,
            "Invalid ConditionExpression: The document path has too many nesting levels; nesting levels: 33",
        ),
        (
            "attribute_type(a, b)",
            None,
            None,
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: "
            "attribute_type, operand type: {SS,M,DECIMAL,DOUBLESET,HDS,N,B,DICT,INTSET,BOOL,HD,BS,INT,DECIMALSET,"
            "NULL,FLOAT,FS,S,L,NS,DOUBLE}",
        ),
        ("((a)) = :v", {":v": N(1)}, None, "Invalid ConditionExpression: The expression has redundant parentheses;"),
    ],
)
def test_errors(text: str, values: dict | None, names: dict | None, message: str) -> None:
    assert refused(text, values, names) == message


def test_filter_errors_name_the_filter() -> None:
    assert refused("a-b", kind="filter") == 'Invalid FilterExpression: Syntax error; token: "-", near: "a-b"'


def test_errors_are_reported_in_the_order_the_clauses_are_written() -> None:
    # the first clause's undefined value wins over the second clause's bad operand, and the reverse
    assert "attribute value: :missing" in refused("a = :missing AND begins_with(b, :n)", {":n": N(1)})
    assert "operand type: N" in refused("begins_with(b, :n) AND a = :missing", {":n": N(1)})
    # names, functions and reserved words are checked over the whole expression before any placeholder
    assert "reserved keyword: status" in refused("a = :missing AND status = :n", {":n": N(1)})
    assert "function: foo" in refused("a = :missing AND foo(b)")
    # and among those, the first in the order written
    assert "reserved keyword: status" in refused("status = :v AND foo(b)", {":v": N(1)})
    assert "function: foo" in refused("foo(b) AND status = :v", {":v": N(1)})


def test_expression_size_limit() -> None:
    text = " OR ".join(f"attribute_exists(a{i})" for i in range(300))
    assert len(text.encode()) > 4096
    message = refused(text)
    assert message == (
        f"Invalid ConditionExpression: Expression size has exceeded the maximum allowed size; "
        f"expression size: {len(text.encode())}"
    )
    just = "a" * 4090 + " = :v"
    assert len(just) <= 4096
    E.condition(just, None, {":v": N(1)})


def test_invalid_values_are_refused_with_their_key() -> None:
    message = refused("a = :v", {":v": {"N": "1e99999999999"}})
    assert message == (
        "ExpressionAttributeValues contains invalid value: Number overflow. Attempting to store a number with "
        "magnitude larger than supported range for key :v"
    )
    assert "An string set  may not be empty for key :v" in refused("a = :v", {":v": {"SS": []}})


def test_parse_is_cached() -> None:
    from tables.expressions.grammar import parse

    first = parse("n = :v", "condition", "ConditionExpression")
    assert parse("n = :v", "condition", "ConditionExpression") is first
